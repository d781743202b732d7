"""The outside-scorer line protocol of oneshot-bench, versions 1 and 2 (docs/SCORER_PROTOCOL.md),
served for a Python function."""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys
import traceback
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]

#: ``embed(images) -> (N, D)``: one vector per image (anything ``numpy.asarray`` takes).
Embedder = Callable[[Images], Any]
#: ``score(left, right) -> (P,)``: the similarity of each pair (higher is more alike). ``left``
#: and ``right`` are stacked rows of what ``embed`` returned, or the images when there is none.
PairScorer = Callable[[Any, Any], Any]
#: ``score_episode(support_images, support_labels, query_images, ways) -> (Q, ways)``: each
#: query's score for each class (higher is more likely), classes numbered as ``support_labels``.
EpisodeScorer = Callable[[Images, Labels, Images, int], Any]


class ScorerError(Exception):
    """A request the scorer cannot read, or a function's answer of the wrong shape."""


def as_float(images: Images) -> npt.NDArray[np.float32]:
    """``ink / 255`` as float32 of shape (N, 1, side, side): what oneshot-bench's networks take."""
    return (np.asarray(images, dtype=np.float32) / np.float32(255.0))[:, None, :, :]


def file_digest(path: str) -> str:
    """``sha256:<hex>`` of a file: a good model id for a checkpoint (runs of one model form a seed group)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_hello(input_size: int, model: str) -> None:
    if not isinstance(input_size, int) or not 8 <= input_size <= 512:
        raise ValueError(f"input_size must be an int from 8 to 512, not {input_size!r}")
    if not model or len(model) > 200 or any(c.isspace() for c in model):
        raise ValueError(f"model must be 1 to 200 characters without spaces, not {model!r}")


class _Channel:
    """The harness's requests in, the answers out. On the real standard streams, the protocol
    keeps a private copy of file descriptor 1 and points descriptor 1 and ``sys.stdout`` at standard
    error: a ``print`` in the model's code (or a C library's) cannot break the protocol."""

    def __init__(self, stdin: Optional[BinaryIO], stdout: Optional[BinaryIO]) -> None:
        if stdout is None:
            sys.stdout.flush()
            private = os.dup(1)
            os.dup2(2, 1)
            sys.stdout = sys.stderr
            stdout = os.fdopen(private, "wb")
        self.out: BinaryIO = stdout
        self.inp: BinaryIO = stdin if stdin is not None else sys.stdin.buffer

    def line(self) -> Optional[str]:
        raw = self.inp.readline()
        if not raw:
            return None
        return raw.decode("ascii", "replace").rstrip("\r\n")

    def expect(self, what: str) -> str:
        line = self.line()
        if line is None:
            raise ScorerError(f"the input ended inside a request, before {what}")
        return line

    def write(self, text: str) -> None:
        self.out.write(text.encode("ascii"))
        self.out.flush()


def _count(words: List[str], i: int, request: str, low: int = 0) -> int:
    try:
        value = int(words[i])
    except (IndexError, ValueError):
        raise ScorerError(f"malformed request {' '.join(words)[:60]!r}: {request}") from None
    if value < low:
        raise ScorerError(f"malformed request {' '.join(words)[:60]!r}: a count below {low}")
    return value


def _image(text: str, side: int) -> Images:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ScorerError(f"an image line is not base64: {text[:40]!r}") from None
    if len(raw) != side * side:
        raise ScorerError(f"an image has {len(raw)} bytes, not {side}x{side}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(side, side)


def _images(channel: _Channel, n: int, side: int, what: str) -> Images:
    if n == 0:
        return np.zeros((0, side, side), dtype=np.uint8)
    return np.stack([_image(channel.expect(f"{what} {i + 1} of {n}"), side) for i in range(n)])


def _finite(array: Any, name: str, shape: Tuple[int, ...]) -> npt.NDArray[np.float64]:
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ScorerError(f"{name} returned something that is not an array of numbers ({error})") from None
    if values.shape != shape and not (len(shape) == 2 and shape[1] == -1 and values.ndim == 2 and values.shape[0] == shape[0]):
        want = "(" + ", ".join("D" if s == -1 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ScorerError(f"{name} returned shape {values.shape}, expected {want}")
    if not np.all(np.isfinite(values)):
        raise ScorerError(f"{name} returned NaN or infinity")
    return values


def _serve(hello: str, handlers: Dict[str, Callable[[_Channel, List[str]], str]], stdin: Optional[BinaryIO], stdout: Optional[BinaryIO]) -> int:
    """Writes the hello line, then answers requests until the input ends (status 0). A request it
    cannot read, or an exception in the model's function, is answered with a line ``error ...``
    (the harness ends the run with it; the traceback goes to standard error) and status 1."""
    channel = _Channel(stdin, stdout)
    try:
        channel.write(hello + "\n")
        while True:
            line = channel.line()
            if line is None:
                return 0
            words = line.split()
            if not words:
                continue
            try:
                handler = handlers.get(words[0])
                if handler is None:
                    raise ScorerError(f"unexpected request {line[:60]!r} (this scorer answers {', '.join(sorted(handlers))})")
                reply = handler(channel, words)
            except Exception as error:  # the model's own errors too: reported, then the scorer ends
                if not isinstance(error, ScorerError):
                    traceback.print_exc(file=sys.stderr)
                channel.write("error " + _one_line(f"{type(error).__name__}: {error}" if not isinstance(error, ScorerError) else str(error)) + "\n")
                return 1
            channel.write(reply)
    except BrokenPipeError:
        return 1  # the harness went away: nothing left to answer


def _finish(status: int, stdin: Optional[BinaryIO]) -> int:
    if stdin is None and status != 0:
        sys.exit(status)
    return status


def serve_embeddings(embed: Embedder, *, input_size: int, model: str, distance: str = "euclidean", batch_size: Optional[int] = None,
                     stdin: Optional[BinaryIO] = None, stdout: Optional[BinaryIO] = None) -> int:
    """Serves ``embed(images) -> (N, D)`` (version 1, ``output=embeddings``). The harness compares
    the vectors: ``euclidean`` scores a query by its negative squared distance to each class's mean
    (a prototypical network); ``cosine`` by its mean cosine similarity to the class's images.
    ``batch_size`` splits a request's images (at most 256) into calls of that many."""
    _check_hello(input_size, model)
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"distance must be 'euclidean' or 'cosine', not {distance!r}")
    width: List[int] = []

    def on_embed(channel: _Channel, words: List[str]) -> str:
        n = _count(words, 1, "embed N", low=1)
        images = _images(channel, n, input_size, "image")
        step = batch_size or n
        vectors = np.concatenate([_finite(embed(images[i:i + step]), "embed", (len(images[i:i + step]), -1)) for i in range(0, n, step)])
        if vectors.shape[1] == 0:
            raise ScorerError("embed returned vectors of no values")
        if width and vectors.shape[1] != width[0]:
            raise ScorerError(f"embed returned vectors of {vectors.shape[1]} values, earlier ones had {width[0]}")
        width[:] = [vectors.shape[1]]
        rows = vectors.astype("<f4")
        return "".join(base64.b64encode(row.tobytes()).decode("ascii") + "\n" for row in rows) + "done\n"

    hello = f"oneshot-scorer 1 input={input_size} output=embeddings distance={distance} model={model}"
    return _finish(_serve(hello, {"embed": on_embed}, stdin, stdout), stdin)


