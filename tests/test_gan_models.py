"""The WGAN-GP generator and critic (SPEC §4) and the gradient penalty and losses."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx import config as config_lib
from tf_svdx.config import FrontEnd, Gan
from tf_svdx.models import build_critic, build_generator
from tf_svdx.train.wgan_gp import critic_loss, generator_loss, gradient_penalty

TINY = Gan(width=0.125)
FLOOR = math.log(1e-7)


def _z(n, dim=128, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _log_mel(n, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, 80, 115, 1)) * 3 - 8).astype(
        np.float32)


def test_published_models_have_the_spec_parameter_counts_and_shapes():
    gen, critic = build_generator(), build_critic()
    assert gen.count_params() == 932_801
    assert critic.count_params() == 1_086_720
    assert gen.input_shape == (None, 128) and gen.output_shape == (None, 80, 115, 1)
    assert critic.input_shape == (None, 80, 115, 1) and critic.output_shape == (None, 1)
    shapes = {n: gen.get_layer(n).output.shape[1:]
              for n in ("reshape", "deconv1", "deconv2", "deconv3", "deconv4", "conv_out")}
    assert shapes == {"reshape": (5, 8, 128), "deconv1": (10, 16, 64), "deconv2": (20, 32, 32),
                      "deconv3": (40, 64, 16), "deconv4": (80, 128, 8),
                      "conv_out": (80, 128, 1)}
    shapes = {n: critic.get_layer(n).output.shape[1:]
              for n in ("pad", "conv1", "conv2", "conv3", "conv4", "flatten")}
    assert shapes == {"pad": (80, 128, 1), "conv1": (40, 64, 32), "conv2": (20, 32, 64),
                      "conv3": (10, 16, 128), "conv4": (5, 8, 256), "flatten": (10240,)}
    assert not critic.get_layer("score").use_bias


def test_spec_choices_kernels_init_activations_no_normalisation():
    for model in (build_generator(TINY), build_critic(TINY)):
        weighted = [layer for layer in model.layers if layer.weights]
        for layer in weighted:
            assert type(layer.kernel_initializer).__name__ == "GlorotUniform", layer.name
            if hasattr(layer, "kernel_size"):
                assert tuple(layer.kernel_size) == (5, 5), layer.name
        assert not any("Normalization" in type(layer).__name__ for layer in model.layers)
    gen = build_generator(TINY)
    assert [gen.get_layer(f"deconv{i}").strides for i in range(1, 5)] == [(2, 2)] * 4
    assert gen.get_layer("deconv1").activation.negative_slope == pytest.approx(0.2)
    assert gen.get_layer("conv_out").activation.__name__ == "linear"


def test_generator_floors_at_log_1e_7_and_keeps_frames_6_to_121():
    gen = build_generator(TINY)
    # Centre conv_out on the floor so that about half of its values fall below it.
    kernel, bias = gen.get_layer("conv_out").get_weights()
    gen.get_layer("conv_out").set_weights([kernel, bias + FLOOR])
    z = _z(3)
    full = keras.Model(gen.input, gen.get_layer("conv_out").output)(z).numpy()
    out = gen(z).numpy()
    np.testing.assert_allclose(out, np.maximum(full, FLOOR)[:, :, 6:121], rtol=1e-6, atol=1e-6)
    assert out.min() == pytest.approx(FLOOR) and (full < FLOOR).any() and (full > FLOOR).any()


def test_critic_zero_pads_6_frames_before_and_7_after():
    critic = build_critic(TINY)
    x = _log_mel(2)
    padded = keras.Model(critic.input, critic.get_layer("pad").output)(x).numpy()
    np.testing.assert_array_equal(padded[:, :, 6:121], x)
    assert not padded[:, :, :6].any() and not padded[:, :, 121:].any()


@pytest.mark.parametrize("width, first", [(0.125, 8), (0.001, 1)])
def test_width_multiplier_scales_hidden_layers_only(width, first):
    gen, critic = build_generator(Gan(width=width)), build_critic(Gan(width=width))
    assert gen.get_layer("deconv1").filters == first
    assert critic.get_layer("conv1").filters == max(1, round(32 * width))
    assert gen(_z(2)).shape == (2, 80, 115, 1)
    assert critic(_log_mel(2)).shape == (2, 1)
    assert build_generator(Gan(width=width, latent_dim=16))(_z(2, 16)).shape == (2, 80, 115, 1)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="width"):
        build_generator(Gan(width=0))
    with pytest.raises(ValueError, match="115-frame"):
        build_critic(TINY, FrontEnd(excerpt_frames=100))


def test_gan_section_is_in_the_config():
    config = config_lib.load(None, ["gan.width=0.5", "gan.latent_dim=64"])
    assert config.gan == Gan(latent_dim=64, width=0.5, leaky_slope=0.2)
    assert Gan() == Gan(latent_dim=128, width=1.0, leaky_slope=0.2)


def test_seeded_initialisation_is_reproducible():
    keras.utils.set_random_seed(7)
    a = build_generator(TINY)(_z(2)).numpy()
    keras.utils.set_random_seed(7)
    b = build_generator(TINY)(_z(2)).numpy()
    np.testing.assert_array_equal(a, b)


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    for model, x in ((build_generator(TINY), _z(2)), (build_critic(TINY), _log_mel(2))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert [type(layer).__name__ for layer in loaded.layers] == \
            [type(layer).__name__ for layer in model.layers]
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


# ---- gradient penalty and losses -------------------------------------------------------------

def _linear_critic(w):
    """D(x) = Σ w·x: ∇x D = w everywhere, so the penalty is (‖w‖ − 1)² for any input."""
    return lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])[:, None]


def test_penalty_of_a_linear_critic_with_gradient_norm_4_is_9():
    w = tf.ones([1, 4, 2, 2])  # ‖w‖ = √16 = 4
    real, fake = tf.random.normal([5, 4, 2, 2], seed=1), tf.random.normal([5, 4, 2, 2], seed=2)
    alpha = tf.random.uniform([5, 1, 1, 1], seed=3)
    gp = gradient_penalty(_linear_critic(w), real, fake, alpha)
    assert gp.shape == () and float(gp) == pytest.approx(9.0, rel=1e-6)

    # Same closed form through a Keras critic (kernel of 16 ones).
    model = keras.Sequential([keras.Input((4, 2, 2)), keras.layers.Flatten(),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    assert float(gradient_penalty(model, real, fake, alpha)) == pytest.approx(9.0, rel=1e-6)


def test_epsilon_keeps_the_penalty_gradient_finite_when_the_input_gradient_is_zero():
    w = tf.Variable(tf.zeros([1, 4, 2, 2]))  # a critic that ignores its input: ∇x D = 0
    real, fake = tf.ones([3, 4, 2, 2]), tf.zeros([3, 4, 2, 2])
    alpha = tf.fill([3, 1, 1, 1], 0.5)

    def grad_wrt_weights(epsilon):
        with tf.GradientTape() as tape:
            gp = gradient_penalty(_linear_critic(w), real, fake, alpha, epsilon=epsilon)
        return gp, tape.gradient(gp, w)

    gp, grad = grad_wrt_weights(1e-10)
    assert float(gp) == pytest.approx(1.0, abs=1e-4)
    assert np.isfinite(grad.numpy()).all()
    _, grad = grad_wrt_weights(0.0)  # the bug the epsilon prevents (d√u/du at u = 0)
    assert np.isnan(grad.numpy()).any()

    # A critic whose output does not depend on the input at all: zero gradient, not an error.
    constant = gradient_penalty(lambda x: tf.zeros([tf.shape(x)[0], 1]), real, fake, alpha)
    assert float(constant) == pytest.approx(1.0, abs=1e-4)


def test_alpha_is_applied_per_example():
    # D(x) = ½‖x‖² ⇒ ∇ = x̂ = α·fake when real = 0, so example i has norm α_i·c·√d.
    c, d = 0.5, 16
    real, fake = tf.zeros([3, 4, 2, 2]), tf.fill([3, 4, 2, 2], c)
    alpha = np.array([0.0, 0.5, 1.0], np.float32)
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]  # noqa: E731
    expected = np.mean((alpha * c * math.sqrt(d) - 1.0) ** 2)  # (1 + 0 + 1) / 3
    gp = gradient_penalty(critic, real, fake, alpha.reshape(3, 1, 1, 1))
    assert float(gp) == pytest.approx(expected, abs=1e-5)
    # Sharing the mean α across the batch would give 0: the test tells them apart.
    shared = gradient_penalty(critic, real, fake, np.full([3, 1, 1, 1], alpha.mean()))
    assert float(shared) == pytest.approx(0.0, abs=1e-5) and expected > 0.5


def test_alpha_shapes_broadcast_and_a_wrong_size_is_an_error():
    critic = lambda x: 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None]  # noqa: E731
    real, fake = tf.random.normal([4, 3, 2, 1], seed=4), tf.random.normal([4, 3, 2, 1], seed=5)
    alpha = np.array([0.1, 0.4, 0.7, 0.9], np.float32)
    values = [float(gradient_penalty(critic, real, fake, a))
              for a in (alpha, alpha[:, None], alpha.reshape(4, 1, 1, 1))]
    assert values == pytest.approx([values[0]] * 3)
    for bad in (np.float32(0.5), alpha[:3]):
        with pytest.raises(tf.errors.InvalidArgumentError):
            gradient_penalty(critic, real, fake, bad)


def test_penalty_of_the_real_critic_is_differentiable_in_a_tf_function():
    critic = build_critic(TINY)

    @tf.function
    def step(real, fake, alpha):
        with tf.GradientTape() as tape:
            gp = gradient_penalty(critic, real, fake, alpha)
            loss = critic_loss(critic(real), critic(fake), gp)
        return loss, gp, tape.gradient(loss, critic.trainable_variables)

    loss, gp, grads = step(_log_mel(4, 1), _log_mel(4, 2), tf.random.uniform([4, 1, 1, 1]))
    assert np.isfinite(float(loss)) and float(gp) >= 0
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_losses():
    d_real, d_fake = tf.constant([[1.0], [3.0]]), tf.constant([[-1.0], [0.0]])
    assert float(critic_loss(d_real, d_fake, tf.constant(0.2))) == pytest.approx(-0.5 - 2.0 + 2.0)
    assert float(critic_loss(d_real, d_fake, 0.2, lam=1.0)) == pytest.approx(-2.3)
    assert float(generator_loss(d_fake)) == pytest.approx(0.5)


def test_models_package_defers_the_tensorflow_only_whole_track_twin():
    """tf_svdx.models builds backend-neutral Keras models (tools/gan_jax.py trains the GAN under
    the JAX backend): importing it must not import the TF-only dense module until asked."""
    import subprocess
    import sys
    code = ("import sys, tf_svdx.models as m; assert 'tf_svdx.models.dense' not in sys.modules; "
            "f = m.predict_track; assert 'tf_svdx.models.dense' in sys.modules; "
            "assert f.__module__ == 'tf_svdx.models.dense'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_unknown_gan_preset_is_a_config_error():
    from tf_svdx.errors import ConfigError
    assert config_lib.TrainGan(preset="wgan-gp").adam() == (1e-4, 0.0, 0.0, 0.9)
    assert config_lib.TrainGan().adam() == (1e-5, 0.5, 0.9, 0.999)
    with pytest.raises(ConfigError, match="unknown preset 'adam'"):
        config_lib.TrainGan(preset="adam").adam()
