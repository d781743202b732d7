#!/usr/bin/env python3
"""`oneshot-bench export mlflow` read back by MLflow's own client.

A short ci-smoke training (metric histories, validation, a checkpoint) and an evaluation-only
run of a checkpoint are recorded into a fresh store and exported; `mlflow.search_runs` and
`MlflowClient.get_metric_history` must find every parameter, every point of every metric
history (step, value, time), every protocol's result and the artifacts. Exporting again
changes no byte; a folder holding something else is refused.

MLflow 2.x and 3.x both read it (CI runs this file with each). What differs in 3.x: the file store
is in maintenance mode, and the client refuses a `file://` tracking URI unless
`MLFLOW_ALLOW_FILE_STORE=true` (set here for 3.x, as a user must); `mlflow migrate-filestore`
moves an export into MLflow's SQLite backend, and with SQLAlchemy installed the test migrates the
export and finds every run, parameter, result and metric point there too.

    ONESHOT_BIN=.build/release/oneshot-bench VENV/bin/python -m unittest python/tests/test_mlflow_export.py -v
"""
import datetime, json, os, sqlite3, subprocess, sys, tempfile, unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ONESHOT_BIN", os.path.join(ROOT, ".build", "release", "oneshot-bench"))

try:
    import mlflow
    from mlflow.tracking import MlflowClient
except ImportError:  # CI installs python/requirements-mlflow.txt and insists this test ran
    mlflow = None

MLFLOW_3 = mlflow is not None and int(mlflow.__version__.split(".")[0]) >= 3
if MLFLOW_3:
    # MLflow 3 refuses its file store without this (it still reads it, in maintenance mode).
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
try:
    import sqlalchemy  # noqa: F401  (MLflow's SQL backend, for migrate-filestore)
except ImportError:
    sqlalchemy = None


