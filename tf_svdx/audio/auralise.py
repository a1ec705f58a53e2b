"""Log-mel → audio (SPEC §7): pseudo-inverse of the mel filterbank, then Griffin-Lim, in core TF.

Only tf.signal / tf.math ops and constants, so `auralise` traces into a graph that TF-Serving can
run (no tfio, no py_function), e.g. under `tf.function(input_signature=[TensorSpec([None, 80])])`.

Griffin-Lim here is the same algorithm as `librosa.griffinlim(init=None)`: phase initialised to
zero (deterministic), the "fast Griffin-Lim" momentum of Perraudin et al. (librosa's default 0.99;
0 gives the classic algorithm), and the least-squares inverse STFT Σ w·frame / Σ w². That inverse
divides by the window overlap actually present at each sample, like librosa's `istft`;
`tf.signal.inverse_stft_window_fn` assumes full overlap everywhere and so scales the first and
last 1024 − 315 samples wrongly, which costs Griffin-Lim a little convergence at the edges.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from tf_svdx.config import FrontEnd
from tf_svdx.features import mel_matrix

DEFAULT = FrontEnd()
ITERATIONS = 100
MOMENTUM = 0.99


@functools.lru_cache(maxsize=8)
def mel_pinv(fe: FrontEnd = DEFAULT) -> np.ndarray:
    """[n_mels, n_linear_bins] float32: pseudo-inverse of the filterbank's non-zero rows."""
    bank = mel_matrix(fe)[: fe.n_linear_bins].astype(np.float64)
    return np.linalg.pinv(bank).astype(np.float32)


def mel_to_linear(log_mel, fe: FrontEnd = DEFAULT) -> tf.Tensor:
    """[..., frames, n_mels] log-mel → [..., frames, n_fft_bins] non-negative linear magnitude."""
    mel = tf.exp(tf.convert_to_tensor(log_mel, tf.float32))
    linear = tf.maximum(tf.tensordot(mel, tf.constant(mel_pinv(fe)), axes=[[-1], [0]]), 0.0)
    rank = linear.shape.rank
    pad = [[0, 0]] * (rank - 1) + [[0, fe.n_fft_bins - fe.n_linear_bins]]
    return tf.pad(linear, pad)


def _window(length, dtype=tf.float32):
    return tf.signal.hann_window(length, periodic=False, dtype=dtype)  # SPEC §1: symmetric


def griffin_lim(magnitude, iterations: int = ITERATIONS, momentum: float = MOMENTUM,
                fe: FrontEnd = DEFAULT) -> tf.Tensor:
    """[..., frames, n_fft_bins] magnitude → [..., (frames − 1)·hop + frame_len] waveform.

    The frames follow the front end's STFT (no centring), so `features.stft_magnitude` of the
    result has exactly `frames` frames again.
    """
    magnitude = tf.convert_to_tensor(magnitude, tf.float32)
    frames = tf.shape(magnitude)[-2]
    # Σ w² over the frames that overlap each output sample. Near both ends only one frame's
    # window tail covers a sample and Σ w² → 0; Griffin-Lim's frames are not consistent there, so
    # dividing by it would turn the edges into spikes that the peak normalisation then scales the
    # whole signal down to (40 dB quieter). A floor of a tenth of the interior envelope bounds the
    # gain: the edges fade in and out instead (about 5 ms each).
    window_sq = tf.tile(tf.square(_window(fe.frame_len))[None, :], [frames, 1])
    envelope = tf.signal.overlap_and_add(window_sq, fe.hop)
    envelope = tf.maximum(envelope, 0.1 * tf.reduce_max(envelope))
    s = tf.complex(magnitude, tf.zeros_like(magnitude))

    def istft(spec):
        frames_out = tf.signal.inverse_stft(spec, frame_length=fe.frame_len, frame_step=fe.hop,
                                            fft_length=fe.frame_len, window_fn=_window)
        return frames_out / envelope

    def stft(wave):
        return tf.signal.stft(wave, frame_length=fe.frame_len, frame_step=fe.hop,
                              fft_length=fe.frame_len, window_fn=_window, pad_end=False)

    def unit(z):
        return z / tf.complex(tf.abs(z) + 1e-30, 0.0)

    beta = tf.complex(momentum / (1.0 + momentum), 0.0)

    def step(i, estimate, previous):
        rebuilt = stft(istft(estimate))
        return i + 1, s * unit(rebuilt - beta * previous), rebuilt

    # Zero initial phase; `previous` = 0 makes the first step plain Griffin-Lim, as in librosa.
    _, estimate, _ = tf.while_loop(lambda i, *_: i < iterations, step,
                                   (tf.constant(0), s, tf.zeros_like(s)))
    return istft(estimate)


def auralise(log_mel, iterations: int = ITERATIONS, fe: FrontEnd = DEFAULT,
             momentum: float = MOMENTUM) -> tf.Tensor:
    """Un-standardised log-mel [frames, n_mels] (or [N, frames, n_mels]) → float32 waveform at
    fe.sample_rate, [samples] (or [N, samples]), each signal peak-normalised to 1 (silence stays 0).
    """
    wave = griffin_lim(mel_to_linear(log_mel, fe), iterations, momentum, fe)
    peak = tf.reduce_max(tf.abs(wave), axis=-1, keepdims=True)
    return wave / tf.where(peak > 0, peak, tf.ones_like(peak))
