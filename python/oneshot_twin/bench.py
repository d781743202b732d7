#!/usr/bin/env python3
"""PyTorch's CPU throughput on the harness's networks, for `oneshot-bench bench --pytorch PYTHON`.

The networks come from the twin (`model.py`), so PyTorch and the harness time the same shapes:
  vgg        the reference project's VGG16 at 105x105, one channel, head 4608 -> 512 -> ReLU -> 1
  koch       Koch et al. 2015 at 105x105
  omniglot52 the shipped recipe's network: 52x52, blocks 32,32 | 64,64 | 128,128 | 256,256 with
             batch norm, head 2304 -> 512 -> ReLU -> 1
  protonet   Snell et al.'s 4 blocks of 64 channels at 28x28 with batch norm, no head
Modes
  train-batched  one Adam step; vgg and koch: B pairs, both branches as ONE backbone pass over 2B
                 images; omniglot52: B images in groups of 2 characters x 2 drawers scored as B
                 pairs (2 same, 2 different per group), as the harness's `pairing: groups`;
                 protonet: one prototypical episode of B classes x (1 support + 5 queries), in
                 images/s
  embed          forward-only backbone under inference_mode, batch B images
Variants: --channels-last, --bf16 (CPU autocast). Prints one line with "<rate> pairs/s" or
"<rate> images/s" (the median of --reps timed repetitions after one warm-up).

    python python/oneshot_twin/bench.py --net vgg --mode train-batched --batch 32 --threads 2
"""
import argparse, os, statistics, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from oneshot_twin.model import build  # noqa: E402

NETS = {
    "vgg": {"backbone": "vgg16", "headActivation": "relu"},
    "koch": {"backbone": "koch"},
    "omniglot52": {"backbone": "vgg16", "inputSize": 52, "batchNorm": True, "blocks": [[32, 32], [64, 64], [128, 128], [256, 256]], "headActivation": "relu"},
    # experiments/speedrun.json's network: omniglot52's at 40x40
    "speedrun": {"backbone": "vgg16", "inputSize": 40, "batchNorm": True, "blocks": [[32, 32], [64, 64], [128, 128], [256, 256]], "headActivation": "relu"},
    # Snell et al.'s 4 blocks of 64 channels at 28x28 (experiments/protonet-vinyals.json), trained
    # on prototypical episodes: --batch classes x (1 support + 5 queries)
    "protonet": {"backbone": "vgg16", "inputSize": 28, "batchNorm": True, "blocks": [[64], [64], [64], [64]], "similarity": "euclidean"},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", choices=sorted(NETS), default="vgg")
    ap.add_argument("--mode", choices=["train-batched", "embed"], default="train-batched")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="pairs a step (omniglot52, speedrun: images and pairs a step), or images to embed")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    grouped = a.net in ("omniglot52", "speedrun")
    if a.mode == "train-batched" and grouped and a.batch % 4:
        ap.error("--batch must be a multiple of 4 for omniglot52 (groups of 2 characters x 2 drawers)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__} cpu_capability={torch.backends.cpu.get_cpu_capability()}", flush=True)
    config = NETS[a.net]
    side = config.get("inputSize", 105)
    net = build(config)
    memory = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.bf16 else (lambda: torch.autocast("cpu", enabled=False))
    if a.mode == "train-batched":
        net.train()
        images = a.batch if grouped else 2 * a.batch
        x = torch.randn(images, 1, side, side).contiguous(memory_format=memory)
        if grouped:
            # Group g holds images 4g..4g+3: (a1, a2, b1, b2); a1-a2, b1-b2 same, a1-b1, a2-b2 different.
            g = torch.arange(a.batch // 4) * 4
            left = torch.stack([g, g + 2, g, g + 1], 1).reshape(-1)
            right = torch.stack([g + 1, g + 3, g + 2, g + 3], 1).reshape(-1)
            labels = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(a.batch // 4)
        else:
            left, right = torch.arange(a.batch), torch.arange(a.batch) + a.batch
            labels = (torch.arange(a.batch) % 2 == 0).float()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        if a.net == "protonet":
            from oneshot_twin.model import prototypical_loss
            images = a.batch * 6
            x = torch.randn(images, 1, side, side).contiguous(memory_format=memory)

            def episode():
                with autocast():
                    loss = prototypical_loss(net.embed(x).float(), a.batch, 1, 5)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        def step():
            with autocast():
                f = net.embed(x)
                logits = net.score(f[left], f[right])
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        fn, unit = (episode, "images/s") if a.net == "protonet" else (step, "pairs/s")
    else:
        net.eval()
        x = torch.randn(a.batch, 1, side, side).contiguous(memory_format=memory)

        def fn():
            with torch.inference_mode(), autocast():
                return net.embed(x)

        unit = "images/s"
    fn()
    rates = []
    counted = a.batch * 6 if (a.net == "protonet" and a.mode == "train-batched") else a.batch
    for _ in range(a.reps):
        start = time.perf_counter()
        fn()
        rates.append(counted / (time.perf_counter() - start))
    rates.sort()
    tag = "+".join(t for t, on in (("channels_last", a.channels_last), ("bf16-autocast", a.bf16)) if on) or "fp32 eager"
    print(f"{a.net} {a.mode} threads={a.threads} batch={a.batch} {tag} {statistics.median(rates):.2f} {unit} "
          f"(min {rates[0]:.2f}, max {rates[-1]:.2f}, n={len(rates)}) load={os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
