#!/usr/bin/env python3
"""The scorer package (python/oneshot_scorer) speaks the protocol of docs/SCORER_PROTOCOL.md:
requests written to its input as the harness writes them, answers read back. numpy only.

    python3 -m unittest python/tests/test_oneshot_scorer.py -v
"""
import base64
import io
import os
import struct
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from oneshot_scorer import as_float, serve_embeddings, serve_episodes, serve_pairs  # noqa: E402

SIDE = 8


def image(value):
    return base64.b64encode(bytes([value]) * (SIDE * SIDE)).decode()


def talk(serve, requests, *args, **kwargs):
    """Runs `serve` on `requests` (a string); returns (status, answer lines)."""
    out = io.BytesIO()
    status = serve(*args, stdin=io.BytesIO(requests.encode()), stdout=out, **kwargs)
    return status, out.getvalue().decode().splitlines()


class EmbeddingsTests(unittest.TestCase):
    def test_hello_vectors_and_done(self):
        seen = []

        def embed(images):
            seen.append(images.copy())
            return as_float(images).reshape(len(images), -1)[:, :2] * 2

        status, lines = talk(serve_embeddings, f"embed 2\n{image(255)}\n{image(0)}\n", embed, input_size=SIDE, model="m1")
        self.assertEqual(status, 0)
        self.assertEqual(lines[0], f"oneshot-scorer 1 input={SIDE} output=embeddings distance=euclidean model=m1")
        self.assertEqual(seen[0].dtype, np.uint8)
        self.assertEqual(seen[0].shape, (2, SIDE, SIDE))
        self.assertEqual(struct.unpack("<2f", base64.b64decode(lines[1])), (2.0, 2.0))
        self.assertEqual(struct.unpack("<2f", base64.b64decode(lines[2])), (0.0, 0.0))
        self.assertEqual(lines[3:], ["done"])

    def test_batches_split_a_request(self):
        sizes = []

        def embed(images):
            sizes.append(len(images))
            return np.ones((len(images), 3))

        requests = "embed 5\n" + "".join(image(i) + "\n" for i in range(5))
        status, lines = talk(serve_embeddings, requests, embed, input_size=SIDE, model="m", batch_size=2)
        self.assertEqual((status, sizes, len(lines)), (0, [2, 2, 1], 1 + 5 + 1))

    def test_wrong_shapes_nan_and_exceptions_become_one_error_line(self):
        cases = [
            (lambda images: np.ones((len(images) + 1, 3)), "embed returned shape (3, 3), expected (2, D)"),
            (lambda images: np.full((len(images), 3), np.nan), "embed returned NaN or infinity"),
            (lambda images: 1 / 0, "ZeroDivisionError: division by zero"),
        ]
        for embed, expected in cases:
            with self.subTest(expected=expected):
                status, lines = talk(serve_embeddings, f"embed 2\n{image(1)}\n{image(2)}\n", embed, input_size=SIDE, model="m")
                self.assertEqual(status, 1)
                self.assertEqual(lines[-1], "error " + expected)

    def test_vectors_keep_one_width(self):
        widths = iter([3, 4])
        status, lines = talk(serve_embeddings, f"embed 1\n{image(1)}\nembed 1\n{image(2)}\n", lambda images: np.ones((1, next(widths))), input_size=SIDE, model="m")
        self.assertEqual(status, 1)
        self.assertEqual(lines[-1], "error embed returned vectors of 4 values, earlier ones had 3")

    def test_bad_requests_are_reported(self):
        for requests, expected in [
            ("embed 1\nnot-base64!\n", "error an image line is not base64"),
            ("embed 1\n" + base64.b64encode(b"12").decode() + "\n", f"error an image has 2 bytes, not {SIDE}x{SIDE}"),
            ("embed 2\n" + image(1) + "\n", "error the input ended inside a request, before image 2 of 2"),
            ("hello\n", "error unexpected request 'hello' (this scorer answers embed)"),
        ]:
            with self.subTest(requests=requests[:20]):
                status, lines = talk(serve_embeddings, requests, lambda images: np.ones((len(images), 1)), input_size=SIDE, model="m")
                self.assertEqual(status, 1)
                self.assertTrue(lines[-1].startswith(expected), lines[-1])

    def test_a_print_in_the_model_does_not_reach_the_answer(self):
        def embed(images):
            print("chatty model")
            return np.ones((len(images), 1))

        status, lines = talk(serve_embeddings, f"embed 1\n{image(1)}\n", embed, input_size=SIDE, model="m")
        # With streams given (as here) prints go wherever sys.stdout goes; on the real streams the
        # package moves descriptor 1 to standard error (checked end to end in test_clients.py).
        self.assertEqual((status, lines[-1]), (0, "done"))

    def test_arguments_are_checked(self):
        with self.assertRaises(ValueError):
            serve_embeddings(lambda x: x, input_size=4, model="m", stdin=io.BytesIO(), stdout=io.BytesIO())
        with self.assertRaises(ValueError):
            serve_embeddings(lambda x: x, input_size=28, model="has space", stdin=io.BytesIO(), stdout=io.BytesIO())
        with self.assertRaises(ValueError):
            serve_embeddings(lambda x: x, input_size=28, model="m", distance="manhattan", stdin=io.BytesIO(), stdout=io.BytesIO())


