#!/usr/bin/env python3
"""An outside scorer with no model (docs/SCORER_PROTOCOL.md): each image's embedding is its ink
in [0, 1], compared by Euclidean distance, which is the harness's own pixel baseline. Built on
the repository's Python package (python/oneshot_scorer: standard library and numpy).

    oneshot-bench run examples/scorers/lake20-105.json --eval-only --scorer 'python3 examples/scorers/pixel_scorer.py'
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))  # or: pip install ./python
from oneshot_scorer import as_float, serve_embeddings  # noqa: E402

SIZE = int(sys.argv[1]) if len(sys.argv) > 1 else 105

serve_embeddings(lambda images: as_float(images).reshape(len(images), -1), input_size=SIZE, model=f"pixels-{SIZE}", distance="euclidean")
