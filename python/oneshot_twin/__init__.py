"""oneshot-bench's networks in PyTorch: load any checkpoint of the harness, export it to ONNX,
time PyTorch on the same shapes. See python/README.md."""
from .model import Ensemble, Siamese, build, ink, input_size, load  # noqa: F401