def harness(*args, check=True):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, cwd=ROOT)
    if check and out.returncode != 0:
        raise AssertionError(f"oneshot-bench {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out


def millis(text):
    return int(round(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp() * 1000))


def model_config(checkpoint):
    """The model configuration a safetensors checkpoint of the harness records in its header."""
    with open(checkpoint, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(json.loads(f.read(size))["__metadata__"]["model_config"])


def snapshot(folder):
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return files


@unittest.skipIf(mlflow is None, "mlflow is not installed (pip install -r python/requirements-mlflow.txt)")
class MLflowExportTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.store = os.path.join(cls.tmp.name, "results.sqlite")
        runs = os.path.join(cls.tmp.name, "runs")
        data = ["--store", cls.store, "--runs", runs, "--data", os.path.join(ROOT, "dataset", "omniglot")]
        harness("run", "experiments/ci-smoke.json", *data, "--set", "training.steps=120", "--set", "training.validation.every=60",
                "--set", "training.logEvery=10", "--set", "evaluation[1].episodes=50")
        checkpoint = os.path.join(ROOT, "models", "omniglot-siamese.safetensors")
        lake = os.path.join(cls.tmp.name, "lake.json")
        with open(lake, "w") as f:  # the shipped model on Lake's runs only: a few seconds
            json.dump({"name": "shipped-lake20", "model": model_config(checkpoint), "evaluation": [{"protocol": "lake20"}]}, f)
        harness("run", lake, "--eval-only", "--checkpoint", checkpoint, *data)
        with sqlite3.connect(cls.store) as db:
            (smoke,) = db.execute("SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name = 'ci-smoke'").fetchone()
        harness("run", "note", smoke, "a note | with <html>", "--store", cls.store)
        cls.export = os.path.join(cls.tmp.name, "mlruns")
        out = harness("export", "mlflow", cls.export, "--store", cls.store)
        print(out.stderr.strip(), f"(MLflow {mlflow.__version__})")
        mlflow.set_tracking_uri("file://" + cls.export)
        cls.client = MlflowClient()
        cls.db = sqlite3.connect(cls.store)

    @classmethod
    def tearDownClass(cls):
        cls.db.close()
        cls.tmp.cleanup()

    def stored_runs(self):
        return self.db.execute("SELECT r.id, e.name, r.status FROM runs r JOIN experiments e ON e.id = r.experiment_id").fetchall()

    def test_search_runs_finds_every_run_param_and_result(self):
        frame = mlflow.search_runs(search_all_experiments=True)
        self.assertEqual(len(frame), 2)
        for run_id, experiment, status in self.stored_runs():
            row = frame[frame.run_id == run_id.replace("-", "")]
            self.assertEqual(len(row), 1, run_id)
            row = row.iloc[0]
            self.assertEqual(row["tags.oneshot.experiment"], experiment)
            self.assertEqual(row["status"], "FINISHED" if status == "completed" else row["status"])
            self.assertEqual(mlflow.get_experiment(row["experiment_id"]).name, experiment)
            for key, value in self.db.execute("SELECT key, value FROM params WHERE run_id = ?", (run_id,)):
                self.assertEqual(row[f"params.{key}"], value, key)
            results = self.db.execute("SELECT protocol, accuracy, ci_low, ci_high, episodes FROM results WHERE run_id = ?", (run_id,)).fetchall()
            self.assertTrue(results)
            for protocol, accuracy, low, high, episodes in results:
                self.assertEqual(row[f"metrics.result.{protocol}.accuracy"], accuracy)
                self.assertEqual(row[f"metrics.result.{protocol}.ci_low"], low)
                self.assertEqual(row[f"metrics.result.{protocol}.ci_high"], high)
                self.assertEqual(row[f"metrics.result.{protocol}.episodes"], episodes)

    def test_every_metric_history_comes_back_point_by_point(self):
        checked = 0
        for run_id, _, _ in self.stored_runs():
            keys = [k for (k,) in self.db.execute("SELECT DISTINCT key FROM metrics WHERE run_id = ?", (run_id,))]
            for key in keys:
                stored = self.db.execute("SELECT step, value, time FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", (run_id, key)).fetchall()
                name = "".join(c if c.isalnum() or c in "_-./: " else "_" for c in key)
                history = sorted(self.client.get_metric_history(run_id.replace("-", ""), name), key=lambda m: m.step)
                self.assertEqual([(m.step, m.value, m.timestamp) for m in history], [(s, v, millis(t)) for s, v, t in stored], key)
                checked += len(stored)
        trained = [r for r in self.stored_runs() if r[1] == "ci-smoke"][0][0].replace("-", "")
        self.assertEqual(len(self.client.get_metric_history(trained, "train.loss")), 12)
        self.assertEqual([m.step for m in self.client.get_metric_history(trained, "validation.accuracy")], [60, 120])
        self.assertEqual(checked, self.db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0])
        self.assertGreater(checked, 20)

    def test_tags_artifacts_and_notebook_json(self):
        for run_id, experiment, _ in self.stored_runs():
            run = self.client.get_run(run_id.replace("-", ""))
            tags = run.data.tags
            self.assertTrue(tags["mlflow.runName"].startswith(experiment))
            self.assertEqual(tags["oneshot.run"], run_id)
            stored_tags = dict(self.db.execute("SELECT key, value FROM tags WHERE run_id = ?", (run_id,)).fetchall())
            for key, value in stored_tags.items():
                self.assertEqual(tags["".join(c if c.isalnum() or c in "_-./: " else "_" for c in key)], value, key)
            artifacts = {a.path for a in self.client.list_artifacts(run.info.run_id)}
            self.assertTrue({"config.json", "run.json", "report.html"} <= artifacts, artifacts)
            local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="run.json", dst_path=self.tmp.name)
            with open(local) as f:
                detail = json.load(f)
            self.assertEqual(detail["run"], run_id)
            for protocol, rows in detail["episodes"].items():
                count = self.db.execute("SELECT COUNT(*) FROM episode_results WHERE run_id = ? AND protocol = ?", (run_id, protocol)).fetchone()[0]
                self.assertEqual(len(rows), count, protocol)
            if experiment == "ci-smoke":
                self.assertIn("checkpoint", artifacts)
                self.assertEqual(len(detail["metrics"]["train.loss"]), 12)
                self.assertEqual(tags["mlflow.note.content"], "a note | with <html>")

    def test_exporting_again_changes_nothing_and_a_foreign_folder_is_refused(self):
        before = snapshot(self.export)
        again = harness("export", "mlflow", self.export, "--store", self.store)
        self.assertIn("(0 files written", again.stderr)
        self.assertEqual(snapshot(self.export), before)
        foreign = os.path.join(self.tmp.name, "foreign")
        os.makedirs(foreign)
        with open(os.path.join(foreign, "thesis.tex"), "w") as f:
            f.write("mine")
        out = harness("export", "mlflow", foreign, "--store", self.store, check=False)
        self.assertEqual(out.returncode, 2)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        self.assertEqual(os.listdir(foreign), ["thesis.tex"])

    @unittest.skipIf(not MLFLOW_3 or sqlalchemy is None, "MLflow 3 with SQLAlchemy migrates a file store to SQLite")
    def test_mlflow_3_migrates_the_export_to_its_sqlite_backend_whole(self):
        target = os.path.join(self.tmp.name, "migrated.db")
        out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mlflow"), "migrate-filestore", "--source", self.export, "--target", "sqlite:///" + target],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        client = MlflowClient(tracking_uri="sqlite:///" + target)
        for run_id, experiment, _ in self.stored_runs():
            run = client.get_run(run_id.replace("-", ""))
            self.assertEqual(client.get_experiment(run.info.experiment_id).name, experiment)
            params = dict(self.db.execute("SELECT key, value FROM params WHERE run_id = ?", (run_id,)).fetchall())
            self.assertEqual({k: v for k, v in run.data.params.items()}, params)
            for protocol, accuracy in self.db.execute("SELECT protocol, accuracy FROM results WHERE run_id = ?", (run_id,)):
                self.assertEqual(run.data.metrics[f"result.{protocol}.accuracy"], accuracy)
            for key, count in self.db.execute("SELECT key, COUNT(*) FROM metrics WHERE run_id = ? GROUP BY key", (run_id,)):
                name = "".join(c if c.isalnum() or c in "_-./: " else "_" for c in key)
                self.assertEqual(len(client.get_metric_history(run.info.run_id, name)), count, key)


if __name__ == "__main__":
    unittest.main()
