"""Whole-track prediction: the detector as a fully-convolutional network (SPEC §3 prediction).

Scoring every frame by cutting a 115-frame excerpt around it repeats about 48× more arithmetic
than needed, because neighbouring excerpts share almost all of their convolutions. The dense twin
slides the detector over the time axis of a whole padded track in one pass, with the same
weights:

- the convolutions are unchanged, except that their time dilation is the product of the strides
  of the poolings before them;
- each max-pooling keeps its frequency stride (the full 80 bands are always seen, only time
  slides), but in time slides by 1 with a dilation equal to the accumulated one, and multiplies
  the dilation of everything after it by its stride (3, then 9);
- fc7 becomes a convolution whose kernel covers pool2's whole (7, 11) output, time dilation 9,
  and fc8/fc9 become 1×1 convolutions.

Input: a track padded with 57 frames of standardised log(1e-7) each side
(`tf_svdx.data.pipeline.whole_track`), in the model layout (1, 80, T + 114, 1). Output: one logit
per original frame, [1, T] (R1) or [1, T, 2] (R2). Core TF ops only, so the model traces into a
plain graph for serving.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from tf_svdx.models.detector import CONV_LAYERS, LAYER_NAMES


@keras.saving.register_keras_serializable(package="tf_svdx")
class SlidingMaxPool(keras.layers.Layer):
    """Max-pooling with `pool`×`pool` windows that strides by `pool` over frequency (axis 1) but
    slides by 1 over time (axis 2), its time taps `dilation` frames apart.

    Max is separable, so this is a strided frequency pool followed by the maximum of `pool`
    shifted time slices.
    """

    def __init__(self, pool: int, dilation: int, **kwargs):
        super().__init__(**kwargs)
        self.pool = int(pool)
        self.dilation = int(dilation)

    @property
    def context(self) -> int:
        """Frames of time lost at the edges (pool − 1)·dilation."""
        return (self.pool - 1) * self.dilation

    def call(self, x):
        x = tf.nn.max_pool2d(x, ksize=(self.pool, 1), strides=(self.pool, 1), padding="VALID")
        length = tf.shape(x)[2] - self.context
        out = x[:, :, :length]
        for k in range(1, self.pool):
            shift = k * self.dilation
            out = tf.maximum(out, x[:, :, shift:shift + length])
        return out

    def compute_output_shape(self, input_shape):
        n, freq, time, channels = input_shape
        freq = None if freq is None else (freq - self.pool) // self.pool + 1
        time = None if time is None else time - self.context
        return (n, freq, time, channels)

    def get_config(self):
        return {**super().get_config(), "pool": self.pool, "dilation": self.dilation}


def _same_activation(layer):
    """A fresh copy of `layer`'s activation (LeakyReLU layer or a plain activation function)."""
    act = layer.activation
    if isinstance(act, keras.layers.Layer):
        return act.__class__.from_config({**act.get_config(), "name": None})
    return act


def build_dense(detector: keras.Model) -> keras.Model:
    """The fully-convolutional twin of `detector`, holding a COPY of its weights.

    (1, n_mels, T + excerpt − 1, 1) standardised padded track → logits [1, T] or [1, T, 2].
    There is no dropout: the dense model is for inference only. Layer names match the
    detector's, and each layer's output at time t is that detector layer's feature map for the
    excerpt centred on frame t (on the dilated grid).
    """
    missing = [n for n in LAYER_NAMES if n not in {layer.name for layer in detector.layers}]
    if missing:
        raise ValueError(f"{detector.name}: not a detector, no layer(s) {', '.join(missing)}")
    _, n_mels, excerpt, channels = detector.input_shape

    inputs = keras.Input((n_mels, None, channels), name="log_mel")
    x = inputs
    dilation = 1
    for name in LAYER_NAMES:
        src = detector.get_layer(name)
        if name in CONV_LAYERS:
            layer = keras.layers.Conv2D(
                src.filters, src.kernel_size, padding="valid", dilation_rate=(1, dilation),
                activation=_same_activation(src), name=name)
        elif isinstance(src, keras.layers.MaxPooling2D):
            pool = src.pool_size[0]
            if tuple(src.pool_size) != (pool, pool) or tuple(src.strides) != (pool, pool) \
                    or src.padding != "valid":
                raise ValueError(f"{name}: only square VALID pools with stride = size are "
                                 f"supported, got {src.pool_size}/{src.strides}/{src.padding}")
            layer = SlidingMaxPool(pool, dilation, name=name)
            dilation *= pool
        else:  # fc7 covers its input's whole (freq, time) map; fc8 / fc9 are 1×1.
            spatial = tuple(detector.get_layer("pool2").output.shape[1:3]) if name == "fc7" \
                else (1, 1)
            layer = keras.layers.Conv2D(
                src.units, spatial, padding="valid", dilation_rate=(1, dilation),
                activation=_same_activation(src), name=name)
        x = layer(x)
    # x: (N, 1, T, units) → (N, T) or (N, T, units)
    units = detector.get_layer(LAYER_NAMES[-1]).units
    x = keras.layers.Reshape((-1,) if units == 1 else (-1, units), name="per_frame")(x)
    dense = keras.Model(inputs, x, name=f"{detector.name}_dense")
    copy_weights(detector, dense)
    if context_frames(dense) != excerpt - 1:
        raise ValueError(f"{detector.name}: receptive field {context_frames(dense) + 1} frames "
                         f"differs from its excerpt length {excerpt}")
    return dense