class PairsTests(unittest.TestCase):
    def test_images_kept_by_number_and_pairs_scored_through_features(self):
        def embed(images):
            return images.reshape(len(images), -1)[:, :1].astype(np.float64)

        def score(left, right):
            return -np.abs(left - right)[:, 0]

        requests = f"embed 2\n{image(10)}\n{image(30)}\nembed 1\n{image(11)}\nscore 3\n2 0\n2 1\n1 1\n"
        status, lines = talk(serve_pairs, requests, score, embed=embed, input_size=SIDE, model="p")
        self.assertEqual(status, 0)
        self.assertEqual(lines, [f"oneshot-scorer 1 input={SIDE} output=scores model=p", "ok", "ok", "-1.0", "-19.0", "-0.0", "done"])

    def test_without_embed_score_gets_the_images(self):
        shapes = []

        def score(left, right):
            shapes.append((left.shape, right.shape))
            return np.zeros(len(left))

        status, lines = talk(serve_pairs, f"embed 1\n{image(1)}\nscore 1\n0 0\n", score, input_size=SIDE, model="p")
        self.assertEqual((status, shapes), (0, [((1, SIDE, SIDE), (1, SIDE, SIDE))]))

    def test_a_pair_of_an_image_not_sent_is_an_error(self):
        status, lines = talk(serve_pairs, f"embed 1\n{image(1)}\nscore 1\n0 5\n", lambda a, b: np.zeros(len(a)), input_size=SIDE, model="p")
        self.assertEqual(status, 1)
        self.assertEqual(lines[-1], "error pair (0, 5) names an image not sent (1 so far)")


class EpisodesTests(unittest.TestCase):
    def test_an_episode_reaches_the_function_whole_and_its_rows_come_back(self):
        got = {}

        def score_episode(support, labels, queries, ways):
            got.update(support=support, labels=labels, queries=queries, ways=ways)
            # Each query's score for class c: minus its distance to class c's mean ink.
            means = np.array([support[labels == c].mean() for c in range(ways)])
            return -np.abs(queries.reshape(len(queries), -1).mean(1)[:, None] - means[None, :])

        requests = f"episode 2 3 2\n1 {image(200)}\n0 {image(10)}\n1 {image(210)}\n{image(12)}\n{image(205)}\n"
        status, lines = talk(serve_episodes, requests, score_episode, input_size=SIDE, model="e", transductive=True)
        self.assertEqual(status, 0)
        self.assertEqual(lines[0], f"oneshot-scorer 2 input={SIDE} output=episodes transductive=yes model=e")
        self.assertEqual(got["labels"].tolist(), [1, 0, 1])
        self.assertEqual(got["labels"].dtype, np.int64)
        self.assertEqual(got["support"].shape, (3, SIDE, SIDE))
        self.assertEqual(got["queries"][:, 0, 0].tolist(), [12, 205])
        self.assertEqual(got["ways"], 2)
        rows = [[float(v) for v in line.split()] for line in lines[1:3]]
        self.assertEqual(rows, [[-2.0, -193.0], [-195.0, -0.0]])
        self.assertEqual(lines[3:], ["done"])

    def test_rows_of_the_wrong_shape_and_bad_labels_are_errors(self):
        requests = f"episode 2 2 1\n0 {image(1)}\n1 {image(2)}\n{image(3)}\n"
        status, lines = talk(serve_episodes, requests, lambda s, l, q, w: np.zeros((1, 3)), input_size=SIDE, model="e")
        self.assertEqual((status, lines[-1]), (1, "error score_episode returned shape (1, 3), expected (1, 2)"))
        status, lines = talk(serve_episodes, f"episode 2 1 1\n2 {image(1)}\n{image(3)}\n", lambda s, l, q, w: np.zeros((1, 2)), input_size=SIDE, model="e")
        self.assertEqual((status, lines[-1]), (1, "error support label 2 is outside 0..1"))
        self.assertEqual(lines[0].split()[4], "transductive=no")



class TypesTests(unittest.TestCase):
    def test_the_package_passes_mypy_strict(self):
        try:
            from mypy import api
        except ImportError:
            self.skipTest("mypy is not installed here (python/requirements-clients.txt has it; CI runs this there)")
        out, err, status = api.run(["--strict", "--no-incremental", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "oneshot_scorer")])
        self.assertEqual(status, 0, out + err)


if __name__ == "__main__":
    unittest.main()
