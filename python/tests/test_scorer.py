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

    def test_twin_scores_every_method_as_the_harness(self):
        """A small network of each few-shot method, trained here for a few steps on the Vinyals
        split, scored by the harness and by the twin through the protocol on 5-way 5-shot and 20-way
        1-shot episodes: the same accuracy. (5 shots: a method's class score is not the mean of
        its pair scores.)"""
        # relation twice: the module on flattened embeddings, and Sung et al.'s convolutional one on
        # maps the last two blocks leave unpooled (8 x 14 x 14).
        conv_relation = {"headHidden": 16, "blockPooling": [True, False, False], "relationModule": "convolutional"}
        for objective, similarity, extra in [("relation", "relation", {"headHidden": 16}), ("relation", "relation", conv_relation),
                                              ("matching", "cosine", {}), ("matching-scaled", "cosine", {}),
                                              ("finetune", "euclidean", {"classes": 4112}), ("prototypical", "euclidean", {}),
                                              ("maml", "euclidean", {})]:
            # MAML with its own adaptation (training.adaptation), which the twin must read from the
            # checkpoint's experiment_config to score as the harness does.
            adaptation = {"adaptation": {"learningRate": 0.3, "steps": 2, "scoringSteps": 3}} if objective == "maml" else {}
            with self.subTest(objective=objective, model=extra), tempfile.TemporaryDirectory() as folder:
                experiment = os.path.join(folder, "exp.json")
                protocols = [{"protocol": "episodes", "split": "evaluation", "episodes": 30, "seed": 7, "spec": {"ways": w, "shots": k, "queries": 3, "alphabetMode": "across"}}
                             for w, k in [(5, 5), (20, 1)]]
                with open(experiment, "w") as f:
                    json.dump({"name": f"twin-{objective}", "seed": 2, "data": {"split": "vinyals"},
                               "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": True, "blocks": [[8], [8], [8]], "similarity": similarity, **extra},
                               "training": {"objective": objective, "episode": {"ways": 10, "shots": 1, "queries": 2, "alphabetMode": "across"}, "steps": 40,
                                            "optimizer": {"kind": "adam", "learningRate": 0.003}, "logEvery": 20, **adaptation},
                               "evaluation": protocols}, f)
                store, runs = os.path.join(folder, "results.sqlite"), os.path.join(folder, "runs")
                trained = subprocess.run([BIN, "run", experiment, "--store", store, "--runs", runs, "--data", os.path.join(ROOT, "dataset", "omniglot")],
                                         capture_output=True, text=True, cwd=ROOT)
                self.assertEqual(trained.returncode, 0, trained.stderr[-2000:])
                checkpoint = os.path.join(runs, trained.stdout.split("run ", 1)[1].split()[0], "last.safetensors")
                ours, _ = accuracies(store, ["--checkpoint", checkpoint], experiment)
                scorer = f"{sys.executable} {os.path.join(ROOT, 'examples', 'scorers', 'twin_scorer.py')} {checkpoint}"
                theirs, detail = accuracies(store, ["--scorer", scorer], experiment)
                self.assertEqual(detail["mode"], "external")
                if objective == "maml":
                    # MAML adapts float32 weights by ten gradient steps per episode: rounding that
                    # differs between oneDNN's kernels and PyTorch's (and between CPUs) can move a
                    # query near a class boundary. On a trained checkpoint 933-974 of 1,000 episodes
                    # scored identically and the accuracies agreed within 0.02 points (RESULTS.md).
                    self.assertEqual(set(theirs), set(ours))
                    for name in ours:
                        self.assertAlmostEqual(theirs[name], ours[name], delta=0.005, msg=f"{name}: twin {theirs[name]} against harness {ours[name]}")
                else:
                    self.assertEqual(theirs, ours)
                self.assertGreater(min(ours.values()), 0.06, f"{objective} learned nothing in 40 steps: {ours}")
                print(f"{objective}: harness {ours}, twin through the protocol {theirs}")


if __name__ == "__main__":
    unittest.main()
