"""Detector benchmarks (issue 4), each measured against its baseline in the same run.

Training: excerpts/s of the custom tf.function loop vs `model.fit` (same model, data, batch,
loss and optimiser), and of the augmented input pipeline vs what training consumes.

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


def bench_training(width: float = 1.0, steps: int = 15, batch: int = 32, seed: int = 0) -> dict:
    """Custom tf.function loop vs `model.fit` on the same model, data and batch, and the input
    pipeline's excerpts/s against what training consumes."""
    import tempfile
    import tensorflow as tf
    from tf_svdx import config as config_lib
    from tf_svdx.data.pipeline import Prepared, training_excerpts
    from tf_svdx.data.prepare import prepare
    from tf_svdx.train.detector import make_train_step

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_lib.load(None, [f"prepare.corpus={REPO / 'tests/data/tiny_corpus'}",
                                     f"prepare.out={tmp}", f"detector.width={width}",
                                     f"pipeline.batch_size={batch}", f"seed={seed}"])
        prepare(cfg, progress=False)
        prepared = Prepared(tmp)
        opts = cfg.train_detector

        def fresh():
            keras.utils.set_random_seed(seed)
            model = build_detector(cfg.detector)
            opt = keras.optimizers.SGD(opts.learning_rate, momentum=opts.momentum, nesterov=True)
            return model, opt

        # the input pipeline alone
        it = iter(training_excerpts(prepared, cfg))
        next(it)
        t_pipe, _ = _timed(lambda: [next(it) for _ in range(steps * 4)])
        pipe_rate = steps * 4 * batch / t_pipe

        # custom loop
        model, opt = fresh()
        step = make_train_step(model, opt, tf.distribute.get_strategy(), batch, opts.label_floor)
        it = iter(training_excerpts(prepared, cfg))
        step(it)  # trace
        t_custom, _ = _timed(lambda: [float(step(it)) for _ in range(steps)])

        # model.fit: same loss (label smoothing 0.04 ⇒ targets 0.02 + 0.96·y), optimiser, data
        model, opt = fresh()
        model.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=2 * opts.label_floor))
        ds = training_excerpts(prepared, cfg).map(lambda x, y: (x, y[:, None]))
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace
        t_fit, _ = _timed(lambda: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0))

    custom_rate, fit_rate = steps * batch / t_custom, steps * batch / t_fit
    result = {"width": width, "batch": batch, "steps": steps, "custom_excerpts_per_s": custom_rate,
              "fit_excerpts_per_s": fit_rate, "custom_over_fit": custom_rate / fit_rate,
              "pipeline_excerpts_per_s": pipe_rate, "pipeline_over_training": pipe_rate /
              custom_rate}
    print(f"training, width {width:g}, batch {batch}, {steps} steps each")
    print(f"  model.fit (baseline):   {fit_rate:8.1f} excerpts/s")
    print(f"  custom tf.function loop:{custom_rate:8.1f} excerpts/s   "
          f"{result['custom_over_fit']:.2f}× model.fit (target ≥ 1.0)")
    print(f"  input pipeline (augmented): {pipe_rate:8.0f} excerpts/s   "
          f"{result['pipeline_over_training']:.1f}× what training consumes (target ≥ 3)")
    print(f"  → {batch / custom_rate:.2f} s per update; the SPEC's 40,000 updates would take "
          f"{40000 * batch / custom_rate / 3600:.1f} h on this machine")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--detector", help="a saved .keras detector (default: random init)")
    parser.add_argument("--batch", type=int, default=256, help="sliding-window batch size")
    parser.add_argument("--chunk-frames", type=int, default=8192)
    parser.add_argument("--train-width", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--train-steps", type=int, default=15)
    parser.add_argument("--skip", choices=["dense", "training"], action="append", default=[])
    args = parser.parse_args()
    if "training" not in args.skip:
        for width in args.train_width:
            bench_training(width, args.train_steps)
    if "dense" not in args.skip:
        bench_dense(args.minutes, args.detector, args.batch, args.chunk_frames)


if __name__ == "__main__":
    main()
