"""The front end against independent numpy/librosa references on real audio (SPEC §1)."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx import features
from tf_svdx.config import FrontEnd

FE = FrontEnd()


def reference_mel_matrix(sr=22050, frame_len=1024, n_bands=80, fmin=27.5, fmax=8000.0):
    """A plain, loop-based transcription of SPEC §1's construction."""
    n_bins = frame_len // 2 + 1
    bank = np.zeros((n_bins, n_bands))
    mel_lo = 1127 * np.log1p(fmin / 700.0)
    mel_hi = 1127 * np.log1p(fmax / 700.0)
    peaks_mel = mel_lo + np.arange(n_bands + 2) * (mel_hi - mel_lo) / (n_bands + 1)
    peaks_hz = 700 * (np.exp(peaks_mel / 1127) - 1)
    freqs = np.linspace(0, sr / 2, n_bins)
    peaks_bin = np.searchsorted(freqs, peaks_hz)
    for b in range(n_bands):
        left_hz, top_hz, right_hz = peaks_hz[b:b + 3]
        left, top, right = peaks_bin[b:b + 3]
        for k in range(left, top):
            bank[k, b] = (freqs[k] - left_hz) / (top - left)
        for k in range(top, right):
            bank[k, b] = (right_hz - freqs[k]) / (right - top)
        bank[left:right, b] /= bank[left:right, b].sum()
    return bank


def reference_log_mel(wave):
    mag = np.abs(librosa.stft(wave, n_fft=1024, hop_length=315, window=np.hanning(1024),
                              center=False)).T
    return np.log(np.maximum(mag @ reference_mel_matrix(), 1e-7))


def test_mel_matrix_matches_transcription():
    ours = features.mel_matrix(FE)
    ref = reference_mel_matrix()
    assert ours.shape == (513, 80) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    assert np.flatnonzero(ours.sum(axis=1)).max() == FE.n_linear_bins - 1 == 371
    np.testing.assert_allclose(ours.sum(axis=0), 1.0, atol=1e-6)


def test_mel_matrix_is_not_librosas():
    lib = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=27.5, fmax=8000).T
    assert np.abs(lib / lib.sum(0) - features.mel_matrix(FE)).max() > 0.05


def test_stft_magnitude_matches_librosa_on_real_audio(real_clip):
    ref = np.abs(librosa.stft(real_clip, n_fft=1024, hop_length=315, window=np.hanning(1024),
                              center=False)).T
    ours = features.stft_magnitude(real_clip).numpy()
    assert ours.shape == ref.shape == (features.num_frames(len(real_clip)), 513)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


def test_log_mel_matches_reference_on_real_audio(real_clip):
    ref = reference_log_mel(real_clip)
    ours = features.log_mel(real_clip).numpy()
    assert ours.shape == ref.shape and ours.dtype == np.float32
    above = ref > np.log(1e-7) + 1e-3
    assert above.mean() > 0.5
    np.testing.assert_allclose(ours[above], ref[above], atol=1e-3, rtol=0)
    assert ours.min() >= np.float32(np.log(1e-7))


def test_log_mel_is_a_core_tf_graph():
    """The front end must trace into a plain graph (no tfio/py_function), as serving needs."""
    fn = tf.function(features.log_mel, input_signature=[tf.TensorSpec([None], tf.float32)])
    graph = fn.get_concrete_function().graph
    ops = {op.type for op in graph.get_operations()}
    assert "PyFunc" not in ops and "EagerPyFunc" not in ops
    assert not any(t.startswith("IO>") for t in ops)
    out = fn(tf.zeros([22050]))
    assert out.shape == (1 + (22050 - 1024) // 315, 80)
    np.testing.assert_allclose(out.numpy(), np.log(1e-7), rtol=1e-6)


@pytest.mark.parametrize("n,expected", [(1023, 0), (1024, 1), (1024 + 314, 1), (1024 + 315, 2)])
def test_frame_count(n, expected):
    assert features.num_frames(n) == expected
    assert features.stft_magnitude(np.zeros(n, np.float32)).shape[0] == expected


def test_running_stats_match_numpy_ddof1():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3, 2, size=(n, 80)) for n in (5, 1, 300, 17)]
    stats = features.RunningStats(80)
    for p in parts[:2]:
        stats.update(p)
    other = features.RunningStats(80)
    for p in parts[2:]:
        other.update(p)
    stats.merge(other.count, other.mean, other.m2)
    everything = np.concatenate(parts)
    std = stats.standardiser()
    np.testing.assert_allclose(std.mean, everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std, everything.std(0, ddof=1), rtol=1e-5)


def test_standardiser_round_trip(tmp_path):
    std = features.Standardiser(np.arange(80), np.linspace(1, 2, 80))
    std.save(tmp_path / "s.npz", count=7)
    again = features.Standardiser.load(tmp_path / "s.npz")
    x = np.random.default_rng(1).normal(size=(3, 115, 80)).astype(np.float32)
    np.testing.assert_allclose(again.invert(again(x)).numpy(), x, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="positive"):
        features.Standardiser(np.zeros(80), np.zeros(80))
