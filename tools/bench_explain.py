"""Activation-maximisation speed: the batched engine (tf_svdx.explain.engine) against the
paper's way of running the grid and an eager loop, on the FULL-size generator and detector,
every baseline measured in the same run and at the same precision.

For a sub-grid (2 directions × 2 lr × 2 λ × S seeds = 8·S rows, snapshots at the iteration
counts I1 < I2 < I3):

  (a) batched: the engine, all rows in chunks of --chunk, one run of max(I) steps per chunk;
      rate = code-steps/s with code-steps = rows × (max(I) + 1) (a k-step run evaluates k + 1
      codes: iterations 0..k);
  (b) paper-style: one batch-1 optimisation per (direction, lr, λ, seed) and per iteration
      count, each its own run from z0 (so I1 + I2 + I3 steps per row, as the paper ran it), with
      the same compiled batch-1 while-loop (traced once, not timed); only --paper-rows rows are
      timed and the total is extrapolated (printed as such);
  (c) eager: a Python loop over steps with a GradientTape on all rows at once, same Adam; a few
      steps timed and extrapolated to max(I) + 1 (printed as such);
  (d) FLOP/s: analytic FLOPs per code-step (forward of G and D + the backward to the input only,
      ≈ the forward again: no weight gradients) × rate, against a large matmul measured here in
      the same dtype; and, because the VM's speed drifts within minutes, the median over
      --pairs of (a 10-step engine run / a matmul measured just before it);
  (e) the paper grid (900 rows × 1001 code-steps) projected from the engine's rate.

No assertion on any time: this prints numbers. The models are randomly initialised (timing does
not depend on the weights); the detector's standardisation is mean 0 / std 1.

    .venv/bin/python tools/bench_explain.py [--precision both] [--seeds 8]
        [--iterations 10,25,50] [--chunk 64] [--paper-rows 4] [--quick] [--sweep] [--layers]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_svdx.config import Detector, Gan  # noqa: E402
from tf_svdx.explain.engine import (BETA1, BETA2, EPSILON, PRECISIONS,  # noqa: E402
                                    Explainer)
from tf_svdx.models import build_detector, build_generator  # noqa: E402

DIRECTIONS = (1.0, -1.0)
LEARNING_RATES = (0.1, 0.01)
LAMBDAS = (0.1, 0.001)
PAPER_ROWS, PAPER_STEPS = 900, 1001  # 2 dir × 9 (lr, λ) × 50 seeds; 1000 iterations + z0


def layer_flops(layer) -> int:
    """Multiply-adds × 2 of one row's forward pass through `layer` (0 for a layer without
    weights-times-inputs: activations, pooling, crops, reshapes)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):  # kernel (kh, kw, Cout, Cin)
        return 2 * math.prod(layer.input.shape[1:3]) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Conv2D):  # kernel (kh, kw, Cin / groups, Cout)
        return 2 * math.prod(layer.output.shape[1:3]) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):  # kernel (in, out), per leading position
        return 2 * math.prod(layer.input.shape[1:-1]) * math.prod(layer.kernel.shape)
    return 0


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds × 2 of one row's forward pass: Conv2D 2·Hout·Wout·kh·kw·Cin·Cout,
    Conv2DTranspose 2·Hin·Win·kh·kw·Cin·Cout, Dense 2·in·out (biases, activations, pooling and
    crops are not counted). Hand count at width 1 (SPEC §3, §4), which this reproduces:
      generator  70,942,720 = dense 2·128·5120 (1,310,720)
                              + deconv1..4 2·(5·8, 10·16, 20·32, 40·64)·25·(128·64, 64·32,
                                32·16, 16·8) = 4 × 16,384,000
                              + conv_out 2·80·128·25·8·1 (4,096,000)
      detector  485,232,512 = conv1 2·78·113·9·1·64 (10,153,728)
                              + conv2 2·76·111·9·64·32 (310,984,704)
                              + conv3 2·23·35·9·32·128 (59,351,040)
                              + conv4 2·21·33·9·128·64 (102,187,008)
                              + fc7 2·4928·256 (2,523,136) + fc8 2·256·64 + fc9 2·64·1
    """
    return sum(layer_flops(layer) for layer in leaf_layers(model))


def leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def layer_profile(ex: Explainer, rows: int, repeats: int = 5):
    """(name, seconds, forward FLOPs per row) per layer of the models the engine runs (the bf16
    twins under bfloat16): each layer's forward and gradient to its input for `rows` rows, at
    the layer's own compute dtype, in its own tf.function, best of `repeats`. Alone, a layer pays
    for its own layout conversions and unfused bias/activation, so under bfloat16 the sum can
    exceed the engine's step (measured: 244 vs 171 ms): a profile, not a bound."""
    out = []
    for layer in [*leaf_layers(ex._generator), *leaf_layers(ex._detector)]:
        dtype = layer.compute_dtype
        x = tf.cast(tf.random.normal([rows, *layer.input.shape[1:]]), dtype)
        g = tf.cast(tf.random.normal([rows, *layer.output.shape[1:]]), dtype)

        @tf.function(autograph=False)
        def step(x, g, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=False)
            return tape.gradient(y, x, output_gradients=tf.cast(g, y.dtype))

        out.append((layer.name, best_time(lambda: step(x, g).numpy(), repeats),
                    layer_flops(layer)))
    return out


