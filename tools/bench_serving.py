"""Serving benchmarks: the exported svd_detector SavedModel against the live Keras model, every
baseline measured in the same run (no assertion on any time: this prints numbers).

On a full-size detector (random weights unless --detector=RUN_FOLDER names a `svdx
train-detector` run, loaded with tf_svdx.evaluation.TrainedDetector.load):

  export     DetectorModule + tf_svdx.export.save into a temporary folder (wall time);
  throughput batch-64 excerpts/s of the loaded SavedModel's serving_default signature (what
             TF-Serving calls) vs the live Keras model in a tf.function doing the same work
             (standardise, model, sigmoid), same inputs, calls interleaved; target ≥ 0.9×;
  latency    batch-1 p50 / p99 over --calls calls each after warm-up, interleaved;
  cold load  per model folder (--saved_models=DIR: the latest version of each export there;
             default saved_models/ when it holds exports, else the detector exported here):
             a fresh process (TensorFlow only, no Keras / tf_svdx) from launch to the first
             answer of serving_default, and separately the tf.saved_model.load call;
  waveform   predict_waveform on a 3-minute track (synthetic, or --audio=FILE): first call and
             warm wall time, real-time factor, vs the live path (tf_svdx.features.log_mel +
             standardise + predict_track on the dense twin, as `svdx` evaluates).

    .venv/bin/python tools/bench_serving.py [--quick] [--detector=work/demo/detector]
        [--saved_models=DIR] [--audio=FILE] [--minutes=3] [--calls=200] [--reps=20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import serving_client  # noqa: E402

# The fresh process of the cold-load measurement: TensorFlow and the stdlib/numpy client only.
_COLD = r"""
import time; t0 = time.time()
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
t_import = time.time()
sys.path.insert(0, sys.argv[3])
import serving_client as sc
model, path = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(path)
t_load = time.time()
fn = loaded.signatures["serving_default"]
specs = fn.structured_input_signature[1]
dims = sc.dims_from_shapes({k: v.shape.as_list() for k, v in specs.items()})
try:
    inputs = sc.example_inputs(model, "serving_default", 2, steps=2, **dims)
except sc.ServingError:  # a model the client has no table for: inputs from the specs
    inputs = {k: np.zeros([2 if d is None else d for d in v.shape.as_list()],
                          v.dtype.as_numpy_dtype) for k, v in specs.items()}
feed = {k: tf.constant(v) for k, v in inputs.items()}
t_in = time.time()
[v.numpy() for v in fn(**feed).values()]
t_first = time.time()
[v.numpy() for v in fn(**feed).values()]
t_second = time.time()
print(json.dumps({"t0": t0, "import": t_import - t0, "load": t_load - t_import,
                  "first_call": t_first - t_in, "second_call": t_second - t_first,
                  "t_first": t_first}))
