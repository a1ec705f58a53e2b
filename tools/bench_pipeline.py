"""Throughput of the training input pipeline (excerpts/s), with and without augmentation.

Baseline, measured in the same run: plain standardised log-mel excerpts (no augmentation). Also
measured: augmentation the naive way (one excerpt at a time in Dataset.map, then batch), to show
what the vectorised per-batch augmentation buys.

    .venv/bin/python tools/bench_pipeline.py [--prepared DIR] [--batches 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from tf_svdx import config as config_lib  # noqa: E402
from tf_svdx.data import augment as aug  # noqa: E402
from tf_svdx.data.pipeline import (ExcerptSource, Prepared, _windows, to_model_layout,  # noqa: E402
                                   training_excerpts)
from tf_svdx import features  # noqa: E402
from tf_svdx.data.prepare import prepare  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def rate(dataset, batches: int, batch_size: int) -> float:
    it = iter(dataset)
    for _ in range(3):  # warm-up: tracing, prefetch buffers
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def naive_augmented(prepared: Prepared, cfg) -> tf.data.Dataset:
    """Per-excerpt augmentation before batching (what a straightforward port would do)."""
    fe = prepared.frontend
    pad = cfg.augment.source_frames // 2 + 1
    src = ExcerptSource(prepared.tracks("train"), fe, pad, linear=True, labelled_only=True)
    linear, centres = tf.constant(src.linear), tf.constant(src.centres)

    def one(i):
        key = tf.stack([tf.constant(cfg.seed, tf.int64), i])
        c = tf.gather(centres, tf.random.stateless_uniform([1], key, maxval=len(src.centres),
                                                           dtype=tf.int64))
        window = tf.cast(_windows(linear, c, cfg.augment.source_frames)[0], tf.float32)
        mag = aug.augment_excerpt(window, key + 1, cfg.augment, fe)
        return prepared.standardiser(features.linear_to_log_mel(mag, fe))

    return (tf.data.Dataset.counter().map(one, num_parallel_calls=2, deterministic=True)
            .batch(cfg.pipeline.batch_size).map(to_model_layout).prefetch(tf.data.AUTOTUNE))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", help="a prepared folder (default: prepare the tiny corpus)")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    cfg = config_lib.load(None, [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.prepared
        if folder is None:
            folder = tmp
            prepare(config_lib.load(None, [f"prepare.corpus={REPO / 'tests/data/tiny_corpus'}",
                                           f"prepare.out={folder}"]), progress=False)
        prepared = Prepared(folder)
        b = cfg.pipeline.batch_size
        base = rate(training_excerpts(prepared, cfg, augment=False), args.batches, b)
        augmented = rate(training_excerpts(prepared, cfg), args.batches, b)
        naive = rate(naive_augmented(prepared, cfg), args.batches, b)
    print(f"tf {tf.__version__}, {os.cpu_count()} CPU cores, batch {b}, {args.batches} batches")
    print(f"{'pipeline':<42}{'excerpts/s':>12}{'× baseline':>12}")
    for name, value in [("baseline: no augmentation", base),
                        ("augmented, vectorised per batch (ours)", augmented),
                        ("augmented, per excerpt then batch (naive)", naive)]:
        print(f"{name:<42}{value:12.0f}{value / base:12.3f}")
    print(f"vectorised / naive augmentation: {augmented / naive:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