def best_time(call, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, after one untimed call (tracing, primitives)."""
    call()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def print_profile(profile, rows: int, step_s: float, peak: float, precision: str) -> None:
    """The per-layer table and two bounds on the engine's fraction of the matmul."""
    total = sum(s for _, s, _ in profile)
    flops = sum(2 * f * rows for _, _, f in profile)  # forward + backward to the input
    print(f"  per layer ({precision}, {rows} rows, forward + gradient to the input, each alone, "
          f"best of 5); matmul {peak / 1e9:.0f} GFLOP/s:")
    print(f"    {'layer':<11}{'ms':>7}{'% time':>8}{'% FLOP':>8}{'GFLOP/s':>9}{'% mm':>6}")
    for name, s, f in profile:
        rate = 2 * f * rows / s
        print(f"    {name:<11}{1e3 * s:7.1f}{100 * s / total:7.1f}%{100 * 2 * f * rows / flops:7.1f}%"
              + (f"{rate / 1e9:9.0f}{100 * rate / peak:5.0f}%" if f else ""))
    heavy = sum(s for _, s, f in profile if 2 * f * rows >= 0.05 * flops)
    print(f"    sum {1e3 * total:.0f} ms against the engine's {1e3 * step_s:.0f} ms per step "
          f"(the engine also runs the optimiser and the loop, but fuses and keeps layouts "
          f"across layers); at the layers' own "
          f"speeds, with nothing else costing time: {100 * flops / total / peak:.0f} % of the "
          f"matmul; if only the layers holding ≥ 5 % of the FLOPs took time (at their measured "
          f"speed): {100 * flops / heavy / peak:.0f} %")


def matmul_flops_per_s(n: int, dtype, repeats: int) -> float:
    """FLOP/s of an n×n by n×n matmul (2n³ FLOPs), the best of `repeats`."""
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    f = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b)[:1, :1],
                                                       tf.float32)), autograph=False)
    return 2 * n ** 3 / best_time(lambda: f(a, b).numpy(), repeats)


def grid_rows(seeds: int):
    """(sign, lr, λ, seed) per row, ordered direction → lr → λ → seed as the real grid."""
    return [(s, lr, lam, seed) for s in DIRECTIONS for lr in LEARNING_RATES for lam in LAMBDAS
            for seed in range(seeds)]


def run_rows(ex: Explainer, rows, snapshots) -> None:
    x0 = ex.initial([r[3] for r in rows], base_seed=0)
    out = ex.run(x0, tf.constant([r[0] for r in rows], tf.float32),
                 tf.constant([r[1] for r in rows], tf.float32),
                 tf.constant([r[2] for r in rows], tf.float32),
                 tf.constant(snapshots, tf.int32))
    for v in out.values():  # what the grid writes out: forces the whole run
        v.numpy()


def batched(ex: Explainer, rows, snapshots, chunk: int) -> float:
    """Seconds for every row, `chunk` rows per engine call (one call already made per shape)."""
    t = time.perf_counter()
    for start in range(0, len(rows), chunk):
        run_rows(ex, rows[start:start + chunk], snapshots)
    return time.perf_counter() - t


