#!/usr/bin/env python3
"""An outside scorer (docs/SCORER_PROTOCOL.md) running the project's PyTorch twin on any
checkpoint of the harness, on CUDA when there is one: a network with a head scores the pairs
it is asked for (the mean logit of an ensemble's members, as the harness); a prototypical
network (model.similarity euclidean) returns its embeddings, compared by distance to prototypes.
Built on the repository's Python package (python/oneshot_scorer).

    python3 -m pip install -r python/requirements.txt
    oneshot-bench run experiments/omniglot52-eval.json --eval-only \\
        --scorer 'python3 examples/scorers/twin_scorer.py models/omniglot-siamese.safetensors'
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))  # or: pip install ./python
import oneshot_twin.model as twin  # noqa: E402
from oneshot_scorer import file_digest, serve_embeddings, serve_pairs  # noqa: E402


def main(path):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, metadata = twin.load(path)
    model = model.to(device)
    config = twin.full_config(json.loads(metadata["model_config"]))
    size = config["inputSize"]
    print(f"twin scorer: {path} on {device}", file=sys.stderr)

    @torch.no_grad()
    def embed(images):
        return model.embed(twin.ink(images).to(device)).float().cpu().numpy()

    @torch.no_grad()
    def score(left, right):
        return model.score(torch.from_numpy(left).to(device), torch.from_numpy(right).to(device)).cpu().numpy()

    if config["similarity"] == "euclidean":
        serve_embeddings(embed, input_size=size, model=file_digest(path), distance="euclidean")
    else:
        serve_pairs(score, embed=embed, input_size=size, model=file_digest(path))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: twin_scorer.py CHECKPOINT")
    main(sys.argv[1])
