"""Activation maximisation as one compiled graph over a batch of rows (SPEC §5, §8).

The paper ran every (setting, seed, direction) as its own batch-1 optimisation. Here every row of a
batch carries its own direction, learning rate and λ, and one `tf.while_loop` runs functional Adam
for all of them at once:

    J(p) = s · a(N(decode(p))) − λ‖p‖²,   ascended;  s = +1 maximises, s = −1 minimises

which is SPEC §5's a − λ‖z‖² for maximisation and the descent of a + λ‖z‖² for minimisation. In
the latent space p = z and decode = the generator (un-standardised log-mel, standardised by the
detector's N); for the input-space baseline (Montavon) p is the standardised excerpt itself.

Per row it keeps the spectrogram with the best activation seen, updating only when the signed
score improves by at least `improvement` (0.1). A run returns snapshots at requested iteration
counts (with a constant learning rate the first 100 steps of a 1000-step run ARE the 100-step
run), so one 1000-step run gives the 100-, 500- and 1000-iteration results.

Rows are independent: the detector runs in inference mode (no dropout, no batch statistics) and
Adam is element-wise, so each row's gradient and update involve only that row.

`precision="bfloat16"` runs the generator's and the detector's forward and backward passes in
bfloat16 (Keras' "mixed_bfloat16" policy on twins of both models that hold exact float32 copies of
their weights, cast per use). Everything else stays float32: p, Adam's m and v, λ‖p‖², the
activations (the bf16 unit value is cast), the best-tracking and the returned log-mel (the
generator's bf16 output is cast, and that float32 excerpt is what the detector is given). A
Dense target layer (the default fc9 logit) also computes in float32: it costs nothing and keeps
the activation from being rounded to bf16's 8-bit mantissa; a conv/pool target's bf16 map is cast
to float32 before the unit is read (and averaged). The twins' LeakyReLUs keep TF's forward op
but take their gradient from one XLA-compiled mask-multiply, with the same numbers: TF's bf16
LeakyReluGrad CPU kernel is unvectorised and alone took over half of a bf16 step.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tf_svdx.models.detector import feature_model

DIRECTIONS = {"maximise": 1.0, "minimise": -1.0}
PRECISIONS = ("float32", "bfloat16")
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8


def unit_activation(layer_output: tf.Tensor, unit) -> tf.Tensor:
    """One scalar per row from a layer's output: `unit` indexes the last axis of a dense layer;
    for a conv/pool map [B, H, W, C] an int `unit` is channel `unit` averaged over positions and a
    tuple (h, w, c) is one position."""
    if isinstance(unit, (tuple, list)):
        if len(unit) != layer_output.shape.rank - 1:
            raise ValueError(f"unit {tuple(unit)} does not index a layer output of shape "
                             f"{layer_output.shape}")
        return layer_output[(slice(None), *unit)]
    if layer_output.shape.rank == 2:
        return layer_output[:, unit]
    return tf.reduce_mean(layer_output[..., unit], axis=list(range(1, layer_output.shape.rank - 1)))


def _layer_or_none(model: keras.Model, name: str):
    return next((layer for layer in model.layers if layer.name == name), None)


@tf.function(jit_compile=True, autograph=False)
def _leaky_relu_grad(g, y, slope):
    """LeakyReluGrad from the output (y > 0 ⇔ x > 0 for a slope in [0, 1]) in one fused XLA
    pass. `slope` comes in already in g's dtype, as TF's kernel uses it (g · T(slope)): XLA
    computes with excess precision and would otherwise multiply by the unrounded float32 slope.
    max(mask, slope) is exact, so the numbers are TF's LeakyReluGrad's."""
    return g * tf.maximum(tf.cast(y > 0, g.dtype), slope)


class _MaskLeakyReLU(keras.layers.LeakyReLU):
    """LeakyReLU (same forward op) with the gradient `_leaky_relu_grad`. TF's bfloat16
    LeakyReluGrad CPU kernel is unvectorised: ~120 ms for one [32, 78, 113, 64] map (conv1's
    output for 32 rows) against ~25 ms in float32, and it took over half of a bf16 engine step;
    the XLA-compiled mask-multiply takes ~5 ms (forward and backward of the layer: 74 → 8 ms).
    The gradient reads the output, not the input, so nothing but the activation consumes the
    bias-add and oneDNN can fuse conv + bias + LeakyReLU."""

    def call(self, inputs):
        slope = self.negative_slope
        if not 0.0 <= slope <= 1.0:
            return super().call(inputs)

        @tf.custom_gradient
        def leaky(x):
            y = tf.nn.leaky_relu(x, slope)
            return y, lambda g: _leaky_relu_grad(g, y, tf.constant(slope, g.dtype))

        return leaky(inputs)


_FAST = {"LeakyReLU": "tf_svdx_engine>MaskLeakyReLU"}


def _bf16_config(config, policy: dict):
    """`config` with every dtype policy in it (a layer's, a nested activation layer's) replaced,
    and LeakyReLU activations swapped for `_MaskLeakyReLU`; an InputLayer's plain dtype string
    (the model's float32 input) is left alone."""
    if isinstance(config, dict):
        if config.get("module") == "keras" and config.get("class_name") == "DTypePolicy":
            return policy
        config = {k: _bf16_config(v, policy) for k, v in config.items()}
        if config.get("module") == "keras.layers" and config.get("class_name") in _FAST:
            config.update(module=None, class_name=_FAST[config["class_name"]],
                          registered_name=_FAST[config["class_name"]])
        return config
    if isinstance(config, list):
        return [_bf16_config(v, policy) for v in config]
    return config


def bfloat16_twin(model: keras.Model, keep_float32=()) -> keras.Model:
    """The same functional model with every layer (but those named in `keep_float32`) under the
    "mixed_bfloat16" policy: float32 variables holding exact copies of `model`'s weights (a
    snapshot: later changes to `model` are not seen), computation and outputs in bfloat16.
    Its LeakyReLUs are `_MaskLeakyReLU`: the same forward op and gradient numbers, XLA-fused.

    Keras 3 layer configs carry their own dtype policy, so a global policy would not reach a
    rebuilt model; the policies are rewritten in the config instead."""
    mixed = keras.dtype_policies.serialize(keras.dtype_policies.get("mixed_bfloat16"))
    config = model.get_config()
    config["layers"] = [layer if layer["name"] in keep_float32 else _bf16_config(layer, mixed)
                        for layer in config["layers"]]
    twin = model.__class__.from_config(
        config, custom_objects={name: _MaskLeakyReLU for name in _FAST.values()})
    if len(twin.weights) != len(model.weights):
        raise ValueError(f"cannot rebuild {model.name} under mixed_bfloat16")
    for mine, theirs in zip(twin.weights, model.weights):
        if (mine.path, tuple(mine.shape)) != (theirs.path, tuple(theirs.shape)):
            raise ValueError(f"cannot rebuild {model.name} under mixed_bfloat16: weight "
                             f"{theirs.path} {tuple(theirs.shape)} ≠ {mine.path}")
        mine.assign(theirs)
    return twin


@dataclasses.dataclass
class Explainer:
    """The compiled optimiser for one (detector, target, space).

    detector: the detector's keras.Model (standardised input [B, 80, 115, 1]); mean/std: its
    per-band standardisation ([80] each); generator: the latent-space prior, or None for the
    input-space baseline. `run(...)` is a `tf.function` with a fixed signature: it traces once and
    exports as a SavedModel signature unchanged. precision: "float32" or "bfloat16" (the models'
    passes in bf16, the optimiser and all outputs in float32; see the module docstring).
    """

    detector: keras.Model
    mean: np.ndarray
    std: np.ndarray
    generator: keras.Model | None = None
    layer: str = "fc9"
    unit: int | tuple = 0
    improvement: float = 0.1
    trajectories: bool = True
    precision: str = "float32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"Explainer precision {self.precision!r} is not one of "
                             f"{', '.join(PRECISIONS)}")
        low = self.precision == "bfloat16"
        # a Dense target (the fc9 logit) is cheap to keep in float32, and bf16's 8-bit mantissa
        # would round a logit of 16–32 to steps of 0.125, coarser than `improvement`
        dense = isinstance(_layer_or_none(self.detector, self.layer), keras.layers.Dense)
        detector = (bfloat16_twin(self.detector, keep_float32=[self.layer] if dense else [])
                    if low else self.detector)
        self._generator = (bfloat16_twin(self.generator) if low and self.generator is not None
                           else self.generator)
        self._detector = detector  # the model the passes run on (a bf16 twin or the detector)
        self._target = feature_model(detector, [self.layer])
        probe = self._target(tf.zeros([1, *self.detector.input_shape[1:]]), training=False)
        unit_activation(probe[self.layer], self.unit)  # fail now on a bad unit, not in the loop
        self._mean = tf.constant(np.asarray(self.mean, np.float32)[None, :, None, None])
        self._std = tf.constant(np.asarray(self.std, np.float32)[None, :, None, None])
        shape = self.param_shape
        self.run = tf.function(self._run, autograph=False, input_signature=[
            tf.TensorSpec([None, *shape], tf.float32, name="x0"),
            tf.TensorSpec([None], tf.float32, name="sign"),
            tf.TensorSpec([None], tf.float32, name="lr"),
            tf.TensorSpec([None], tf.float32, name="lam"),
            tf.TensorSpec([None], tf.int32, name="snapshots")])

    @property
    def space(self) -> str:
        return "input" if self.generator is None else "latent"

    @property
    def param_shape(self) -> tuple:
        model = self.detector if self.generator is None else self.generator
        return tuple(model.input_shape[1:])

    def initial(self, seeds, base_seed: int = 0, scale: float = 1.0) -> tf.Tensor:
        """Per-row starting points p0 ~ N(0, scale²): row i depends only on (base_seed, seeds[i]),
        so a seed gives the same start in every setting, direction and batch."""
        return tf.stack([scale * tf.random.stateless_normal(self.param_shape, [base_seed, int(s)])
                         for s in np.asarray(seeds).ravel()])

    def log_mel(self, p: tf.Tensor) -> tf.Tensor:
        """Parameters → un-standardised log-mel excerpts (N, 80, 115, 1)."""
        if self.generator is None:
            return p * self._std + self._mean
        return tf.cast(self._generator(p, training=False), tf.float32)

    def activation(self, p: tf.Tensor) -> tf.Tensor:
        return self._activation_of_log_mel(self.log_mel(p))

    def _activation_of_log_mel(self, x: tf.Tensor) -> tf.Tensor:
        out = self._target((x - self._mean) / self._std, training=False)
        return unit_activation(tf.cast(out[self.layer], tf.float32), self.unit)

    def _run(self, x0, sign, lr, lam, snapshots):
        """Adam ascent of sign·a − λ‖p‖² for max(snapshots) steps; see the module docstring.

        Returns, per snapshot k and row: `log_mel` (the best spectrogram among iterations 0..k),
        `activation` (its activation), `final_activation` (at iteration k), `z` (p after k
        updates); with `trajectories`, per iteration 0..max and row: activation, ‖p‖, ‖∇p J‖.
        """
        steps = tf.reduce_max(snapshots)
        rows = tf.shape(x0)[0]
        axes = list(range(1, len(self.param_shape) + 1))

        def expand(v):  # [B] → broadcastable against p
            return tf.reshape(v, [-1] + [1] * len(self.param_shape))

        rate = expand(lr)
        n_snap = tf.shape(snapshots)[0]
        example = self.log_mel(x0[:1])
        x_shape = tf.shape(example)[1:]
        zeros_x = tf.zeros(tf.concat([[n_snap, rows], x_shape], 0))

        def body(t, p, m, v, best_x, best_score, best_a, snap_x, snap_a, snap_fa, snap_p,
                 traj_a, traj_n, traj_g):
            with tf.GradientTape(watch_accessed_variables=False) as tape:  # ∇ to p only
                tape.watch(p)
                x = self.log_mel(p)
                a = self._activation_of_log_mel(x)
                total = tf.reduce_sum(sign * a - lam * tf.reduce_sum(tf.square(p), axis=axes))
            g = tape.gradient(total, p)  # rows are independent: row i's gradient is ∇J_i
            score = sign * a
            better = score >= best_score + self.improvement
            best_score = tf.where(better, score, best_score)
            best_a = tf.where(better, a, best_a)
            best_x = tf.where(tf.reshape(better, [-1, 1, 1, 1]), x, best_x)
            hit = tf.reshape(tf.equal(snapshots, t), [-1, 1])  # [S, 1]
            snap_x = tf.where(tf.reshape(hit, [-1, 1, 1, 1, 1]), best_x[None], snap_x)
            snap_a = tf.where(hit, best_a[None], snap_a)
            snap_fa = tf.where(hit, a[None], snap_fa)
            snap_p = tf.where(tf.reshape(hit, [-1, 1] + [1] * len(self.param_shape)), p[None],
                              snap_p)
            if self.trajectories:
                traj_a = traj_a.write(t, a)
                traj_n = traj_n.write(t, tf.sqrt(tf.reduce_sum(tf.square(p), axis=axes)))
                traj_g = traj_g.write(t, tf.sqrt(tf.reduce_sum(tf.square(g), axis=axes)))
            # functional Adam, ascending J, bias-corrected (step t + 1)
            k = tf.cast(t + 1, tf.float32)
            m = BETA1 * m + (1 - BETA1) * g
            v = BETA2 * v + (1 - BETA2) * tf.square(g)
            m_hat = m / (1 - BETA1 ** k)
            v_hat = v / (1 - BETA2 ** k)
            p = p + rate * m_hat / (tf.sqrt(v_hat) + EPSILON)
            return (t + 1, p, m, v, best_x, best_score, best_a, snap_x, snap_a, snap_fa, snap_p,
                    traj_a, traj_n, traj_g)

        n_traj = steps + 1 if self.trajectories else 0
        arrays = [tf.TensorArray(tf.float32, size=n_traj, element_shape=[None])
                  for _ in range(3)]
        state = (tf.constant(0), x0, tf.zeros_like(x0), tf.zeros_like(x0),
                 tf.zeros(tf.concat([[rows], x_shape], 0)),
                 tf.fill([rows], -np.inf), tf.zeros([rows]),
                 zeros_x, tf.zeros([n_snap, rows]), tf.zeros([n_snap, rows]),
                 tf.zeros(tf.concat([[n_snap], tf.shape(x0)], 0)), *arrays)
        out = tf.while_loop(lambda t, *_: t <= steps, body, state, parallel_iterations=1)
        result = {"log_mel": out[7], "activation": out[8], "final_activation": out[9],
                  "z": out[10]}
        if self.trajectories:
            result.update(trajectory_activation=out[11].stack(), trajectory_norm=out[12].stack(),
                          trajectory_grad_norm=out[13].stack())
        return result
