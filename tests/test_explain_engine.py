"""The compiled activation-maximisation engine: Adam and sign by hand, snapshots, row
independence, determinism, one trace, targets, and the input-space baseline."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx.config import Detector, Gan
from tf_svdx.evaluation import TrainedDetector
from tf_svdx.explain.engine import Explainer, unit_activation
from tf_svdx.models import build_detector, build_generator


def amplified_generator(seed: int = 3):
    """A tiny random generator whose kernels are doubled: Glorot init shrinks the signal through
    six layers to almost constant output, which no detector can respond to; ×2 per layer gives
    excerpts of realistic spread (std ≈ 0.4)."""
    keras.utils.set_random_seed(seed)
    gen = build_generator(Gan(width=0.125))
    for v in gen.trainable_variables:
        if "kernel" in v.path:
            v.assign(v * 2.0)
    return gen


@pytest.fixture(scope="module")
def models(tiny_detector_run):
    return TrainedDetector.load(tiny_detector_run), amplified_generator()


@pytest.fixture(scope="module")
def explainer(models):
    det, gen = models
    return Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen,
                     improvement=0.01)


def _run(ex, x0, signs, lrs, lams, snapshots):
    return {k: v.numpy() for k, v in ex.run(tf.constant(x0), tf.constant(signs, tf.float32),
                                            tf.constant(lrs, tf.float32),
                                            tf.constant(lams, tf.float32),
                                            tf.constant(snapshots, tf.int32)).items()}


def test_first_step_is_adam_on_the_signed_objective(explainer):
    """Adam's first bias-corrected step is lr·g/(|g| + ε) = ±lr per coordinate, along
    ∇(s·a − λ‖z‖²): for minimisation that is −∇a − 2λz, the corrected sign."""
    z0 = explainer.initial([0, 0], base_seed=1)
    lam = [0.3, 0.3]
    out = _run(explainer, z0, [1.0, -1.0], [0.01, 0.01], lam, [1])
    for row, sign in enumerate((1.0, -1.0)):
        z = tf.constant(z0[row:row + 1])
        with tf.GradientTape() as tape:
            tape.watch(z)
            j = sign * explainer.activation(z) - lam[row] * tf.reduce_sum(tf.square(z))
        g = tape.gradient(j, z).numpy()[0]
        expected = z0[row].numpy() + 0.01 * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(out["z"][0, row], expected, atol=2e-6)


def test_snapshots_are_the_shorter_runs(explainer):
    """One 12-step run's snapshot at 4 IS the 4-step run (same seed, lr, λ)."""
    z0 = explainer.initial([0, 1, 2], base_seed=5)
    args = ([1.0, -1.0, 1.0], [0.05, 0.05, 0.2], [0.01, 0.1, 0.001])
    long = _run(explainer, z0, *args, [4, 12])
    short = _run(explainer, z0, *args, [4])
    for key in ("log_mel", "activation", "final_activation", "z"):
        np.testing.assert_allclose(long[key][0], short[key][0], atol=1e-6, err_msg=key)
    assert long["trajectory_activation"].shape == (13, 3)
    np.testing.assert_allclose(long["trajectory_activation"][:5], short["trajectory_activation"],
                               atol=1e-6)
    # iteration k's final activation is the trajectory's value at k
    np.testing.assert_allclose(long["final_activation"][1], long["trajectory_activation"][12],
                               atol=1e-6)


def test_rows_do_not_depend_on_their_batch(explainer):
    seeds = [0, 1, 2, 3]
    signs, lrs, lams = [1.0, -1.0, 1.0, -1.0], [0.1, 0.01, 0.05, 0.1], [0.01, 0.1, 0.0, 0.001]
    together = _run(explainer, explainer.initial(seeds, 9), signs, lrs, lams, [3, 8])
    for order in ([2], [3, 0], [1, 3, 2, 0]):
        apart = _run(explainer, explainer.initial([seeds[i] for i in order], 9),
                     [signs[i] for i in order], [lrs[i] for i in order],
                     [lams[i] for i in order], [3, 8])
        for key in ("log_mel", "activation", "z", "trajectory_grad_norm"):
            np.testing.assert_allclose(apart[key][:, :] if key.startswith("traj") else apart[key],
                                       together[key][:, order], atol=2e-5, err_msg=key)


