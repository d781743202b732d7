#!/usr/bin/env python3
"""easyfsl's few-shot methods as outside scorers of oneshot-bench (docs/SCORER_PROTOCOL.md),
episode by episode: the harness sends each episode whole (support images with labels, then the
queries), and easyfsl's own `process_support_set` and `forward` score it, so methods that adapt
to an episode (Finetune) or look at its queries together (TIM, transductive) are scored on the
harness's episodes and recorded beside its own methods.

    VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    VENV/bin/pip install ./python easyfsl==1.5.0 torchvision
    oneshot-bench run experiments/protonet-vinyals.json --eval-only \\
        --scorer 'VENV/bin/python examples/scorers/easyfsl_scorer.py --method tim --backbone conv4.pt'

The backbone here is Snell et al.'s four blocks of 64 channels on 1-channel images (the harness's
`protonet-vinyals` network), loaded from a state dict saved by `torch.save(conv4().state_dict(),
PATH)`, or random weights from `--seed` when no file is given; or, with `--checkpoint`, any
checkpoint the harness trained (through the project's PyTorch twin, python/oneshot_twin; needs
safetensors), e.g. `runs/<id>/best.safetensors` of a `protonet-vinyals` run. Put your own backbone
in `conv4`'s place: anything that maps (N, 1, side, side) floats `ink / 255` to (N, D) features.
"""
import argparse
import hashlib
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))  # or: pip install ./python
from oneshot_scorer import as_float, serve_embeddings, serve_episodes  # noqa: E402


def conv4(channels: int = 64) -> nn.Module:
    """Snell et al.'s backbone: four blocks of conv 3x3, batch norm, ReLU and 2x2 max pooling."""
    layers, width = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2)]
        width = channels
    return nn.Sequential(*layers, nn.Flatten())


def tasks(folder: str):
    """A protocol folder of `oneshot-bench export episodes` as easyfsl's data loaders yield
    tasks: (support images, support labels, query images, query labels, class ids), images as
    float `ink / 255` of shape (N, 1, side, side); `easyfsl.utils.evaluate` takes the list."""
    import numpy as np

    arrays = {name: np.load(os.path.join(folder, name + ".npy")) for name in ["support_images", "support_labels", "query_images", "query_labels"]}
    return [
        (torch.from_numpy(as_float(arrays["support_images"][e])), torch.from_numpy(arrays["support_labels"][e]),
         torch.from_numpy(as_float(arrays["query_images"][e])), torch.from_numpy(arrays["query_labels"][e]), None)
        for e in range(len(arrays["support_labels"]))
    ]


def methods():
    from easyfsl.methods import TIM, Finetune, PrototypicalNetworks

    return {"protonet": PrototypicalNetworks, "finetune": Finetune, "tim": TIM}


def build(method: str, backbone_path: str = None, seed: int = 0, steps: int = None, checkpoint: str = None):
    """The easyfsl method around the backbone, in eval mode, and a model id naming both."""
    torch.manual_seed(seed)
    backbone = conv4()
    if checkpoint:
        import oneshot_twin.model as twin

        backbone = twin.load(checkpoint)[0].backbone
        with open(checkpoint, "rb") as f:
            weights = "harness-" + hashlib.sha256(f.read()).hexdigest()[:16]
    elif backbone_path:
        backbone.load_state_dict(torch.load(backbone_path, map_location="cpu", weights_only=True))
        with open(backbone_path, "rb") as f:
            weights = hashlib.sha256(f.read()).hexdigest()[:16]
    else:
        weights = f"random{seed}"
    backbone.eval()
    options = {} if steps is None or method == "protonet" else {"fine_tuning_steps": steps}
    model = methods()[method](backbone, **options)
    model.eval()
    return model, f"easyfsl-{method}{'' if steps is None else f'-{steps}steps'}-conv4-{weights}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=["protonet", "finetune", "tim"], default="protonet")
    parser.add_argument("--backbone", help="state dict of conv4() (torch.save); random weights from --seed without it")
    parser.add_argument("--checkpoint", help="a checkpoint the harness trained (runs/<id>/best.safetensors) as the backbone, through the twin")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=28, help="image side (the experiment's model.inputSize)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps per episode (finetune, tim; easyfsl's default without it)")
    parser.add_argument("--output", choices=["episodes", "embeddings"], default="episodes",
                        help="embeddings: the backbone's features, compared by the harness (protonet only)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("ONESHOT_SCORER_THREADS", torch.get_num_threads())))
    model, model_id = build(args.method, args.backbone, args.seed, args.steps, args.checkpoint)

    if args.output == "embeddings":
        if args.method != "protonet":
            parser.error("--output embeddings needs --method protonet: the other methods adapt to each episode")

        @torch.no_grad()
        def embed(images):
            return model.backbone(torch.from_numpy(as_float(images))).numpy()

        serve_embeddings(embed, input_size=args.size, model=model_id, distance="euclidean")
        return

    # As easyfsl's own `evaluate` calls the model: under no_grad (Finetune and TIM turn gradients
    # back on for their fine-tuning), support set first, then the queries.
    @torch.no_grad()
    def score_episode(support, labels, queries, ways):
        model.process_support_set(torch.from_numpy(as_float(support)), torch.from_numpy(labels))
        return model(torch.from_numpy(as_float(queries))).numpy()

    serve_episodes(score_episode, input_size=args.size, model=model_id, transductive=model.is_transductive())


if __name__ == "__main__":
    main()
