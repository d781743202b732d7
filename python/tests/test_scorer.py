#!/usr/bin/env python3
"""The PyTorch outside scorer (examples/scorers/twin_scorer.py) scores exactly as the harness.

For each checkpoint (ONESHOT_TWIN_CHECKPOINTS, colon-separated; default: the shipped model), an
experiment of the checkpoint's own model configuration is scored twice on Lake's 20 runs and 200
20-way evaluation episodes: by the harness from the checkpoint (`run --eval-only --checkpoint`)
and through the outside-scorer protocol by the twin (`run --eval-only --scorer`). Every
protocol's accuracy must be the same number.

    ONESHOT_BIN=.build/release/oneshot-bench VENV/bin/python -m unittest discover -s python/tests -v
"""
import json, os, subprocess, sys, tempfile, unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
from safetensors import safe_open  # noqa: E402

BIN = os.environ.get("ONESHOT_BIN", os.path.join(ROOT, ".build", "release", "oneshot-bench"))
CHECKPOINTS = [p for p in os.environ.get("ONESHOT_TWIN_CHECKPOINTS", os.path.join(ROOT, "models", "omniglot-siamese.safetensors")).split(":") if p]


def accuracies(store, extra, experiment):
    out = subprocess.run([BIN, "run", experiment, "--eval-only", "--store", store, "--data", os.path.join(ROOT, "dataset", "omniglot"), *extra],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise AssertionError(f"run {extra} failed ({out.returncode}): {out.stderr[-2000:]}")
    run = out.stdout.split("run ", 1)[1].split()[0]
    report = subprocess.run([BIN, "report", "--store", store, "--run", run, "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    detail = json.loads(report.stdout)
    return {r["protocol"]: r["accuracy"] for r in detail["results"]}, detail


class ScorerTests(unittest.TestCase):
    def test_twin_scorer_scores_exactly_as_the_harness(self):
        for checkpoint in CHECKPOINTS:
            with self.subTest(checkpoint=checkpoint), tempfile.TemporaryDirectory() as folder:
                with safe_open(checkpoint, "pt") as f:
                    model = json.loads(f.metadata()["model_config"])
                experiment = os.path.join(folder, "exp.json")
                with open(experiment, "w") as f:
                    json.dump({"name": "scorer-check", "model": model, "evaluation": [
                        {"protocol": "lake20"},
                        {"protocol": "episodes", "split": "evaluation", "episodes": 200, "seed": 7, "spec": {"ways": 20, "shots": 1, "queries": 1}}]}, f)
                store = os.path.join(folder, "results.sqlite")
                ours, _ = accuracies(store, ["--checkpoint", checkpoint], experiment)
                scorer = f"{sys.executable} {os.path.join(ROOT, 'examples', 'scorers', 'twin_scorer.py')} {checkpoint}"
                theirs, detail = accuracies(store, ["--scorer", scorer], experiment)
                self.assertEqual(detail["mode"], "external")
                self.assertEqual(theirs, ours)
                print(f"{checkpoint}: harness {ours}, twin through the protocol {theirs}")


if __name__ == "__main__":
    unittest.main()
