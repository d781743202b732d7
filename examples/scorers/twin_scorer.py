#!/usr/bin/env python3
"""An outside scorer (docs/SCORER_PROTOCOL.md) running the project's PyTorch twin on any
checkpoint of the harness, on CUDA when there is one: a network with a head scores the pairs
it is asked for (the mean logit of an ensemble's members, as the harness); a prototypical
network (model.similarity euclidean) returns its embeddings, compared by distance to prototypes.

    python3 -m pip install -r python/requirements.txt
    oneshot-bench run experiments/omniglot52-eval.json --eval-only \\
        --scorer 'python3 examples/scorers/twin_scorer.py models/omniglot-siamese.safetensors'
"""
import base64
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import oneshot_twin.model as twin  # noqa: E402


def main(path):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, metadata = twin.load(path)
    model = model.to(device)
    config = twin.full_config(json.loads(metadata["model_config"]))
    size = config["inputSize"]
    euclidean = config["similarity"] == "euclidean"
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    out = sys.stdout
    output = "embeddings distance=euclidean" if euclidean else "scores"
    out.write(f"oneshot-scorer 1 input={size} output={output} model=sha256:{digest}\n")
    out.flush()
    print(f"twin scorer: {path} on {device}", file=sys.stderr)
    features = []  # by image number
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "embed":
            n = int(words[1])
            ink = np.frombuffer(b"".join(base64.b64decode(sys.stdin.readline()) for _ in range(n)), dtype=np.uint8).reshape(n, 1, size, size)
            with torch.no_grad():
                embedded = model.embed(twin.ink(ink).to(device)).float()
            if euclidean:
                for row in embedded.cpu().numpy().astype("<f4"):
                    out.write(base64.b64encode(row.tobytes()).decode() + "\n")
                out.write("done\n")
            else:
                features.extend(embedded)
                out.write("ok\n")
        elif words[0] == "score":
            pairs = [tuple(map(int, sys.stdin.readline().split())) for _ in range(int(words[1]))]
            with torch.no_grad():
                left = torch.stack([features[i] for i, _ in pairs])
                right = torch.stack([features[j] for _, j in pairs])
                logits = model.score(left, right).cpu().tolist()
            out.write("".join(f"{v!r}\n" for v in logits) + "done\n")
        else:
            sys.exit(f"twin scorer: unexpected request {line.strip()!r}")
        out.flush()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: twin_scorer.py CHECKPOINT")
    main(sys.argv[1])