def copy_weights(detector: keras.Model, dense: keras.Model) -> None:
    """Copy `detector`'s current weights into its dense twin (e.g. after more training)."""
    for name in LAYER_NAMES:
        target = dense.get_layer(name)
        if target.weights:
            kernel, bias = detector.get_layer(name).get_weights()
            target.set_weights([kernel.reshape(tuple(target.kernel.shape)), bias])


def context_frames(dense_model: keras.Model) -> int:
    """Frames the dense model consumes beyond its output length (receptive field − 1; 114)."""
    total = 0
    for layer in dense_model.layers:
        if isinstance(layer, SlidingMaxPool):
            total += layer.context
        elif isinstance(layer, keras.layers.Conv2D):
            total += (layer.kernel_size[1] - 1) * layer.dilation_rate[1]
    return total


_COMPILED = weakref.WeakKeyDictionary()  # model → its inference tf.function


def _serving_fn(model: keras.Model):
    """`model` in inference mode as a tf.function over variable-length inputs, traced once."""
    fn = _COMPILED.get(model)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), input_signature=[
            tf.TensorSpec([None] + list(model.input_shape[1:]), tf.float32)])
        _COMPILED[model] = fn
    return fn


def _check_track(padded_track, n_mels: int, context: int) -> np.ndarray:
    x = np.asarray(padded_track, np.float32)
    if x.ndim != 2 or x.shape[1] != n_mels:
        raise ValueError(f"expected a padded track [frames, {n_mels}], got shape {x.shape}")
    if x.shape[0] <= context:
        raise ValueError(f"a padded track needs more than {context} frames, got {x.shape[0]}")
    return x


def dense_logits(dense_model: keras.Model, padded_track, chunk_frames: int | None = 8192
                 ) -> np.ndarray:
    """Per-frame logits [T] (or [T, 2]) of a padded track [T + 114, n_mels].

    Chunks of `chunk_frames` output frames, each read with the receptive field's overlap
    (114 frames), so memory is bounded by the chunk, not the track; the result equals the
    one-pass result (`chunk_frames=None`). About 30 KB of activations per chunk frame.
    """
    context = context_frames(dense_model)
    x = _check_track(padded_track, dense_model.input_shape[1], context)
    n = x.shape[0] - context
    step = n if chunk_frames is None else int(chunk_frames)
    if step < 1:
        raise ValueError(f"chunk_frames must be ≥ 1, got {chunk_frames}")
    fn = _serving_fn(dense_model)
    parts = []
    for start in range(0, n, step):
        chunk = x[start:min(start + step, n) + context]
        parts.append(fn(tf.constant(chunk.T[np.newaxis, :, :, np.newaxis]))[0].numpy())
    return np.concatenate(parts)


def sliding_window_logits(detector: keras.Model, padded_track, batch: int = 256) -> np.ndarray:
    """The reference: the detector on an explicit excerpt centred on every frame, [T] / [T, 2]."""
    _, n_mels, excerpt, _ = detector.input_shape
    x = _check_track(padded_track, n_mels, excerpt - 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, excerpt, axis=0)  # [T, mels, excerpt]
    fn = _serving_fn(detector)
    parts = [fn(tf.constant(windows[i:i + batch, ..., np.newaxis])).numpy()
             for i in range(0, len(windows), batch)]
    out = np.concatenate(parts)
    return out[:, 0] if out.shape[-1] == 1 else out


def probabilities(logits) -> np.ndarray:
    """Singing probability per frame: sigmoid of [T] logits, or softmax class 1 of [T, 2]."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    if logits.shape.rank == 1:
        return tf.sigmoid(logits).numpy()
    return tf.nn.softmax(logits, axis=-1)[..., 1].numpy()


def predict_track(dense_model: keras.Model, padded_track, chunk_frames: int | None = 8192
                  ) -> np.ndarray:
    """Singing probability for every original frame (70 fps) of a padded track: [T] float32."""
    return probabilities(dense_logits(dense_model, padded_track, chunk_frames))