"""


def detector(run: str | None, seed: int):
    """A TrainedDetector, or a random full-width one with the same attributes."""
    if run:
        from tf_svdx.evaluation import TrainedDetector
        return TrainedDetector.load(run)
    import keras
    from tf_svdx import features
    from tf_svdx.config import FrontEnd
    from tf_svdx.models import build_dense, build_detector
    keras.utils.set_random_seed(seed)
    model = build_detector()
    return types.SimpleNamespace(
        frontend=FrontEnd(), model=model, dense=build_dense(model),
        standardiser=features.Standardiser(np.full(80, -6.0), np.full(80, 2.0)))


def live_serving_fn(det):
    """The live Keras model doing what serving_default does, inside a tf.function."""
    mean = tf.constant(det.standardiser.mean[None, :, None, None])
    std = tf.constant(det.standardiser.std[None, :, None, None])
    model = det.model

    @tf.function(input_signature=[tf.TensorSpec([None, 80, 115, 1], tf.float32)])
    def fn(log_mel):
        out = model((log_mel - mean) / std, training=False)
        logit = out[:, 0] if out.shape[-1] == 1 else out[:, 1] - out[:, 0]
        return {"probability": tf.sigmoid(logit), "logit": logit}
    return fn


def _call(fn, x):
    out = fn(x)
    return {k: v.numpy() for k, v in out.items()}


def interleaved(fns: dict, x, calls: int, warmup: int) -> dict:
    """{name: per-call seconds}, the functions called in turn (so that background load hits
    both alike), results synchronised with .numpy()."""
    for _ in range(warmup):
        for fn in fns.values():
            _call(fn, x)
    times = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            start = time.perf_counter()
            _call(fn, x)
            times[name].append(time.perf_counter() - start)
    return {k: np.array(v) for k, v in times.items()}


def cold_load(model: str, path: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    launch = time.time()
    proc = subprocess.run([sys.executable, "-c", _COLD, model, str(path), str(TOOLS)],
                          capture_output=True, text=True, timeout=900, env=env, cwd="/")
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["startup"] = r["t0"] - launch
    r["to_first_answer"] = r["t_first"] - launch
    return r


def model_folders(saved_models: str | None, exported: Path) -> list[tuple[str, Path]]:
    from tf_svdx.serving import latest_versions
    root = Path(saved_models) if saved_models else REPO / "saved_models"
    found = latest_versions(root) if root.is_dir() else {}
    if saved_models and not found:
        print(f"note: {root} holds no exports; cold-loading the detector exported here")
    if not found:
        return [("svd_detector", exported)]
    return sorted(found.items()) + [("svd_detector*", exported)]


def track(audio: str | None, minutes: float) -> tuple[np.ndarray, str]:
    if audio:
        from tf_svdx.audio import load
        wave = load(audio)
        return wave, f"{audio} ({len(wave) / 22050:.0f} s)"
    wave = serving_client.tone(minutes * 60)
    return wave, f"synthetic {minutes * 60:.0f} s"


def live_track_fn(det):
    """The live whole-track path: features.log_mel, pad, standardise, predict_track (dense)."""
    from tf_svdx import features
    from tf_svdx.models import predict_track
    fe = det.frontend
    pad = np.full((fe.excerpt_pad, fe.n_mels), np.log(fe.log_floor), np.float32)

    def fn(wave):
        padded = det.standardiser(np.concatenate([pad, features.log_mel(wave, fe).numpy(),
                                                  pad])).numpy()
        return predict_track(det.dense, padded)
    return fn


def _best(fn, reps: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _ms(seconds) -> str:
    return f"{1e3 * seconds:.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", help="a `svdx train-detector` run folder (default: random "
                                      "full-width weights)")
    p.add_argument("--saved_models", help="a folder of exports to cold-load (default: "
                                          "saved_models/ if it holds exports)")
    p.add_argument("--audio", help="an audio file for predict_waveform (default: synthetic)")
    p.add_argument("--minutes", type=float, default=3.0, help="synthetic track length")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20, help="timed batches per side (throughput)")
    p.add_argument("--calls", type=int, default=200, help="timed batch-1 calls per side")
    p.add_argument("--cold-repeats", type=int, default=2, help="fresh processes per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run (< 1 min)")
    args = p.parse_args()
    if args.quick:
        args.reps, args.calls, args.cold_repeats = 5, 50, 1
        args.minutes = min(args.minutes, 0.25)
    from tf_svdx.export import DetectorModule, save

    t_all = time.perf_counter()
    det = detector(args.detector, args.seed)
    what = args.detector or "random init"
    params = det.model.count_params()
    rows = []  # (measure, SavedModel, live, ratio)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = save(DetectorModule(det), tmp, "svd_detector", {})
        t_export = time.perf_counter() - start
        start = time.perf_counter()
        loaded = tf.saved_model.load(str(path))
        t_load = time.perf_counter() - start
        saved_fn = loaded.signatures["serving_default"]
        live_fn = live_serving_fn(det)
        fns = {"saved": lambda v: saved_fn(log_mel=v), "live": live_fn}

        rng = np.random.default_rng(args.seed)
        x = tf.constant(rng.normal(-6, 2, (args.batch, 80, 115, 1)).astype(np.float32))
        a, b = _call(fns["saved"], x), _call(live_fn, x)
        diff = {k: float(np.abs(a[k] - b[k]).max()) for k in ("probability", "logit")}

        # batch-N throughput
        t = interleaved(fns, x, args.reps, warmup=2)
        rate = {k: args.batch / np.median(v) for k, v in t.items()}
        rows.append((f"batch-{args.batch} throughput, excerpts/s (median of {args.reps})",
                     f"{rate['saved']:.1f}", f"{rate['live']:.1f}",
                     f"{rate['saved'] / rate['live']:.2f}× (target ≥ 0.9×)"))
        mean_rate = {k: args.batch * len(v) / v.sum() for k, v in t.items()}
        rows.append(("  same, mean over all batches", f"{mean_rate['saved']:.1f}",
                     f"{mean_rate['live']:.1f}",
                     f"{mean_rate['saved'] / mean_rate['live']:.2f}×"))

        # batch-1 latency
        t = interleaved(fns, x[:1], args.calls, warmup=10)
        for q in (50, 99):
            s, li = (np.percentile(t[k], q) for k in ("saved", "live"))
            rows.append((f"batch-1 latency p{q}, ms ({args.calls} calls)", _ms(s), _ms(li),
                         f"{s / li:.2f}× the time"))

        # predict_waveform on a whole track
        wave, label = track(args.audio, args.minutes)
        seconds = len(wave) / det.frontend.sample_rate
        wave_fn = loaded.signatures["predict_waveform"]
        live_wave = live_track_fn(det)
        tw = tf.constant(wave)
        start = time.perf_counter()
        wave_fn(waveform=tw)["frame_probability"].numpy()
        t_first = time.perf_counter() - start
        live_wave(wave[:22050 * 5])  # trace the live tf.functions on a short clip
        reps = 1 if args.quick else 2
        t_saved, saved_prob = _best(lambda: wave_fn(waveform=tw)["frame_probability"].numpy(),
                                    reps)
        t_live, live_prob = _best(lambda: live_wave(wave), reps)
        wdiff = float(np.abs(saved_prob - live_prob).max())
        rows.append((f"predict_waveform, {label}: first call, s", f"{t_first:.2f}", "", ""))
        rows.append((f"predict_waveform warm wall time, s (best of {reps})", f"{t_saved:.2f}",
                     f"{t_live:.2f}", f"{t_live / t_saved:.2f}× live's speed"))
        rows.append(("  real-time factor (wall / audio), warm", f"{t_saved / seconds:.4f}",
                     f"{t_live / seconds:.4f}",
                     f"{seconds / t_saved:.0f}× real time (saved)"))
        rows.append(("  real-time factor, first call", f"{t_first / seconds:.4f}", "", ""))

        # cold load in fresh processes
        cold = []
        for name, folder in model_folders(args.saved_models, path):
            runs = [cold_load(name.rstrip("*"), folder) for _ in range(args.cold_repeats)]
            ok = [r for r in runs if "error" not in r]
            if not ok:
                cold.append((name, folder, runs[0]))
                continue
            cold.append((name, folder, min(ok, key=lambda r: r["to_first_answer"])))

    total = time.perf_counter() - t_all
    print(f"\nserving benchmark ({'quick' if args.quick else 'full'}): svd_detector, "
          f"{params:,} parameters, {what}; TensorFlow {tf.__version__}, "
          f"{os.cpu_count()} CPUs (shared with whatever else runs)")
    print(f"export (DetectorModule + save, 3 signatures): {t_export:.1f} s; in-process "
          f"tf.saved_model.load: {t_load:.1f} s")
    print(f"agreement, SavedModel vs live: batch {args.batch} max |Δ probability| "
          f"{diff['probability']:.1e}, |Δ logit| {diff['logit']:.1e}; predict_waveform vs "
          f"the live path, {len(saved_prob)} frames: max |Δ probability| {wdiff:.1e}")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'SavedModel':>11}  {'live Keras':>11}  ratio (saved/live)")
    for measure, s, li, ratio in rows:
        print(f"{measure:<{width}}  {s:>11}  {li:>11}  {ratio}")
    print(f"\ncold load, fresh process (TensorFlow only), best of {args.cold_repeats}; first "
          f"answer = serving_default on 2 rows")
    print(f"{'model':<14} {'version':>7}  {'launch→answer':>13}  {'python':>6}  "
          f"{'import tf':>9}  {'load':>6}  {'1st call':>8}  {'2nd call':>8}")
    for name, folder, r in cold:
        version = folder.name if folder.name.isdigit() else "-"
        if "error" in r:
            print(f"{name:<14} {version:>7}  failed: {r['error']}")
            continue
        print(f"{name:<14} {version:>7}  {r['to_first_answer']:>12.2f}s  {r['startup']:>5.2f}s"
              f"  {r['import']:>8.2f}s  {r['load']:>5.2f}s  {r['first_call']:>7.3f}s  "
              f"{r['second_call']:>7.3f}s")
    if any(name.endswith("*") for name, _, _ in cold):
        print("* the detector exported by this run (the others: the latest versions in "
              f"{args.saved_models or 'saved_models/'})")
    print(f"\n(total {total:.0f} s; timings on a shared machine: compare the ratios, "
          f"measured interleaved in this run)")


if __name__ == "__main__":
    main()
