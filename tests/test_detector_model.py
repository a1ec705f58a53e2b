"""The Schlüter–Grill detector (SPEC §3): architecture, names, variants, init, inference mode."""

import keras
import numpy as np
import pytest

from tf_svdx.config import Detector
from tf_svdx.models import LAYER_NAMES, build_detector, feature_model

TINY = Detector(width=0.125)


def _excerpts(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 80, 115, 1)).astype(np.float32)


def _leaky(x, slope=0.01):
    return np.where(x >= 0, x, slope * x)


def test_published_model_has_the_spec_parameter_count_and_names():
    model = build_detector()
    assert model.count_params() == 1_408_225
    assert model.input_shape == (None, 80, 115, 1)
    assert model.output_shape == (None, 1)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n in LAYER_NAMES] == list(LAYER_NAMES)
    shapes = {n: model.get_layer(n).output.shape[1:] for n in LAYER_NAMES}
    assert shapes == {"conv1": (78, 113, 64), "conv2": (76, 111, 32), "pool1": (25, 37, 32),
                      "conv3": (23, 35, 128), "conv4": (21, 33, 64), "pool2": (7, 11, 64),
                      "fc7": (256,), "fc8": (64,), "fc9": (1,)}
    assert model.get_layer("flatten").output.shape[1:] == (4928,)
    assert [model.get_layer(n).rate for n in ("drop7", "drop8", "drop9")] == [0.5] * 3


def test_r2_variant_has_two_logits():
    model = build_detector(Detector(outputs=2))
    assert model.output_shape == (None, 2)
    assert model.count_params() == 1_408_225 + 65
    assert model(_excerpts(3), training=False).shape == (3, 2)


@pytest.mark.parametrize("width, conv1, fc7", [(0.125, 8, 32), (0.001, 1, 1)])
def test_width_multiplier_scales_hidden_layers_but_not_the_output(width, conv1, fc7):
    model = build_detector(Detector(width=width))
    assert model.get_layer("conv1").filters == conv1
    assert model.get_layer("fc7").units == fc7
    assert model.get_layer("fc9").units == 1
    assert model(_excerpts(2), training=False).shape == (2, 1)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="outputs"):
        build_detector(Detector(outputs=3))
    with pytest.raises(ValueError, match="width"):
        build_detector(Detector(width=0))


def test_seeded_initialisation_is_reproducible_and_orthogonal():
    keras.utils.set_random_seed(3)
    a = build_detector(TINY).get_weights()
    keras.utils.set_random_seed(3)
    b = build_detector(TINY).get_weights()
    keras.utils.set_random_seed(4)
    c = build_detector(TINY).get_weights()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    model = build_detector()
    kernel = model.get_layer("conv2").kernel.numpy().reshape(-1, 32)  # 576 × 32: orthonormal cols
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(32), atol=1e-5)
    assert all(not np.any(model.get_layer(n).bias.numpy()) for n in ("conv1", "fc7", "fc9"))


def test_named_layer_outputs_are_post_activation_and_fc9_is_linear():
    keras.utils.set_random_seed(0)
    model = build_detector(TINY)
    features = feature_model(model, ["fc7", "fc8", "fc9", "conv1"])
    out = features(_excerpts(4), training=False)
    assert set(out) == {"fc7", "fc8", "fc9", "conv1"}
    assert out["conv1"].shape == (4, 78, 113, 8)
    fc7, fc8, fc9 = (out[n].numpy() for n in ("fc7", "fc8", "fc9"))
    w8, b8 = model.get_layer("fc8").get_weights()
    w9, b9 = model.get_layer("fc9").get_weights()
    np.testing.assert_allclose(fc8, _leaky(fc7 @ w8 + b8), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fc9, fc8 @ w9 + b9, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fc9, model(_excerpts(4), training=False), rtol=1e-6)
    assert np.any(out["conv1"].numpy() < 0)  # leaky, not ReLU
    with pytest.raises(ValueError, match="fc10.*layers: log_mel, conv1"):
        feature_model(model, "fc10")


def test_dropout_only_in_training_mode():
    keras.utils.set_random_seed(0)
    model = build_detector(TINY)
    x = _excerpts(8)
    infer = model(x, training=False).numpy()
    np.testing.assert_array_equal(infer, model(x, training=False).numpy())
    np.testing.assert_allclose(infer, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(infer, model(x, training=True).numpy())


def test_saved_model_file_round_trips(tmp_path):
    model = build_detector(TINY)
    model.save(tmp_path / "detector.keras")
    again = keras.models.load_model(tmp_path / "detector.keras")
    x = _excerpts(2)
    np.testing.assert_array_equal(model(x, training=False), again(x, training=False))
    assert again.get_layer("conv1").activation.negative_slope == pytest.approx(0.01)
