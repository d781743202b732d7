#!/usr/bin/env python3
"""Writes a oneshot-bench checkpoint as ONNX: `python python/oneshot_twin/export_onnx.py CHECKPOINT OUT.onnx`.

The graph takes two float inputs `left` and `right`, shape (N, 1, S, S) with S the checkpoint's
inputSize and values ink / 255 (ink = 255 - gray: strokes near 1, paper 0), and gives `logit`,
shape (N): the pair's logit, for an ensemble the mean of its members' (the similarity that
`oneshot-bench predict` prints is its sigmoid). Opset 17 (--opset to change); N is dynamic.
Batch norm runs with its running statistics, as the harness evaluates.
"""
import argparse, os, sys, warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from oneshot_twin.model import input_size, load  # noqa: E402

OPSET = 17


def export(checkpoint, out, opset=OPSET):
    model, metadata = load(checkpoint)
    side = input_size(metadata)
    example = (torch.zeros(2, 1, side, side), torch.zeros(2, 1, side, side))
    # The TorchScript exporter needs no extra package (the torch.export one needs onnxscript);
    # its deprecation notice is not the user's business.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.onnx.export(
        model, example, out, input_names=["left", "right"], output_names=["logit"], opset_version=opset,
        dynamic_axes={"left": {0: "pairs"}, "right": {0: "pairs"}, "logit": {0: "pairs"}}, dynamo=False)
    return side


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=OPSET)
    a = ap.parse_args()
    try:
        side = export(a.checkpoint, a.out, a.opset)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {a.out}: inputs left, right (N, 1, {side}, {side}), output logit (N), opset {a.opset}")


if __name__ == "__main__":
    main()
