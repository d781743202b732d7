#!/usr/bin/env python3
"""What the outside-scorer protocol costs, version 2 (whole episodes): episodes/s of an easyfsl
method scored through the harness (`run --eval-only --scorer`, each episode's images sent as
base64 lines) against the same method on the same episodes in Python alone (easyfsl's own
`evaluate` on the arrays `oneshot-bench export episodes` writes, already in memory), one after
the other on the same machine.

    VENV/bin/python examples/scorers/protocol_overhead.py --method protonet --episodes 200 [--backbone conv4.pt]

The harness's figure is the scoring time it records per protocol (sending, the scorer's work,
reading the answers), without loading the data or starting the scorer; Python's is `evaluate`'s
time. Both run the scorer's torch with the same threads (ONESHOT_SCORER_THREADS, default 2). The
two alternate `--repeats` times and the best of each is kept (a shared machine's speed drifts by
20% within minutes); a scorer that returns zeros at once gives the protocol's own cost.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import easyfsl_scorer  # noqa: E402
from easyfsl.utils import evaluate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=os.path.join(ROOT, "experiments", "protonet-vinyals.json"))
    parser.add_argument("--method", choices=["protonet", "finetune", "tim"], default="protonet")
    parser.add_argument("--backbone", help="state dict of conv4(); random weights without it")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (finetune, tim)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per protocol")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bin", default=os.environ.get("ONESHOT_BIN", os.path.join(ROOT, ".build", "release", "oneshot-bench")))
    parser.add_argument("--data", default=os.path.join(ROOT, "dataset", "omniglot"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.experiment) as f:
        protocols = len(json.load(f)["evaluation"])
    sets = [x for i in range(protocols) for x in ("--set", f"evaluation.{i}.episodes={args.episodes}")]
    folder = tempfile.mkdtemp(prefix="oneshot-overhead-")
    weights = args.backbone
    if weights is None:
        torch.manual_seed(0)
        weights = os.path.join(folder, "conv4.pt")
        torch.save(easyfsl_scorer.conv4().state_dict(), weights)
    export = os.path.join(folder, "episodes")
    subprocess.run([args.bin, "export", "episodes", args.experiment, "--out", export, "--data", args.data, *sets], check=True, capture_output=True)
    with open(os.path.join(export, "manifest.json")) as f:
        manifest = json.load(f)["protocols"]

    store = os.path.join(folder, "results.sqlite")
    env = dict(os.environ, ONESHOT_SCORER_THREADS=str(args.threads))

    def through(command):
        """Per protocol: (accuracy, seconds) the harness records for a run through `command`."""
        out = subprocess.run([args.bin, "run", args.experiment, "--eval-only", "--scorer", command, "--store", store, "--data", args.data, *sets],
                             capture_output=True, text=True, env=env, check=True)
        run = out.stdout.split("run ", 1)[1].split()[0]
        detail = json.loads(subprocess.run([args.bin, "report", "--store", store, "--run", run, "--format", "json"], capture_output=True, text=True, check=True).stdout)
        return {r["protocol"]: (r["accuracy"], r["seconds"]) for r in detail["results"]}

    model, _ = easyfsl_scorer.build(args.method, weights, steps=args.steps)
    tasks = {entry["protocol"]: easyfsl_scorer.tasks(os.path.join(export, entry["folder"])) for entry in manifest}

    command = f"{sys.executable} {os.path.join(HERE, 'easyfsl_scorer.py')} --method {args.method} --backbone {weights}" + (f" --steps {args.steps}" if args.steps else "")
    null = os.path.join(folder, "null_scorer.py")
    with open(null, "w") as f:
        f.write(f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'python')!r})\nimport numpy as np\nfrom oneshot_scorer import serve_episodes\n"
                f"serve_episodes(lambda s, l, q, w: np.zeros((len(q), w)), input_size={manifest[0]['inputSize']}, model='null')\n")
    best_through, best_alone, accuracy = {}, {}, {}
    for _ in range(args.repeats):
        for name, (recorded, seconds) in through(command).items():
            best_through[name] = min(seconds, best_through.get(name, float("inf")))
            accuracy[name] = (recorded, accuracy.get(name, (None, None))[1])
        for name, protocol_tasks in tasks.items():
            started = time.perf_counter()
            own = evaluate(model, protocol_tasks, device="cpu", use_tqdm=False)
            best_alone[name] = min(time.perf_counter() - started, best_alone.get(name, float("inf")))
            accuracy[name] = (accuracy[name][0], own)
    protocol_only = {name: seconds for name, (_, seconds) in through(f"{sys.executable} {null}").items()}

    print(f"{args.method}, {args.episodes} episodes per protocol, best of {args.repeats}, torch {torch.__version__} on {args.threads} threads")
    print(f"{'protocol':31} {'through the protocol':>20} {'easyfsl alone':>14} {'ratio':>6} {'protocol alone':>15}  accuracy (through / alone)")
    for entry in manifest:
        name, n = entry["protocol"], entry["episodes"]
        print(f"{name:31} {n / best_through[name]:15.1f} ep/s {n / best_alone[name]:9.1f} ep/s {best_alone[name] / best_through[name]:5.2f}x "
              f"{1000 * protocol_only[name] / n:9.1f} ms/ep  {100 * accuracy[name][0]:.2f}% / {100 * accuracy[name][1]:.2f}%")
    total_through, total_alone = sum(best_through.values()), sum(best_alone.values())
    print(f"{'all':31} {total_through:17.1f} s {total_alone:12.1f} s {total_alone / total_through:5.2f}x {sum(protocol_only.values()):11.1f} s")


if __name__ == "__main__":
    main()
