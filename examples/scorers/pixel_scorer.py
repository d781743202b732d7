#!/usr/bin/env python3
"""An outside scorer with no dependencies (docs/SCORER_PROTOCOL.md): each image's embedding is
its ink in [0, 1], compared by Euclidean distance, which is the harness's own pixel baseline.

    oneshot-bench run examples/scorers/lake20-105.json --eval-only --scorer 'python3 examples/scorers/pixel_scorer.py'
"""
import base64
import struct
import sys

SIZE = int(sys.argv[1]) if len(sys.argv) > 1 else 105


def main():
    out = sys.stdout
    out.write(f"oneshot-scorer 1 input={SIZE} output=embeddings distance=euclidean model=pixels-{SIZE}\n")
    out.flush()
    pack = struct.Struct(f"<{SIZE * SIZE}f").pack
    scale = [v / 255.0 for v in range(256)]
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] != "embed":
            sys.exit(f"pixel scorer: unexpected request {line.strip()!r}")
        for _ in range(int(words[1])):
            ink = base64.b64decode(sys.stdin.readline())
            out.write(base64.b64encode(pack(*[scale[v] for v in ink])).decode() + "\n")
        out.write("done\n")
        out.flush()


if __name__ == "__main__":
    main()
