"""Turn a function into an outside scorer of oneshot-bench (docs/SCORER_PROTOCOL.md).

Three shapes of model, one helper each; the helper writes the hello line, decodes the images,
batches, checks what the function returns, reports its errors to the harness and exits cleanly
when the harness closes its input::

    from oneshot_scorer import serve_embeddings, serve_pairs, serve_episodes

    serve_embeddings(embed, input_size=28, model="my-net", distance="euclidean")
    serve_pairs(score, input_size=105, model="my-siamese", embed=features)
    serve_episodes(score_episode, input_size=28, model="my-finetuner", transductive=False)

Images reach the functions as ``uint8`` arrays of shape (N, side, side): ink intensities, 0 is
paper and 255 is ink. ``as_float(images)`` gives ``ink / 255`` as float32 (N, 1, side, side),
what oneshot-bench's own networks take. Standard library and numpy only.
"""
from .protocol import (
    EpisodeScorer,
    Embedder,
    PairScorer,
    ScorerError,
    as_float,
    file_digest,
    serve_embeddings,
    serve_episodes,
    serve_pairs,
)

__all__ = [
    "EpisodeScorer",
    "Embedder",
    "PairScorer",
    "ScorerError",
    "as_float",
    "file_digest",
    "serve_embeddings",
    "serve_episodes",
    "serve_pairs",
]
__version__ = "2.0.0"