def test_directions_move_the_target_and_the_best_rule_holds(explainer):
    z0 = explainer.initial([0, 1, 0, 1], base_seed=2)
    out = _run(explainer, z0, [1.0, 1.0, -1.0, -1.0], [0.1] * 4, [0.001] * 4, [30])
    traj = out["trajectory_activation"]
    assert np.all(out["activation"][0, :2] > traj[0, :2])  # maximisation raised it
    assert np.all(out["activation"][0, 2:] < traj[0, 2:])  # minimisation lowered it
    assert np.all(traj[-1, :2] > traj[0, :2]) and np.all(traj[-1, 2:] < traj[0, 2:])
    margin = explainer.improvement
    for row, sign in enumerate((1, 1, -1, -1)):
        score = sign * traj[:, row]
        best = sign * out["activation"][0, row]
        seen = np.flatnonzero(np.isclose(score, best, atol=1e-6))
        assert len(seen)  # the kept activation is one that was seen
        assert score.max() < best + margin + 1e-6  # nothing seen beat it by the margin
        # and the kept spectrogram is the one of that iteration: rerun up to it alone
        z_t = _run(explainer, z0[row][None], [float(sign)], [0.1], [0.001], [int(seen[0])])["z"]
        np.testing.assert_allclose(explainer.log_mel(tf.constant(z_t[0])).numpy()[0],
                                   out["log_mel"][0, row], atol=1e-4)


def test_seeds_are_deterministic_and_per_row(explainer):
    a = explainer.initial([3, 7], base_seed=4).numpy()
    b = explainer.initial([7], base_seed=4).numpy()
    np.testing.assert_array_equal(a[1], b[0])
    np.testing.assert_array_equal(a, explainer.initial([3, 7], base_seed=4).numpy())
    assert not np.allclose(a, explainer.initial([3, 7], base_seed=5).numpy())
    first = _run(explainer, a, [1.0, -1.0], [0.05, 0.05], [0.01, 0.01], [5])
    again = _run(explainer, a, [1.0, -1.0], [0.05, 0.05], [0.01, 0.01], [5])
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])


def test_one_graph_one_loop_no_variables(models):
    det, gen = models
    ex = Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen)
    variables_before = len(ex.detector.variables) + len(gen.variables)
    for steps, rows in ((2, 1), (5, 3), (7, 2)):
        _run(ex, ex.initial(range(rows)), [1.0] * rows, [0.01] * rows, [0.1] * rows, [steps])
    assert ex.run.experimental_get_tracing_count() == 1  # steps and rows are tensors
    graph = ex.run.get_concrete_function().graph
    ops = [op.type for op in graph.get_operations()]
    assert ops.count("While") + ops.count("StatelessWhile") == 1
    assert "VarHandleOp" not in ops  # model weights are captured, never created per call
    assert len(ex.detector.variables) + len(gen.variables) == variables_before


def test_targets_any_unit_of_any_layer(models):
    det, gen = models
    out = {"fc8": tf.reshape(tf.range(6.0), [2, 3]),
           "conv4": tf.reshape(tf.range(2 * 2 * 3 * 4, dtype=tf.float32), [2, 2, 3, 4])}
    np.testing.assert_array_equal(unit_activation(out["fc8"], 1).numpy(), [1, 4])
    np.testing.assert_allclose(unit_activation(out["conv4"], 2).numpy(),
                               out["conv4"].numpy()[..., 2].mean(axis=(1, 2)))
    np.testing.assert_array_equal(unit_activation(out["conv4"], (1, 2, 3)).numpy(),
                                  out["conv4"].numpy()[:, 1, 2, 3])
    ex = Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen,
                   layer="conv3", unit=1, trajectories=False)
    res = _run(ex, ex.initial([0, 1]), [1.0, 1.0], [0.1, 0.1], [0.0, 0.0], [6])
    assert "trajectory_activation" not in res and res["activation"].shape == (1, 2)
    with pytest.raises(ValueError, match="no layer"):
        Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen, layer="fc10")
    with pytest.raises(ValueError, match="does not index"):
        Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen, layer="conv3",
                  unit=(1, 2))


def test_input_space_baseline_has_the_same_outputs():
    keras.utils.set_random_seed(0)
    det = build_detector(Detector(width=0.125))
    ex = Explainer(det, np.zeros(80), np.full(80, 2.0), None)
    assert ex.space == "input" and ex.param_shape == (80, 115, 1)
    x0 = ex.initial([0, 1], scale=0.5)
    out = _run(ex, x0, [1.0, -1.0], [0.05, 0.05], [0.01, 0.01], [10])
    assert out["log_mel"].shape == (1, 2, 80, 115, 1) and out["z"].shape == (1, 2, 80, 115, 1)
    traj = out["trajectory_activation"]
    assert traj[-1, 0] > traj[0, 0] and traj[-1, 1] < traj[0, 1]
    # the log-mel is the un-standardised excerpt: x · std + mean
    np.testing.assert_allclose(ex.log_mel(tf.constant(out["z"][0])).numpy(),
                               out["z"][0] * 2.0, atol=1e-6)


