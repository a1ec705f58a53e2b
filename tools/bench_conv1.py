"""Why the explanation engine stays under 70 % of a matmul on this CPU: the detector's conv1.

conv1 has one input channel: its forward pass and its backward pass to the input (what every
explanation step needs) do 9 multiply-adds per output value, so they are bound by memory traffic
over the [rows, 78, 113, 64] output, not by arithmetic. This measures, for one 32-row batch at
full width, conv1 + bias + LeakyReLU forward and the gradient to the input:

- baseline: tf.nn.conv2d (oneDNN), as the engine runs it;
- im2col: the nine shifted input planes stacked and multiplied by the [9, 64] kernel (a matmul
  formulation of the same layer);
- xla: the baseline under `jit_compile=True`;

each as achieved GFLOP/s and as a ratio of the baseline's time, and a large matmul's GFLOP/s in
the same run for scale.

    .venv/bin/python tools/bench_conv1.py [--rows=32] [--repeats=10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

H, W, C = 80, 115, 64


def _layer(formulation: str, dtype):
    def conv(x, k, b):
        if formulation == "im2col":
            planes = tf.concat([x[:, i:i + H - 2, j:j + W - 2, :] for i in range(3)
                                for j in range(3)], -1)
            return tf.einsum("bhwk,kc->bhwc", planes, tf.reshape(k, [9, C])) + b
        return tf.nn.conv2d(x, k, 1, "VALID") + b

    def step(x, k, b, g_out):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.leaky_relu(conv(x, k, b), 0.01)
            total = tf.reduce_sum(y * g_out)
        return tape.gradient(total, x)

    return tf.function(step, jit_compile=formulation == "xla", autograph=False)


def _time(fn, args, repeats):
    fn(*args).numpy()  # trace / compile
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(*args).numpy()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    flop = 2 * 2 * args.rows * (H - 2) * (W - 2) * C * 9  # forward + backward to the input
    a = tf.constant(rng.standard_normal((2048, 2048)), tf.float32)
    mm = tf.function(lambda u: tf.matmul(u, u))
    matmul = 2 * 2048 ** 3 / _time(mm, (a,), args.repeats) / 1e9
    print(f"matmul 2048³ float32: {matmul:.0f} GFLOP/s")
    for dtype in (tf.float32, tf.bfloat16):
        inputs = [tf.constant(rng.standard_normal(s), dtype) for s in
                  ((args.rows, H, W, 1), (3, 3, 1, C), (C,), (args.rows, H - 2, W - 2, C))]
        results, base = {}, None
        for name in ("baseline", "im2col", "xla"):
            fn = _layer(name, dtype)
            seconds = _time(fn, inputs, args.repeats)
            results[name] = tf.cast(fn(*inputs), tf.float32).numpy()
            base = base or seconds
            print(f"{dtype.name:8s} {name:8s} {seconds * 1e3:7.1f} ms  {flop / seconds / 1e9:6.1f} "
                  f"GFLOP/s ({flop / seconds / 1e9 / matmul:.1%} of the matmul)  "
                  f"{seconds / base:.2f}× the baseline's time  max |Δ| "
                  f"{np.abs(results[name] - results['baseline']).max():.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
