#!/usr/bin/env python3
"""An outside scorer (docs/SCORER_PROTOCOL.md) running the project's PyTorch twin on any
checkpoint of the harness, on CUDA when there is one, scoring as the checkpoint's method does:
a Siamese network (objective pairs) scores the pairs it is asked for (the mean logit of an
ensemble's members, as the harness); a prototypical network returns its embeddings, compared by
distance to prototypes; matching networks, relation networks and the fine-tuning baseline take
each episode whole (protocol version 2), as their class scores need the support set: attention
over it, the relation module on each class's mean embedding, a classifier fitted to it; first-order
MAML takes each episode's images and adapts the network to its support set.
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
from oneshot_scorer import file_digest, serve_embeddings, serve_episodes, serve_pairs  # noqa: E402


def class_scores(objective, model, queries, support):
    """The method's scores (Q, N) of query embeddings (Q, F) against the support embeddings
    (N, K, F), as Sources/Experiments/Methods scores an episode."""
    if objective == "relation":
        return twin.relation_scores(model, queries, support)
    if objective == "finetune":
        return twin.finetune_scores(queries, support)
    # matching (and matching-scaled, the cosines x 10): the log of the attention on each class,
    # a softmax of the (members' mean) cosines.
    ways, shots, _ = support.shape
    count = queries.shape[0]
    scale = 10.0 if objective == "matching-scaled" else 1.0
    cosines = model.score(queries.repeat_interleave(ways * shots, 0), support.reshape(ways * shots, -1).repeat(count, 1)).reshape(count, ways * shots)
    return torch.logsumexp(torch.log_softmax(scale * cosines.double(), 1).reshape(count, ways, shots), 2)


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

    objective = metadata.get("objective") or metadata.get("member.0.objective")
    if objective is None:  # an older checkpoint: its network's similarity says its method
        objective = {"euclidean": "prototypical", "cosine": "matching", "relation": "relation"}.get(config["similarity"], "pairs")

    @torch.no_grad()
    def score_episode(support_images, labels, query_images, ways):
        support = model.embed(twin.ink(support_images).to(device))
        order = torch.from_numpy(labels).argsort(stable=True).to(device)  # class by class; each class has the same shots
        grouped = support[order].reshape(ways, len(labels) // ways, -1)
        queries = model.embed(twin.ink(query_images).to(device))
        return class_scores(objective, model, queries, grouped).double().cpu().numpy()

    adaptation = twin.maml_settings(metadata)  # each member's step size and scoring steps, as its run set them

    def adapt_to_episode(support_images, labels, query_images, ways):
        order = torch.from_numpy(labels).argsort(stable=True)
        support = twin.ink(support_images)[order].to(device)
        return twin.maml_scores(model, support, torch.from_numpy(labels)[order].long().to(device), twin.ink(query_images).to(device), ways, adaptation).cpu().numpy()

    if objective == "prototypical":
        serve_embeddings(embed, input_size=size, model=file_digest(path), distance="euclidean")
    elif objective == "maml":
        serve_episodes(adapt_to_episode, input_size=size, model=file_digest(path))
    elif objective in ("matching", "matching-scaled", "relation", "finetune"):
        serve_episodes(score_episode, input_size=size, model=file_digest(path))
    else:
        serve_pairs(score, embed=embed, input_size=size, model=file_digest(path))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: twin_scorer.py CHECKPOINT")
    main(sys.argv[1])