def test_bfloat16_moves_the_same_way_and_agrees_with_float32(models):
    """precision="bfloat16" runs both models in bf16 but keeps the optimiser and every output in
    float32: same directions, activations close to the float32 run's, float32 log-mels."""
    det, gen = models
    args = (det.model, det.standardiser.mean, det.standardiser.std, gen)
    full = Explainer(*args, improvement=0.01)
    low = Explainer(*args, improvement=0.01, precision="bfloat16")
    z0 = full.initial([0, 1, 0, 1], base_seed=2)
    signs, lrs, lams = [1.0, 1.0, -1.0, -1.0], [0.1] * 4, [0.001] * 4
    ref = _run(full, z0, signs, lrs, lams, [5, 30])
    out = _run(low, z0, signs, lrs, lams, [5, 30])
    for key in ("log_mel", "activation", "z", "trajectory_activation"):
        assert out[key].dtype == np.float32, key
    traj = out["trajectory_activation"]
    assert np.all(out["activation"][1, :2] > traj[0, :2])  # maximisation raised it
    assert np.all(out["activation"][1, 2:] < traj[0, 2:])  # minimisation lowered it
    assert np.all(traj[-1, :2] > traj[0, :2]) and np.all(traj[-1, 2:] < traj[0, 2:])
    # the starting activations: the same z through bf16 models, within a relative 5e-2
    first, first_ref = traj[0], ref["trajectory_activation"][0]
    scale = max(np.abs(first_ref).max(), np.ptp(first_ref))
    np.testing.assert_allclose(first, first_ref, atol=5e-2 * scale)
    # a short run stays close: after 5 steps the gap is well under how far float32 moved
    moved = np.abs(ref["trajectory_activation"][:6] - first_ref).max()
    np.testing.assert_allclose(traj[5], ref["trajectory_activation"][5],
                               atol=5e-2 * scale + 0.5 * moved)
    # the twins are copies: the user's models stay float32
    assert gen.get_layer("deconv1").dtype_policy.name == "float32"
    assert det.model.get_layer("conv2").dtype_policy.name == "float32"
    assert low.run.experimental_get_tracing_count() == 1
    # the Dense target (the logit) computes in float32, the layers below it in bf16
    assert low._target.get_layer("fc9").dtype_policy.name == "float32"
    assert low._target.get_layer("conv2").dtype_policy.name == "mixed_bfloat16"


def test_bfloat16_conv_target(models):
    det, gen = models
    ex = Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen, layer="conv3",
                   unit=1, precision="bfloat16", trajectories=False)
    res = _run(ex, ex.initial([0, 0]), [1.0, -1.0], [0.1, 0.1], [0.0, 0.0], [6])
    assert res["activation"].dtype == np.float32 and np.all(np.isfinite(res["activation"]))
    assert res["activation"][0, 0] > res["activation"][0, 1]  # same start: max above min


def test_bad_precision_is_refused(models):
    det, gen = models
    with pytest.raises(ValueError, match="float32, bfloat16"):
        Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen,
                  precision="float16")


def test_bfloat16_twin_copies_weights_and_keeps_leaky_relu_gradients(models):
    """The bf16 twin holds exact float32 copies of the weights, and its LeakyReLU (same forward,
    XLA-compiled gradient) gives TF's LeakyReluGrad numbers exactly, at x = 0 too."""
    from tf_svdx.explain.engine import _MaskLeakyReLU, bfloat16_twin
    det, gen = models
    twin = bfloat16_twin(gen)
    assert twin.get_layer("deconv1").dtype_policy.name == "mixed_bfloat16"
    for mine, theirs in zip(twin.weights, gen.weights):
        assert mine.dtype == "float32"
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    x = tf.concat([tf.random.stateless_normal([4, 6, 5, 3], [0, 1]), tf.zeros([1, 6, 5, 3])], 0)
    g = tf.random.stateless_normal(x.shape, [0, 2])
    for dtype in (tf.bfloat16, tf.float32):
        xs, gs = tf.cast(x, dtype), tf.cast(g, dtype)
        grads = []
        for layer in (keras.layers.LeakyReLU(0.01, dtype=dtype.name),
                      _MaskLeakyReLU(0.01, dtype=dtype.name)):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                y = layer(xs)
            assert y.dtype == dtype
            grads.append((y.numpy(), tape.gradient(y, xs, output_gradients=gs).numpy()))
        np.testing.assert_array_equal(grads[0][0], grads[1][0])
        np.testing.assert_array_equal(grads[0][1], grads[1][1])
