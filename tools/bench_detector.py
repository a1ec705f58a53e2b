"""Detector benchmarks (issue 4), each measured against its baseline in the same run.

Whole-track prediction: the dense fully-convolutional twin vs the sliding-window reference
(the detector on a batch of explicit 115-frame excerpts, one per frame) on a 3-minute track of
real audio (the tiny corpus, looped), full-width model. Target: ≥ 20× faster, identical output to
1e-4 (max abs, probabilities).

    .venv/bin/python tools/bench_detector.py [--minutes 3] [--detector MODEL.keras]

Without --detector the model is randomly initialised, its fc9 rescaled so that the logits have
std 2 on the track (random init alone gives near-constant probabilities, which would make the
agreement check vacuous).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_svdx import audio, features  # noqa: E402
from tf_svdx.config import FrontEnd  # noqa: E402
from tf_svdx.data.pipeline import whole_track  # noqa: E402
from tf_svdx.data.records import TrackFeatures  # noqa: E402
from tf_svdx.models import (build_dense, build_detector, dense_logits,  # noqa: E402
                            probabilities, sliding_window_logits)

REPO = Path(__file__).resolve().parents[1]
TINY_AUDIO = REPO / "tests" / "data" / "tiny_corpus" / "audio"


def looped_track(minutes: float, fe: FrontEnd) -> np.ndarray:
    """Real audio looped to `minutes`, standardised by its own statistics, padded: [T+114, 80]."""
    clips = [audio.load(p, fe.sample_rate) for p in sorted(TINY_AUDIO.glob("*.flac"))]
    wave = np.concatenate(clips)
    n = int(minutes * 60 * fe.sample_rate)
    wave = np.tile(wave, -(-n // len(wave)))[:n]
    log_mel = features.log_mel(wave, fe).numpy()
    standardiser = features.Standardiser(log_mel.mean(0), log_mel.std(0, ddof=1))
    frames = len(log_mel)
    track = TrackFeatures("bench", "test", log_mel,
                          np.zeros((frames, fe.n_linear_bins), np.float16),
                          np.zeros(frames, np.uint8))
    return whole_track(track, fe, standardiser)


def _timed(fn, repeats: int = 1):
    """(best wall-clock seconds over `repeats`, last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_dense(minutes: float = 3.0, detector_path: str | None = None, batch: int = 256,
                chunk_frames: int = 8192, seed: int = 0) -> dict:
    """Dense vs sliding-window whole-track prediction; prints and returns the numbers."""
    fe = FrontEnd()
    track = looped_track(minutes, fe)
    n = len(track) - (fe.excerpt_frames - 1)
    if detector_path:
        detector = keras.models.load_model(detector_path)
    else:
        keras.utils.set_random_seed(seed)
        detector = build_detector()
        logits = dense_logits(build_dense(detector), track).reshape(n, -1)
        fc9 = detector.get_layer("fc9")
        kernel, bias = fc9.get_weights()
        scale = 2.0 / logits.std(axis=0)
        fc9.set_weights([kernel * scale, (bias - logits.mean(axis=0)) * scale])
    dense = build_dense(detector)

    # Warm-up: trace both tf.functions (and touch the conv kernels) outside the timings.
    dense_logits(dense, track[:fe.excerpt_frames + 100])
    sliding_window_logits(detector, track[:fe.excerpt_frames + batch], batch=batch)

    t_dense, dense_out = _timed(lambda: dense_logits(dense, track, chunk_frames=None), 3)
    t_chunked, chunked_out = _timed(lambda: dense_logits(dense, track, chunk_frames), 3)
    t_slide, slide_out = _timed(lambda: sliding_window_logits(detector, track, batch=batch))

    p_dense, p_slide = probabilities(dense_out), probabilities(slide_out)
    result = {
        "frames": n,
        "dense_s": t_dense,
        "dense_chunked_s": t_chunked,
        "sliding_s": t_slide,
        "speedup": t_slide / t_dense,
        "speedup_chunked": t_slide / t_chunked,
        "max_abs_diff_prob": float(np.abs(p_dense - p_slide).max()),
        "max_abs_diff_prob_chunked": float(np.abs(probabilities(chunked_out) - p_slide).max()),
        "max_abs_diff_logit": float(np.abs(dense_out - slide_out).max()),
        "prob_range": (float(p_slide.min()), float(p_slide.max())),
    }
    print(f"whole-track prediction, {minutes:g} min = {n} frames, full-width detector"
          f"{' ' + detector_path if detector_path else ' (random init)'}")
    print(f"  sliding window (batch {batch}):   {t_slide:8.2f} s")
    print(f"  dense, one pass:                {t_dense:8.2f} s   {result['speedup']:6.1f}× faster")
    print(f"  dense, chunks of {chunk_frames} frames: {t_chunked:8.2f} s   "
          f"{result['speedup_chunked']:6.1f}× faster")
    print(f"  max |Δ probability|: one pass {result['max_abs_diff_prob']:.2e}, chunked "
          f"{result['max_abs_diff_prob_chunked']:.2e} (target ≤ 1e-4; probabilities span "
          f"{result['prob_range'][0]:.3f}…{result['prob_range'][1]:.3f}); "
          f"max |Δ logit| {result['max_abs_diff_logit']:.2e}")
    verdict = "OK" if result["speedup"] >= 20 and result["max_abs_diff_prob"] <= 1e-4 else "MISS"
    print(f"  target ≥ 20× and ≤ 1e-4: {verdict}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--detector", help="a saved .keras detector (default: random init)")
    parser.add_argument("--batch", type=int, default=256, help="sliding-window batch size")
    parser.add_argument("--chunk-frames", type=int, default=8192)
    args = parser.parse_args()
    bench_dense(args.minutes, args.detector, args.batch, args.chunk_frames)


if __name__ == "__main__":
    main()
