#!/usr/bin/env python3
"""The PyTorch twin and its ONNX export agree with the harness, checkpoint by checkpoint.

For each checkpoint (ONESHOT_TWIN_CHECKPOINTS, colon-separated; default: the shipped model),
ten drawings at the checkpoint's input size are written as PNGs, `oneshot-bench predict
--format csv` scores every pair of them, and the twin (PyTorch) and ONNX Runtime score the
same pairs from the same pixels: the similarities (sigmoid of the logit) must agree within
1e-4 on all 55 pairs (45 distinct pairs and each image with itself).

    ONESHOT_BIN=.build/release/oneshot-bench VENV/bin/python -m unittest discover -s python/tests -v
"""
import csv, io, os, random, struct, subprocess, sys, tempfile, unittest, zlib

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
from oneshot_twin import input_size, load  # noqa: E402
from oneshot_twin.export_onnx import export  # noqa: E402

BIN = os.environ.get("ONESHOT_BIN", os.path.join(ROOT, ".build", "release", "oneshot-bench"))
CHECKPOINTS = [p for p in os.environ.get("ONESHOT_TWIN_CHECKPOINTS", os.path.join(ROOT, "models", "omniglot-siamese.safetensors")).split(":") if p]
TOLERANCE = 1e-4


def write_png(path, gray):
    """An 8-bit grayscale PNG of a (H, W) uint8 array."""
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def drawing(side, seed):
    """Dark strokes on white paper: a few random thick line segments."""
    rng = random.Random(seed)
    gray = np.full((side, side), 255, dtype=np.uint8)
    for _ in range(rng.randint(2, 5)):
        x0, y0, x1, y1 = (rng.uniform(0.15, 0.85) * side for _ in range(4))
        for t in np.linspace(0, 1, 4 * side):
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            r = max(1, side // 30)
            gray[max(0, int(y) - r):int(y) + r + 1, max(0, int(x) - r):int(x) + r + 1] = 0
    return gray


def predict_matrix(checkpoint, paths):
    out = subprocess.run([BIN, "predict", *paths, "--format", "csv", "--checkpoint", checkpoint], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise AssertionError(f"predict failed ({out.returncode}): {out.stderr}")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    return np.array([[float(v) for v in row[1:]] for row in rows[1:]])


class TwinTests(unittest.TestCase):
    def test_twin_and_onnx_agree_with_predict(self):
        import onnxruntime

        self.assertTrue(os.path.exists(BIN), f"no harness binary at {BIN}; build it or set ONESHOT_BIN")
        for checkpoint in CHECKPOINTS:
            with self.subTest(checkpoint=checkpoint), tempfile.TemporaryDirectory() as folder:
                model, metadata = load(checkpoint)
                side = input_size(metadata)
                images = [drawing(side, seed) for seed in range(10)]
                paths = []
                for i, gray in enumerate(images):
                    paths.append(os.path.join(folder, f"d{i}.png"))
                    write_png(paths[-1], gray)
                harness = predict_matrix(checkpoint, paths)
                pairs = [(i, j) for i in range(10) for j in range(i, 10)]
                ink = torch.tensor(np.stack([255 - g for g in images]), dtype=torch.float32).unsqueeze(1) * (1.0 / 255.0)
                left = ink[[i for i, _ in pairs]]
                right = ink[[j for _, j in pairs]]
                with torch.no_grad():
                    twin = torch.sigmoid(model.score(model.embed(left), model.embed(right))).numpy()
                onnx_path = os.path.join(folder, "model.onnx")
                export(checkpoint, onnx_path)
                session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
                logits = session.run(["logit"], {"left": left.numpy(), "right": right.numpy()})[0]
                onnx = 1 / (1 + np.exp(-logits.astype(np.float64)))
                expected = np.array([harness[i, j] for i, j in pairs])
                self.assertEqual(len(pairs), 55)
                self.assertLess(np.abs(twin - expected).max(), TOLERANCE, f"PyTorch twin vs predict on {checkpoint}")
                self.assertLess(np.abs(onnx - expected).max(), TOLERANCE, f"ONNX Runtime vs predict on {checkpoint}")
                print(f"{os.path.basename(checkpoint)}: 55 pairs, max |twin - predict| {np.abs(twin - expected).max():.2e}, "
                      f"max |onnx - predict| {np.abs(onnx - expected).max():.2e}", file=sys.stderr)

    def test_a_checkpoint_that_does_not_match_its_config_is_refused(self):
        from safetensors import safe_open
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory() as folder, safe_open(CHECKPOINTS[0], "pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in list(f.keys())[1:]}
            broken = os.path.join(folder, "broken.safetensors")
            save_file(tensors, broken, metadata=metadata)
            with self.assertRaisesRegex(ValueError, "does not match its model_config"):
                load(broken)
            out = subprocess.run([sys.executable, os.path.join(ROOT, "python", "oneshot_twin", "export_onnx.py"), broken, os.path.join(folder, "x.onnx")], capture_output=True, text=True)
            self.assertEqual(out.returncode, 2)
            self.assertIn("does not match its model_config", out.stderr)


if __name__ == "__main__":
    unittest.main()
