#!/usr/bin/env python3
"""Real clients, written by no one here: easyfsl's PrototypicalNetworks, Finetune and TIM, scored
through the outside-scorer protocol (examples/scorers/easyfsl_scorer.py), record the accuracy
that easyfsl's own `evaluate` computes on the same episodes, which `oneshot-bench export episodes`
writes as arrays (equal but for the queries whose two best scores are within 1e-5 of each other:
the harness sends an episode's images in a random order). On Lake's 20 runs and on episodes of
the Vinyals split's test classes, with a random-weight backbone (the same weights on both sides).

Needs easyfsl (pinned: 1.5.0, with torch 2.13.0 and torchvision 0.28.0, as `pip install
easyfsl` brings them; python/requirements-clients.txt) and the harness's release binary:

    ONESHOT_BIN=.build/release/oneshot-bench VENV/bin/python -m unittest python/tests/test_clients.py -v
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import torch
    from easyfsl.utils import evaluate
except ImportError as error:  # another venv (the twin's): .ci/run runs this file in the clients' venv and checks that it ran
    raise unittest.SkipTest(f"easyfsl is not installed here ({error}); pip install -r python/requirements-clients.txt")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "scorers"))
import easyfsl_scorer  # noqa: E402

BIN = os.environ.get("ONESHOT_BIN", os.path.join(ROOT, ".build", "release", "oneshot-bench"))
DATA = os.path.join(ROOT, "dataset", "omniglot")
SCORER = os.path.join(ROOT, "examples", "scorers", "easyfsl_scorer.py")

MODEL = {"backbone": "vgg16", "inputSize": 28, "batchNorm": True, "blocks": [[64], [64], [64], [64]], "similarity": "euclidean"}
# Lake's runs, and episodes of the Vinyals split's test classes (an experiment each: the harness
# refuses Lake's runs beside the Vinyals split, whose training classes include their alphabets).
EXPERIMENTS = {
    "lake": {"name": "easyfsl-lake", "model": MODEL, "evaluation": [{"protocol": "lake20"}]},
    "vinyals": {
        "name": "easyfsl-vinyals",
        "data": {"split": "vinyals"},
        "model": MODEL,
        "evaluation": [
            {"protocol": "episodes", "split": "evaluation", "episodes": 60, "seed": 7, "spec": {"ways": 5, "shots": 1, "queries": 5, "alphabetMode": "across"}},
            {"protocol": "episodes", "split": "evaluation", "episodes": 20, "seed": 7, "spec": {"ways": 20, "shots": 5, "queries": 2, "alphabetMode": "across"}},
        ],
    },
}


def cli(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise AssertionError(f"oneshot-bench {' '.join(args)[:200]} failed ({out.returncode}): {out.stderr[-3000:]}")
    return out.stdout


def near_ties(model, protocol_tasks, relative=1e-5):
    """Queries whose two best class scores, as easyfsl computes them, differ by less than `relative`
    of the best: the harness sends an episode's images in a random order, and sums in another
    order may put such a query on the other side (measured: 1 query in 60,000 of 20-way 5-shot)."""
    count = 0
    model.eval()
    with torch.no_grad():
        for support, labels, queries, _, _ in protocol_tasks:
            model.process_support_set(support, labels)
            top = torch.topk(model(queries).double(), 2, dim=1).values
            count += int(((top[:, 0] - top[:, 1]) <= relative * top[:, 0].abs().clamp(min=1)).sum())
    return count


class EasyfslClientTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="oneshot-clients-")
        cls.store = os.path.join(cls.folder, "results.sqlite")
        cls.weights = os.path.join(cls.folder, "conv4.pt")
        torch.manual_seed(0)
        torch.save(easyfsl_scorer.conv4().state_dict(), cls.weights)
        cls.experiments, cls.exports, cls.protocols = {}, {}, []
        for key, experiment in EXPERIMENTS.items():
            cls.experiments[key] = os.path.join(cls.folder, key + ".json")
            with open(cls.experiments[key], "w") as f:
                json.dump(experiment, f)
            cls.exports[key] = os.path.join(cls.folder, "episodes-" + key)
            cli("export", "episodes", cls.experiments[key], "--out", cls.exports[key], "--data", DATA)
            with open(os.path.join(cls.exports[key], "manifest.json")) as f:
                cls.protocols += [(key, entry) for entry in json.load(f)["protocols"]]

    def score(self, method, output="episodes", steps=None):
        """The harness's runs through the scorer (accuracy per protocol, the Vinyals run's details and
        both run ids) and easyfsl's own evaluation of the exported episodes (accuracy per protocol)."""
        command = f"{sys.executable} {SCORER} --method {method} --backbone {self.weights} --output {output}" + (f" --steps {steps}" if steps else "")
        recorded, runs, through = {}, {}, 0.0
        for key, experiment in self.experiments.items():
            started = time.perf_counter()
            out = cli("run", experiment, "--eval-only", "--scorer", command, "--store", self.store, "--data", DATA)
            through += time.perf_counter() - started
            runs[key] = out.split("run ", 1)[1].split()[0]
            detail = json.loads(cli("report", "--store", self.store, "--run", runs[key], "--format", "json"))
            recorded.update({r["protocol"]: r["accuracy"] for r in detail["results"]})
        model, _ = easyfsl_scorer.build(method, self.weights, steps=steps)
        own, seconds, self.ties = {}, 0.0, {}
        for key, entry in self.protocols:
            protocol_tasks = easyfsl_scorer.tasks(os.path.join(self.exports[key], entry["folder"]))
            started = time.perf_counter()
            own[entry["protocol"]] = evaluate(model, protocol_tasks, device="cpu", use_tqdm=False)
            seconds += time.perf_counter() - started
            self.ties[entry["protocol"]] = (near_ties(model, protocol_tasks), entry["episodes"] * entry["queries"])
        print(f"\n{method} ({output}): recorded {recorded}; easyfsl's own evaluate {own}; near ties {self.ties}; runs {through:.1f} s, easyfsl alone {seconds:.1f} s",
              file=sys.stderr)
        return recorded, own, detail, runs

    def assertSameAccuracy(self, recorded, own):
        """Equal, but for at most the near ties' queries (exactly equal where there are none)."""
        self.assertEqual(set(recorded), set(own))
        for name, (ties, queries) in self.ties.items():
            differ = abs(round(recorded[name] * queries) - round(own[name] * queries))
            self.assertLessEqual(differ, ties, f"{name}: recorded {recorded[name]}, easyfsl {own[name]} over {queries} queries, {ties} near ties")

    def test_prototypical_networks_by_episodes_and_by_embeddings(self):
        by_episodes, own, detail, runs_a = self.score("protonet")
        self.assertSameAccuracy(by_episodes, own)
        self.assertEqual(detail["tags"]["scorer.output"], "episodes")
        self.assertEqual(detail["tags"]["scorer.transductive"], "no")
        self.assertFalse(detail["transductive"])
        by_embeddings, _, detail, runs_b = self.score("protonet", output="embeddings")
        self.assertSameAccuracy(by_embeddings, own)
        self.assertEqual(detail["tags"]["scorer.output"], "embeddings euclidean")
        # The same model on the same episodes, two ways: compare pairs them, episode by episode.
        for key in self.experiments:
            comparison = cli("compare", runs_a[key], runs_b[key], "--store", self.store)
            for _, entry in (item for item in self.protocols if item[0] == key):
                self.assertIn(f"| {entry['protocol']} |", comparison)
            self.assertIn("+0.00 [+0.00, +0.00]", comparison)

    def test_finetune_adapts_to_each_episode(self):
        recorded, own, detail, _ = self.score("finetune", steps=20)
        self.assertSameAccuracy(recorded, own)
        self.assertEqual(detail["tags"]["scorer.transductive"], "no")

    def test_tim_is_recorded_and_reported_transductive(self):
        recorded, own, detail, runs = self.score("tim", steps=20)
        run = runs["vinyals"]
        self.assertSameAccuracy(recorded, own)
        self.assertEqual(detail["tags"]["scorer.transductive"], "yes")
        self.assertTrue(detail["transductive"])
        listing = cli("report", "--store", self.store, "--format", "csv")
        row = next(line for line in listing.splitlines() if line.startswith(run))
        self.assertEqual(row.split(",")[3], "yes")
        self.assertIn("transductive", cli("report", "--store", self.store, "--run", run))
        self.assertIn("external, transductive", cli("report", "--store", self.store))


if __name__ == "__main__":
    unittest.main()
