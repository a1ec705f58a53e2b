"""The front end (SPEC §1): STFT → published mel filterbank → log, and per-band standardisation.

Core TensorFlow ops only (no tfio, no numpy at call time), so the same functions can sit inside
training input pipelines, the explanation graph and a TF-Serving signature.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx.config import FrontEnd

DEFAULT = FrontEnd()


@functools.lru_cache(maxsize=8)
def mel_matrix(fe: FrontEnd = DEFAULT) -> np.ndarray:
    """The "yaafe-compatible" filterbank of Schlüter & Grill, [n_fft_bins, n_mels] float32.

    Differs from librosa's: triangle slopes are divided by bin counts, not Hz, and each band is
    normalised to unit sum. Only the first `fe.n_linear_bins` rows are non-zero.
    """
    n_bins = fe.n_fft_bins
    mel_lo, mel_hi = 1127.0 * np.log1p(np.array([fe.fmin, fe.fmax]) / 700.0)
    peaks_hz = 700.0 * np.expm1(np.linspace(mel_lo, mel_hi, fe.n_mels + 2) / 1127.0)
    freqs = np.linspace(0.0, fe.sample_rate / 2.0, n_bins)
    peaks_bin = np.searchsorted(freqs, peaks_hz)
    left_hz, right_hz = peaks_hz[:-2], peaks_hz[2:]
    left, top, right = peaks_bin[:-2], peaks_bin[1:-1], peaks_bin[2:]
    k = np.arange(n_bins)[:, None]
    f = freqs[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k >= left) & (k < top), (f - left_hz) / (top - left), 0.0)
        falling = np.where((k >= top) & (k < right), (right_hz - f) / (right - top), 0.0)
    bank = rising + falling
    bank /= bank.sum(axis=0, keepdims=True)
    return bank.astype(np.float32)


def _symmetric_hann(length, dtype=tf.float32):
    return tf.signal.hann_window(length, periodic=False, dtype=dtype)


def stft_magnitude(waveform: tf.Tensor, fe: FrontEnd = DEFAULT) -> tf.Tensor:
    """[..., samples] float32 → [..., frames, n_fft_bins]; frames = 1 + (L − 1024) // 315."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    spec = tf.signal.stft(waveform, frame_length=fe.frame_len, frame_step=fe.hop,
                          fft_length=fe.frame_len, window_fn=_symmetric_hann, pad_end=False)
    return tf.abs(spec)


def linear_to_log_mel(magnitude: tf.Tensor, fe: FrontEnd = DEFAULT) -> tf.Tensor:
    """[..., frames, bins] magnitude → [..., frames, n_mels] log-mel.

    `bins` may be the full 513 or the first `fe.n_linear_bins` (all the filterbank uses).
    """
    magnitude = tf.convert_to_tensor(magnitude, tf.float32)
    bank = mel_matrix(fe)
    bins = magnitude.shape[-1]
    if bins not in (bank.shape[0], fe.n_linear_bins):
        raise ValueError(f"expected {bank.shape[0]} or {fe.n_linear_bins} bins, got {bins}")
    mel = tf.tensordot(magnitude, tf.constant(bank[:bins]), axes=[[-1], [0]])
    return tf.math.log(tf.maximum(mel, fe.log_floor))


def log_mel(waveform, fe: FrontEnd = DEFAULT) -> tf.Tensor:
    """Mono float32 waveform at fe.sample_rate → [frames, n_mels] float32 log-mel."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    return linear_to_log_mel(stft_magnitude(waveform, fe)[..., :fe.n_linear_bins], fe)


def num_frames(num_samples: int, fe: FrontEnd = DEFAULT) -> int:
    if num_samples < fe.frame_len:
        return 0
    return 1 + (num_samples - fe.frame_len) // fe.hop


class Standardiser:
    """Per-band (x − mean_b) / std_b, statistics over all training frames with ddof=1."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError("mean and std must be equal-length vectors")
        if not np.all(np.isfinite(self.std)) or np.any(self.std <= 0):
            raise ValueError("std must be finite and positive in every band")

    def __call__(self, x):
        """Standardise [..., frames, n_mels]."""
        return (tf.convert_to_tensor(x, tf.float32) - self.mean) / self.std

    def invert(self, x):
        return tf.convert_to_tensor(x, tf.float32) * self.std + self.mean

    def save(self, path: str | Path, **extra):
        """Atomic write of the statistics as .npz (extra: e.g. frame count, fingerprint)."""
        from tf_svdx.io import atomic_path
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean, std=self.std, **extra)

    @classmethod
    def load(cls, path: str | Path) -> "Standardiser":
        with np.load(os.fspath(path), allow_pickle=False) as data:
            return cls(data["mean"], data["std"])


class RunningStats:
    """Streaming per-band mean and unbiased variance (Chan et al.), in float64."""

    def __init__(self, n_bands: int):
        self.count = 0
        self.mean = np.zeros(n_bands, np.float64)
        self.m2 = np.zeros(n_bands, np.float64)

    def update(self, frames: np.ndarray):
        frames = np.asarray(frames, np.float64)
        if len(frames):
            mean = frames.mean(axis=0)
            self.merge(len(frames), mean, ((frames - mean) ** 2).sum(axis=0))

    def merge(self, count: int, mean, m2):
        """Fold in another partition's (count, mean, sum of squared deviations)."""
        if count == 0:
            return
        delta = np.asarray(mean, np.float64) - self.mean
        total = self.count + count
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + np.asarray(m2, np.float64) + delta ** 2 * self.count * count / total
        self.count = total

    def standardiser(self) -> Standardiser:
        if self.count < 2:
            raise ValueError("need at least two frames for an unbiased standard deviation")
        std = np.sqrt(self.m2 / (self.count - 1))
        return Standardiser(self.mean, np.maximum(std, 1e-6))
