#!/usr/bin/env python3
"""PyTorch CPU reference for the shipped recipe's network (omniglot52), for `oneshot-bench bench
--model omniglot52 --pytorch PYTHON`. The same measurements and output line as
../shared/bench/torch_siamese.py, which covers vgg and koch at 105x105.

Network: 52x52 grayscale, four VGG blocks 32,32 | 64,64 | 128,128 | 256,256 (3x3 pad 1 conv,
batch norm, ReLU; 2x2 max pool after each block: 52-26-13-6-3), flatten 2304, head
|f1 - f2| -> Linear(2304, 512) -> ReLU -> Linear(512, 1), BCEWithLogits.
Training step ("grouped pairs", as oneshot-bench's `pairing: groups`): one backbone pass over B
images (B/4 groups of 2 characters x 2 drawers) and B pairs among them (2 same, 2 different per
group), Adam. Embedding: forward-only backbone under inference_mode.

    VENV/bin/python scripts/bench/torch_omniglot52.py --mode train-batched --batch 128 --threads 2
"""
import argparse, os, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F

SIDE = 52
BLOCKS = [[32, 32], [64, 64], [128, 128], [256, 256]]


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 1
        for block in BLOCKS:
            for w in block:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return torch.flatten(self.features(x), 1)


def flops():
    side, c, fwd = SIDE, 1, 0
    first = None
    for block in BLOCKS:
        for w in block:
            conv = 2 * w * c * 9 * side * side
            first = conv if first is None else first
            fwd += conv
            c = w
        side //= 2
    head = 2 * 2304 * 512 + 2 * 512
    return fwd, first, head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train-batched", "embed"], default="train-batched")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128, help="images a step (and pairs: grouped pairs score as many pairs as images)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--reps", type=int, default=4)
    a = ap.parse_args()
    if a.mode == "train-batched" and a.batch % 4:
        ap.error("--batch must be a multiple of 4 (groups of 2 characters x 2 drawers)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__} cpu_capability={torch.backends.cpu.get_cpu_capability()}", flush=True)
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    backbone = Backbone().to(memory_format=mf)
    head = nn.Sequential(nn.Linear(2304, 512), nn.ReLU(inplace=True), nn.Linear(512, 1))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.bf16 else (lambda: torch.autocast("cpu", enabled=False))
    x = torch.randn(a.batch, 1, SIDE, SIDE).contiguous(memory_format=mf)
    fwd, first, head_flops = flops()
    if a.mode == "train-batched":
        backbone.train()
        # Group g holds images 4g..4g+3: (a1, a2, b1, b2); pairs a1-a2, b1-b2 same, a1-b1, a2-b2 different.
        g = torch.arange(a.batch // 4) * 4
        left = torch.stack([g, g + 2, g, g + 1], 1).reshape(-1)
        right = torch.stack([g + 1, g + 3, g + 2, g + 3], 1).reshape(-1)
        labels = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(a.batch // 4)
        opt = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=1e-4)

        def step():
            with ctx():
                f = backbone(x)
                logit = head((f[left] - f[right]).abs()).squeeze(1)
                loss = F.binary_cross_entropy_with_logits(logit.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        fn, unit, work = step, "pairs/s", (2 * (3 * fwd - first) / 2 + 3 * head_flops)  # a pair = one image's backbone + a head
    else:
        backbone.eval()

        def fn():
            with torch.inference_mode(), ctx():
                return backbone(x)
        unit, work = "images/s", fwd
    fn()
    rates = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        rates.append(a.batch / (time.perf_counter() - t0))
    rates.sort()
    med = statistics.median(rates)
    tag = "+".join(t for t, on in (("channels_last", a.channels_last), ("bf16-autocast", a.bf16)) if on) or "fp32 eager"
    print(f"omniglot52 {a.mode} thr={a.threads} B={a.batch} {tag} {med:.2f} {unit} (min {rates[0]:.2f}, max {rates[-1]:.2f}, n={len(rates)}) "
          f"{med * work / 1e9:.0f} GFLOP/s load={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