def paper_style(ex: Explainer, rows, iterations) -> float:
    """Seconds for `rows`, each run alone (batch 1) once per iteration count, from its z0."""
    t = time.perf_counter()
    for row in rows:
        for k in iterations:
            run_rows(ex, [row], [k])
    return time.perf_counter() - t


def eager_steps(ex: Explainer, rows, steps: int) -> float:
    """Seconds for `steps` eager Adam steps (GradientTape, Python loop) on all rows at once: the
    engine's body without tf.function (same models, precision, best-tracking and logging)."""
    p = ex.initial([r[3] for r in rows], base_seed=0)
    sign = tf.constant([r[0] for r in rows], tf.float32)
    rate = tf.reshape(tf.constant([r[1] for r in rows], tf.float32), [-1, 1])
    lam = tf.constant([r[2] for r in rows], tf.float32)
    m, v = tf.zeros_like(p), tf.zeros_like(p)
    best, best_x = tf.fill([len(rows)], -np.inf), None
    log = []
    t = time.perf_counter()
    for step in range(steps):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(p)
            x = ex.log_mel(p)
            a = ex._activation_of_log_mel(x)
            total = tf.reduce_sum(sign * a - lam * tf.reduce_sum(tf.square(p), axis=1))
        g = tape.gradient(total, p)
        better = sign * a >= best + ex.improvement
        best = tf.where(better, sign * a, best)
        best_x = x if best_x is None else tf.where(tf.reshape(better, [-1, 1, 1, 1]), x, best_x)
        log.append((a, tf.norm(p, axis=1), tf.norm(g, axis=1)))
        k = float(step + 1)
        m = BETA1 * m + (1 - BETA1) * g
        v = BETA2 * v + (1 - BETA2) * tf.square(g)
        p = p + rate * (m / (1 - BETA1 ** k)) / (tf.sqrt(v / (1 - BETA2 ** k)) + EPSILON)
    p.numpy()
    best_x.numpy()
    return time.perf_counter() - t


def sweep(ex: Explainer, sizes, steps: int, repeats: int = 2) -> None:
    print(f"  chunk sweep ({ex.precision}, {steps} code-steps per call, best of {repeats}):")
    for size in sizes:
        rows = grid_rows(math.ceil(size / 8))[:size]
        run_rows(ex, rows, [1])  # oneDNN primitives for this batch size
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            run_rows(ex, rows, [steps - 1])
            best = min(best, time.perf_counter() - t)
        print(f"    chunk {size:4d}: {size * steps / best:7.1f} code-steps/s "
              f"({best / steps * 1e3:.0f} ms/step)", flush=True)


