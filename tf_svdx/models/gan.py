"""The WGAN-GP prior of Mishra et al. 2019 (SPEC §4): a log-mel excerpt generator and its critic.

Both work on UN-standardised log-mel in the front end's layout (N, 80 mel, 115 frames, 1); the
detector's standardisation is applied outside, by whoever feeds generated excerpts to it.

The convolutions run on a 128-frame time axis (8 · 2⁴) that the SPEC crops to / pads from the
115-frame excerpt: the generator keeps frames 6:121, the critic pads 6 frames before and 7 after.
Every layer is a built-in Keras layer except `LogFloor` (registered, so `.keras` files load with
`safe_mode=True`); there is no Lambda layer.

Parameter counts at width 1 (SPEC §4 read literally: every Dense/Conv has a bias except the
critic's output, all kernels 5×5):
    generator 932,801 = dense 128·5120 + 5120 → deconv1 25·128·64 + 64 → deconv2 25·64·32 + 32
                        → deconv3 25·32·16 + 16 → deconv4 25·16·8 + 8 → conv_out 25·8·1 + 1
    critic  1,086,720 = conv1 25·1·32 + 32 → conv2 25·32·64 + 64 → conv3 25·64·128 + 128
                        → conv4 25·128·256 + 256 → output 5·8·256 (no bias)
"""

from __future__ import annotations

import math

import keras

from tf_svdx.config import FrontEnd, Gan

KERNEL = 5
STRIDE = 2
SEED_SHAPE = (5, 8)  # (mel, time) of the generator's first feature map; ×2⁴ → (80, 128)
CONV_FRAMES = 128  # time axis inside both networks
CROP = (6, 7)  # frames dropped (generator) / zero-padded (critic) before and after: 128 ↔ 115

# Published widths at width 1; the generator's output and the critic's score are 1 unit, unscaled.
_GENERATOR_WIDTHS = {"dense": 128, "deconv1": 64, "deconv2": 32, "deconv3": 16, "deconv4": 8}
_CRITIC_WIDTHS = {"conv1": 32, "conv2": 64, "conv3": 128, "conv4": 256}


@keras.saving.register_keras_serializable(package="tf_svdx")
class LogFloor(keras.layers.Layer):
    """max(x, log(floor)): the generator cannot go below the front end's log(1e-7) silence."""

    def __init__(self, floor: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, inputs):
        return keras.ops.maximum(inputs, math.log(self.floor))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


def _widths(base: dict[str, int], config: Gan) -> dict[str, int]:
    if config.width <= 0:
        raise ValueError(f"Gan.width must be positive, got {config.width}")
    return {name: max(1, round(n * config.width)) for name, n in base.items()}


def _check_frontend(fe: FrontEnd):
    """The architecture is tied to 80 mel bands and 115-frame excerpts (5·2⁴, 128 − 6 − 7)."""
    size = 2 ** 4
    if (fe.n_mels, fe.excerpt_frames) != (SEED_SHAPE[0] * size, CONV_FRAMES - sum(CROP)):
        raise ValueError(f"the SPEC §4 GAN needs {SEED_SHAPE[0] * size} mel bands and "
                         f"{CONV_FRAMES - sum(CROP)}-frame excerpts, got {fe.n_mels} and "
                         f"{fe.excerpt_frames}")


def build_generator(config: Gan | None = None, frontend: FrontEnd | None = None) -> keras.Model:
    """z (N, latent_dim) → log-mel (N, 80, 115, 1); 932,801 parameters with the default config.

    Initialisation (Glorot-uniform kernels, zero biases) draws from Keras' global seed, so
    `keras.utils.set_random_seed(s)` before building makes the weights reproducible.
    """
    config = config or Gan()
    fe = frontend or FrontEnd()
    _check_frontend(fe)
    units = _widths(_GENERATOR_WIDTHS, config)

    def leaky():
        return keras.layers.LeakyReLU(negative_slope=config.leaky_slope)

    z = keras.Input((config.latent_dim,), name="z")
    x = keras.layers.Dense(math.prod(SEED_SHAPE) * units["dense"], activation=leaky(),
                           kernel_initializer="glorot_uniform", name="dense")(z)
    x = keras.layers.Reshape((*SEED_SHAPE, units["dense"]), name="reshape")(x)
    for name in ("deconv1", "deconv2", "deconv3", "deconv4"):
        x = keras.layers.Conv2DTranspose(units[name], KERNEL, strides=STRIDE, padding="same",
                                         activation=leaky(), kernel_initializer="glorot_uniform",
                                         name=name)(x)
    x = keras.layers.Conv2D(1, KERNEL, padding="same", kernel_initializer="glorot_uniform",
                            name="conv_out")(x)
    x = LogFloor(fe.log_floor, name="log_floor")(x)
    log_mel = keras.layers.Cropping2D(((0, 0), CROP), name="crop")(x)
    return keras.Model(z, log_mel, name="generator")


def build_critic(config: Gan | None = None, frontend: FrontEnd | None = None) -> keras.Model:
    """log-mel (N, 80, 115, 1) → Wasserstein score (N, 1); 1,086,720 parameters by default."""
    config = config or Gan()
    fe = frontend or FrontEnd()
    _check_frontend(fe)
    units = _widths(_CRITIC_WIDTHS, config)

    log_mel = keras.Input((fe.n_mels, fe.excerpt_frames, 1), name="log_mel")
    x = keras.layers.ZeroPadding2D(((0, 0), CROP), name="pad")(log_mel)
    for name in ("conv1", "conv2", "conv3", "conv4"):
        x = keras.layers.Conv2D(units[name], KERNEL, strides=STRIDE, padding="same",
                                activation=keras.layers.LeakyReLU(
                                    negative_slope=config.leaky_slope),
                                kernel_initializer="glorot_uniform", name=name)(x)
    x = keras.layers.Flatten(name="flatten")(x)
    score = keras.layers.Dense(1, use_bias=False, kernel_initializer="glorot_uniform",
                               name="score")(x)
    return keras.Model(log_mel, score, name="critic")
