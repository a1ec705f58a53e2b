"""The singing-voice detector of Schlüter & Grill (ISMIR 2015), SPEC §3 ("SVDNet-R1" / "R2").

Input: a standardised log-mel excerpt (80 mel, 115 frames, 1). Output: the fc9 logit(s); the
sigmoid (R1) or softmax (R2) is applied outside the model, so that explanations can target the
pre-sigmoid logit. Every weighted layer carries its LeakyReLU inside (`activation=`), so the
output of a named layer (`model.get_layer("fc8").output`) IS its post-activation feature map.
"""

from __future__ import annotations

import keras

from tf_svdx.config import Detector, FrontEnd

#: The weighted and pooling layers, in order; explanation code addresses layers by these names.
LAYER_NAMES = ("conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "fc7", "fc8", "fc9")
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4")
DENSE_LAYERS = ("fc7", "fc8", "fc9")

# Published widths at width 1 (fc9's width is `Detector.outputs`, never scaled).
_WIDTHS = {"conv1": 64, "conv2": 32, "conv3": 128, "conv4": 64, "fc7": 256, "fc8": 64}
POOL = 3  # both max-poolings: 3×3 windows, stride 3


def widths(config: Detector) -> dict[str, int]:
    """Units per hidden layer after the width multiplier (at least one each)."""
    return {name: max(1, round(n * config.width)) for name, n in _WIDTHS.items()}


def build_detector(config: Detector | None = None, frontend: FrontEnd | None = None
                   ) -> keras.Model:
    """The SPEC §3 CNN; 1,408,225 parameters with the default config (width 1, one output).

    Initialisation (orthogonal kernels, zero biases) draws from Keras' global seed, so
    `keras.utils.set_random_seed(s)` before building makes the weights reproducible.
    """
    config = config or Detector()
    fe = frontend or FrontEnd()
    if config.outputs not in (1, 2):
        raise ValueError(f"Detector.outputs must be 1 (sigmoid) or 2 (softmax), "
                         f"got {config.outputs}")
    if config.width <= 0:
        raise ValueError(f"Detector.width must be positive, got {config.width}")
    units = widths(config)

    def conv(name):
        return keras.layers.Conv2D(
            units[name], 3, padding="valid", name=name, kernel_initializer="orthogonal",
            activation=keras.layers.LeakyReLU(negative_slope=config.leaky_slope))

    def dense(name, n, activation):
        return keras.layers.Dense(n, name=name, kernel_initializer="orthogonal",
                                  activation=activation)

    def dropout(name):
        return keras.layers.Dropout(config.dropout, name=name)

    inputs = keras.Input((fe.n_mels, fe.excerpt_frames, 1), name="log_mel")
    x = conv("conv1")(inputs)
    x = conv("conv2")(x)
    x = keras.layers.MaxPooling2D(POOL, strides=POOL, name="pool1")(x)
    x = conv("conv3")(x)
    x = conv("conv4")(x)
    x = keras.layers.MaxPooling2D(POOL, strides=POOL, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = dropout("drop7")(x)
    x = dense("fc7", units["fc7"], keras.layers.LeakyReLU(negative_slope=config.leaky_slope))(x)
    x = dropout("drop8")(x)
    x = dense("fc8", units["fc8"], keras.layers.LeakyReLU(negative_slope=config.leaky_slope))(x)
    x = dropout("drop9")(x)
    logits = dense("fc9", config.outputs, None)(x)
    name = "svdnet_r1" if config.outputs == 1 else "svdnet_r2"
    return keras.Model(inputs, logits, name=name)


def feature_model(model: keras.Model, layer_names) -> keras.Model:
    """A model with `model`'s input and weights returning {name: that layer's output}.

    Call it with `training=False` (or `.predict`) so that the dropout before fc7/fc8/fc9 is off.
    """
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    known = [layer.name for layer in model.layers]
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"no layer {', '.join(missing)} in {model.name} "
                         f"(layers: {', '.join(known)})")
    return keras.Model(model.input, {n: model.get_layer(n).output for n in names},
                       name=f"{model.name}_features")