def serve_pairs(score: PairScorer, *, input_size: int, model: str, embed: Optional[Embedder] = None,
                stdin: Optional[BinaryIO] = None, stdout: Optional[BinaryIO] = None) -> int:
    """Serves ``score(left, right) -> (P,)`` (version 1, ``output=scores``): the harness names
    pairs of the images it sent, and a query goes to the class of the highest mean score. With
    ``embed``, each image is embedded once when it arrives and ``score`` gets stacked rows of
    those features (a Siamese network's head on its two feature vectors); without, the images."""
    _check_hello(input_size, model)
    kept: List[Any] = []  # by image number: its features, or the image

    def on_embed(channel: _Channel, words: List[str]) -> str:
        n = _count(words, 1, "embed N", low=1)
        images = _images(channel, n, input_size, "image")
        if embed is None:
            kept.extend(images)
        else:
            features = np.asarray(embed(images))
            if features.ndim < 1 or features.shape[0] != n:
                raise ScorerError(f"embed returned shape {features.shape} for {n} images")
            kept.extend(features)
        return "ok\n"

    def on_score(channel: _Channel, words: List[str]) -> str:
        p = _count(words, 1, "score P", low=1)
        pairs = []
        for k in range(p):
            text = channel.expect(f"pair {k + 1} of {p}").split()
            try:
                i, j = int(text[0]), int(text[1])
            except (IndexError, ValueError):
                raise ScorerError(f"pair line {' '.join(text)[:40]!r} is not two image numbers") from None
            if not (0 <= i < len(kept) and 0 <= j < len(kept)):
                raise ScorerError(f"pair ({i}, {j}) names an image not sent ({len(kept)} so far)")
            pairs.append((i, j))
        left = np.stack([kept[i] for i, _ in pairs])
        right = np.stack([kept[j] for _, j in pairs])
        values = _finite(score(left, right), "score", (p,))
        return "".join(f"{v!r}\n" for v in values.tolist()) + "done\n"

    hello = f"oneshot-scorer 1 input={input_size} output=scores model={model}"
    return _finish(_serve(hello, {"embed": on_embed, "score": on_score}, stdin, stdout), stdin)