def bench(precision: str, det, gen, args, flops_row_step: int) -> dict:
    ex = Explainer(det, np.zeros(80), np.ones(80), gen, precision=precision)
    iterations = sorted(args.iterations)
    rows = grid_rows(args.seeds)
    steps = max(iterations) + 1
    t = time.perf_counter()
    for size in sorted({min(args.chunk, len(rows)), len(rows) % args.chunk or args.chunk, 1}):
        run_rows(ex, rows[:size], [1])  # trace once + oneDNN primitives per batch size: untimed
    warm = time.perf_counter() - t
    if args.layers:
        size = min(args.chunk, len(rows))
        t = time.perf_counter()
        run_rows(ex, rows[:size], [9])
        step_s = (time.perf_counter() - t) / 10
        print_profile(layer_profile(ex, size), size, step_s,
                      matmul_flops_per_s(args.matmul[0], tf.bfloat16 if precision == "bfloat16"
                                         else tf.float32, args.matmul_repeats), precision)
    if args.sweep:
        sweep(ex, (4, 8) if args.quick else (16, 32, 64, 128, 256), 2 if args.quick else 16)
    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    peak = max(matmul_flops_per_s(n, dtype, args.matmul_repeats) for n in args.matmul)

    cpu = time.process_time()
    t_batched = batched(ex, rows, iterations, args.chunk)
    cores = (time.process_time() - cpu) / t_batched  # CPU seconds per second: cores kept busy
    rate = len(rows) * steps / t_batched

    timed = rows[::max(1, len(rows) // args.paper_rows)][:args.paper_rows]
    t_paper_part = paper_style(ex, timed, iterations)
    t_paper = t_paper_part * len(rows) / len(timed)

    t_eager_part = eager_steps(ex, rows, 1)  # first eager step (kernel setup): untimed
    t_eager_part = eager_steps(ex, rows, args.eager_steps)
    t_eager = t_eager_part * steps / args.eager_steps

    # the VM's speed drifts by tens of % within minutes: pair each short engine run with a
    # matmul measured just before it, and take the median of the pairs' ratios as well
    size = min(args.chunk, len(rows))
    pairs = []
    for _ in range(args.pairs):
        mm = matmul_flops_per_s(args.matmul[0], dtype, 2)
        t = time.perf_counter()
        run_rows(ex, rows[:size], [9])
        pairs.append(size * 10 * flops_row_step / (time.perf_counter() - t) / mm)
    return dict(precision=precision, warm=warm, cores=cores, rows=len(rows), steps=steps,
                pairs=pairs,
                iterations=iterations, t_batched=t_batched, rate=rate,
                paper_timed=len(timed), t_paper_part=t_paper_part, t_paper=t_paper,
                paper_code_steps=len(rows) * sum(k + 1 for k in iterations),
                t_eager_part=t_eager_part, t_eager=t_eager,
                flops=rate * flops_row_step, peak=peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=(*PRECISIONS, "both"), default="both")
    parser.add_argument("--seeds", type=int, default=8, help="rows = 8 × seeds")
    parser.add_argument("--rows", type=int, help="rows (rounded up to 8 × seeds); over --seeds")
    parser.add_argument("--iterations", default="10,25,50", help="snapshot iteration counts")
    parser.add_argument("--chunk", type=int, default=64, help="rows per engine call")
    parser.add_argument("--paper-rows", type=int, default=4,
                        help="rows timed paper-style (the rest extrapolated)")
    parser.add_argument("--eager-steps", type=int, default=3)
    parser.add_argument("--matmul", default="2048,4096",
                        help="n of the n×n matmuls; the fastest is the reference")
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=7,
                        help="(matmul, 10-step engine run) pairs for the paired fraction")
    parser.add_argument("--width", type=float, default=1.0, help="model width (1 = full size)")
    parser.add_argument("--sweep", action="store_true", help="also time chunk 16..256")
    parser.add_argument("--layers", action="store_true",
                        help="also time every layer alone (forward + gradient to the input)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: width 0.125, 8 rows, iterations 2,3,5, 1024 matmul")
    args = parser.parse_args()
    args.iterations = [int(i) for i in args.iterations.split(",")]
    args.matmul = [int(n) for n in args.matmul.split(",")]
    if args.rows:
        args.seeds = math.ceil(args.rows / 8)
    if args.quick:
        args.width, args.seeds, args.iterations = 0.125, 1, [2, 3, 5]
        args.chunk, args.paper_rows, args.eager_steps = 8, 2, 1
        args.matmul, args.matmul_repeats, args.pairs = [1024], 2, 2
    precisions = PRECISIONS if args.precision == "both" else (args.precision,)

    keras.utils.set_random_seed(0)
    det = build_detector(Detector(width=args.width))
    gen = build_generator(Gan(width=args.width))
    f_g, f_d = forward_flops(gen), forward_flops(det)
    flops_row_step = 2 * (f_g + f_d)  # forward + backward to the input (≈ forward again)
    print(f"tf {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPU cores; "
          f"models at width {args.width:g}, random weights (timing does not depend on them), "
          f"standardisation mean 0 / std 1, target fc9")
    print(f"FLOPs per code-step: 2 × (G {f_g / 1e6:.1f} M + D {f_d / 1e6:.1f} M forward) = "
          f"{flops_row_step / 1e9:.3f} GFLOP (forward + backward to the input)")
    results = [bench(p, det, gen, args, flops_row_step) for p in precisions]

    r0 = results[0]
    print(f"sub-grid: 2 directions × {len(LEARNING_RATES)} lr × {len(LAMBDAS)} λ × {args.seeds} "
          f"seeds = {r0['rows']} rows, snapshots at {r0['iterations']}, chunk {args.chunk}")
    print(f"  batched: {r0['rows']} rows × {r0['steps']} code-steps; paper-style: each row once "
          f"per iteration count = {r0['paper_code_steps']} batch-1 code-steps "
          f"({r0['paper_timed']} rows timed, ×{r0['rows'] / r0['paper_timed']:g} extrapolated); "
          f"eager: {args.eager_steps} steps on all rows timed, ×{r0['steps'] / args.eager_steps:g} "
          f"extrapolated")
    print(f"{'precision':<10}{'batched s':>10}{'code-st/s':>10}{'paper s*':>10}{'paper/bat':>10}"
          f"{'eager s*':>10}{'eager/bat':>10}{'GFLOP/s':>9}{'matmul':>8}{'% mm':>6}"
          f"{'grid min':>9}")
    for r in results:
        print(f"{r['precision']:<10}{r['t_batched']:10.1f}{r['rate']:10.1f}{r['t_paper']:10.1f}"
              f"{r['t_paper'] / r['t_batched']:9.1f}×{r['t_eager']:10.1f}"
              f"{r['t_eager'] / r['t_batched']:9.1f}×{r['flops'] / 1e9:9.0f}"
              f"{r['peak'] / 1e9:8.0f}{100 * r['flops'] / r['peak']:5.0f}%"
              f"{PAPER_ROWS * PAPER_STEPS / r['rate'] / 60:9.1f}")
    print("  * extrapolated from the timed part: "
          + "; ".join(f"{r['precision']} paper {r['t_paper_part']:.1f} s for {r['paper_timed']} "
                      f"rows, eager {r['t_eager_part']:.1f} s for {args.eager_steps} steps"
                      for r in results))
    print("  untimed warm-up (trace + oneDNN primitives per batch size): "
          + ", ".join(f"{r['precision']} {r['warm']:.1f} s" for r in results))
    saved = r0["paper_code_steps"] / (r0["rows"] * r0["steps"])
    per_row = sum(k + 1 for k in r0["iterations"])
    print(f"  where paper/bat comes from: snapshots save {saved:.2f}× of the code-steps; "
          + ", ".join(f"{r['precision']} batch-1 "
                      f"{1e3 * r['t_paper_part'] / (r['paper_timed'] * per_row):.1f} ms/code-step"
                      f" vs batched {1e3 / r['rate']:.1f}" for r in results))
    print("  cores kept busy by the batched engine (process CPU s / wall s): "
          + ", ".join(f"{r['precision']} {r['cores']:.2f} of {os.cpu_count()}" for r in results))
    print("  paired fraction of the matmul (each 10-step engine run over a matmul measured just "
          "before it; median [min–max] of the pairs): "
          + ", ".join(f"{r['precision']} {100 * np.median(r['pairs']):.0f} % "
                      f"[{100 * min(r['pairs']):.0f}–{100 * max(r['pairs']):.0f}]"
                      for r in results))
    print(f"  matmul reference: the fastest n×n of n in {args.matmul}, best of "
          f"{args.matmul_repeats}, same dtype as the engine")
    if len(results) == 2:
        a, b = results
        print(f"bfloat16 / float32 engine rate: {b['rate'] / a['rate']:.2f}×; paper-style float32 "
              f"(the paper's precision) / batched bfloat16: {a['t_paper'] / b['t_batched']:.1f}×")
    total = PAPER_ROWS * PAPER_STEPS * flops_row_step
    print(f"paper grid: {PAPER_ROWS} rows × {PAPER_STEPS} code-steps = {total / 1e15:.2f} PFLOP; "
          + ", ".join(f"{r['precision']} {PAPER_ROWS * PAPER_STEPS / r['rate'] / 60:.1f} min"
                      for r in results) + " on this machine (projected from the engine rate)")
    h100 = 989e12  # H100 SXM dense bf16 tensor-core peak (spec sheet), FLOP/s
    print(f"a GPU (estimate from FLOPs, not measured): {total / 1e15:.2f} PFLOP is "
          f"{total / h100:.2g} s at an H100's dense bf16 peak, {total / (0.1 * h100):.2g} s at "
          f"10% of it; small convs on 150-row chunks and 1001 sequential steps of ~100 kernels "
          f"make a GPU latency-bound rather than FLOP-bound, so expect seconds to minutes for "
          f"the whole grid instead of the CPU's tens of minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
