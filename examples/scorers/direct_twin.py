#!/usr/bin/env python3
"""The twin scorer's PyTorch code reading the images itself: the other side of the outside-scorer
protocol's throughput figure (README, "Bring your own model").

`twin_scorer.py` receives images from the harness over the line protocol. This script runs the
same network code (`twin.load`, `model.embed` in batches, `model.score` on the pairs) on the same
work without the harness: Lake's 20 runs (read from all_runs.zip, 800 images, 400 trials) and
1,000 20-way 1-shot within-alphabet episodes of the evaluation split (read from
images_evaluation.zip, each image embedded once, as the harness sends each image once), decoded
and resized by Pillow. It prints images/s end to end (reading, decoding, resizing, embedding,
scoring) and Lake's accuracy as a check that the network is the one scored.

    VENV/bin/python examples/scorers/direct_twin.py models/omniglot-siamese.safetensors [--episodes 1000]
"""
import argparse
import io
import json
import os
import random
import sys
import time
import zipfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import oneshot_twin.model as twin  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read(archive, name, size):
    """Ink bytes (0 paper, 255 ink) of a PNG in the zip, resized to size x size (box filter)."""
    image = Image.open(io.BytesIO(archive.read(name))).convert("L").resize((size, size), Image.BOX)
    return 255 - np.asarray(image, dtype=np.uint8)


def embed_all(model, ink, batch):
    with torch.no_grad():
        return torch.cat([model.embed(twin.ink(ink[i:i + batch])) for i in range(0, len(ink), batch)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256, help="images a forward pass")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=os.path.join(ROOT, "dataset", "omniglot"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, metadata = twin.load(a.checkpoint)
    size = twin.input_size(metadata)
    started = time.perf_counter()

    # Lake's runs: 20 runs x 20 test images against 20 training images.
    runs = zipfile.ZipFile(os.path.join(a.data, "all_runs.zip"))
    correct = trials = images = 0
    for r in range(1, 21):
        labels = [line.split() for line in runs.read(f"run{r:02d}/class_labels.txt").decode().split("\n") if line.strip()]
        tests = [t for t, _ in labels]
        trains = sorted({t for _, t in labels})
        ink = np.stack([read(runs, name, size) for name in tests + trains])
        features = embed_all(model, ink, a.batch)
        images += len(ink)
        q, s = features[:len(tests)], features[len(tests):]
        with torch.no_grad():
            for i, (_, answer) in enumerate(labels):
                logits = model.score(q[i:i + 1].expand(len(trains), -1), s)
                correct += trains[int(torch.argmax(logits))] == answer
                trials += 1
    lake_seconds = time.perf_counter() - started

    # 1,000 20-way 1-shot episodes within one alphabet: 20 characters, a support and a query
    # drawing each; every distinct image embedded once.
    evaluation = zipfile.ZipFile(os.path.join(a.data, "images_evaluation.zip"))
    characters = {}
    for name in evaluation.namelist():
        if name.endswith(".png"):
            parts = name.split("/")
            characters.setdefault((parts[-3], parts[-2]), []).append(name)
    alphabets = {}
    for (alphabet, character), names in sorted(characters.items()):
        alphabets.setdefault(alphabet, []).append(sorted(names))
    rng = random.Random(7)
    episodes = []
    for _ in range(a.episodes):
        alphabet = rng.choice(sorted(alphabets))
        chosen = rng.sample(alphabets[alphabet], 20)
        episodes.append([tuple(rng.sample(drawings, 2)) for drawings in chosen])
    names = sorted({n for e in episodes for pair in e for n in pair})
    index = {n: i for i, n in enumerate(names)}
    ink = np.stack([read(evaluation, n, size) for n in names])
    features = embed_all(model, ink, a.batch)
    images += len(names)
    episode_correct = 0
    with torch.no_grad():
        for e in episodes:
            support = features[[index[s] for s, _ in e]]
            for c, (_, query) in enumerate(e):
                logits = model.score(features[index[query]].unsqueeze(0).expand(20, -1), support)
                episode_correct += int(torch.argmax(logits)) == c
    seconds = time.perf_counter() - started
    print(json.dumps({
        "images": images, "seconds": round(seconds, 2), "images_per_second": round(images / seconds, 1),
        "lake_seconds": round(lake_seconds, 2), "lake_accuracy": correct / trials,
        "episodes": a.episodes, "episode_accuracy": episode_correct / (20 * a.episodes), "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