def serve_episodes(score_episode: EpisodeScorer, *, input_size: int, model: str, transductive: bool = False,
                   stdin: Optional[BinaryIO] = None, stdout: Optional[BinaryIO] = None) -> int:
    """Serves ``score_episode(support_images, support_labels, query_images, ways) -> (Q, ways)``
    (version 2, ``output=episodes``): the harness sends each episode whole, its support images
    with their labels (0 to ways - 1, shuffled) and its queries (shuffled). The function may
    adapt to the support set (fine-tuning, MAML). ``transductive=True`` says it also uses the
    queries together (their statistics): the run is recorded and reported as transductive."""
    _check_hello(input_size, model)

    def on_episode(channel: _Channel, words: List[str]) -> str:
        ways = _count(words, 1, "episode WAYS SUPPORT QUERIES", low=1)
        shots = _count(words, 2, "episode WAYS SUPPORT QUERIES", low=1)
        queries = _count(words, 3, "episode WAYS SUPPORT QUERIES", low=1)
        labels = np.zeros(shots, dtype=np.int64)
        support = np.zeros((shots, input_size, input_size), dtype=np.uint8)
        for k in range(shots):
            text = channel.expect(f"support image {k + 1} of {shots}")
            label, _, data = text.partition(" ")
            try:
                labels[k] = int(label)
            except ValueError:
                raise ScorerError(f"support line {k + 1} does not start with a label: {text[:40]!r}") from None
            if not 0 <= labels[k] < ways:
                raise ScorerError(f"support label {labels[k]} is outside 0..{ways - 1}")
            support[k] = _image(data, input_size)
        query_images = _images(channel, queries, input_size, "query image")
        scores = _finite(score_episode(support, labels, query_images, ways), "score_episode", (queries, ways))
        return "".join(" ".join(repr(v) for v in row) + "\n" for row in scores.tolist()) + "done\n"

    hello = f"oneshot-scorer 2 input={input_size} output=episodes transductive={'yes' if transductive else 'no'} model={model}"
    return _finish(_serve(hello, {"episode": on_episode}, stdin, stdout), stdin)
