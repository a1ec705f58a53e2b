"""Auralisation (SPEC §7): filterbank pseudo-inverse + Griffin-Lim in core TF, on real audio."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx.audio import load
from tf_svdx.audio.auralise import auralise, griffin_lim, mel_pinv, mel_to_linear
from tf_svdx.config import FrontEnd
from tf_svdx.features import log_mel, mel_matrix, stft_magnitude

FE = FrontEnd()


@pytest.fixture(scope="module")
def clip(tiny_corpus):
    """2.5 s of real rendered music, through the package's own loader."""
    path = sorted((tiny_corpus / "audio").glob("*.flac"))[0]
    return load(path)[: int(2.5 * FE.sample_rate)]


def _spectral_convergence(wave, magnitude):
    return float(np.linalg.norm(stft_magnitude(wave).numpy() - magnitude)
                 / np.linalg.norm(magnitude))


def test_pseudo_inverse_inverts_the_filterbank():
    pinv = mel_pinv(FE)
    assert pinv.shape == (80, 372)
    np.testing.assert_allclose(pinv @ mel_matrix(FE)[:372], np.eye(80), atol=1e-4)
    linear = mel_to_linear(np.zeros((3, 80), np.float32)).numpy()
    assert linear.shape == (3, 513) and (linear >= 0).all() and not linear[:, 372:].any()


def test_griffin_lim_matches_librosa_on_real_audio(clip):
    magnitude = stft_magnitude(clip).numpy()
    ours = griffin_lim(magnitude, iterations=100).numpy()
    # Same algorithm and settings: zero initial phase (init=None), momentum 0.99 (both defaults
    # here), symmetric Hann, no centring; librosa's istft divides by the true window overlap.
    reference = librosa.griffinlim(magnitude.T, n_iter=100, hop_length=FE.hop,
                                   win_length=FE.frame_len, n_fft=FE.frame_len,
                                   window=np.hanning(FE.frame_len), center=False,
                                   momentum=0.99, init=None)
    assert ours.shape == reference.shape == ((len(magnitude) - 1) * FE.hop + FE.frame_len,)
    ours_sc = _spectral_convergence(ours, magnitude)
    reference_sc = _spectral_convergence(reference, magnitude)
    assert ours_sc <= reference_sc * 1.02 + 1e-3, (ours_sc, reference_sc)  # measured .0395/.0394
    assert ours_sc < 0.08


def test_round_trip_through_log_mel_keeps_the_spectrogram(clip):
    mel = log_mel(clip).numpy()
    wave = auralise(mel).numpy()
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.abs(wave).max() == pytest.approx(1.0)
    again = log_mel(wave).numpy()
    assert again.shape == mel.shape
    # Peak normalisation shifts every log-mel value by one constant; take it out, then compare
    # where the input is above the floor (in nats: 0.23 ≈ 1 dB).
    above = mel > np.log(FE.log_floor) + 3
    diff = again - mel
    diff -= np.median(diff[above])
    error = np.abs(diff[above]).mean()
    assert above.mean() > 0.5 and error < 0.5, error  # measured ≈ 0.28


def test_batches_and_silence():
    rng = np.random.default_rng(0)
    mels = (rng.standard_normal((2, 12, 80)) - 6).astype(np.float32)
    batch = auralise(mels, iterations=3).numpy()
    assert batch.shape == (2, 11 * FE.hop + FE.frame_len)
    for i in range(2):
        np.testing.assert_allclose(batch[i], auralise(mels[i], iterations=3).numpy(), atol=1e-5)
    np.testing.assert_array_equal(auralise(np.full((12, 80), -np.inf, np.float32), 2).numpy(), 0)


def test_traces_into_a_core_tf_graph_with_dynamic_frames():
    fn = tf.function(lambda m: auralise(m, iterations=4),
                     input_signature=[tf.TensorSpec([None, 80], tf.float32)])
    concrete = fn.get_concrete_function()
    graph = concrete.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    ops |= {node.op for f in graph.library.function for node in f.node_def}
    assert "While" in ops or "StatelessWhile" in ops  # iterations as a loop, not unrolled
    assert not {op for op in ops if "PyFunc" in op or op.startswith("IO>")}, ops
    for frames in (4, 9):
        assert concrete(tf.zeros([frames, 80])).shape == ((frames - 1) * FE.hop + FE.frame_len,)


def test_edges_do_not_spike_and_set_the_level():
    """Excerpt-length renderings (what the GAN monitor and explanations play): the peak that
    normalisation scales to must be in the signal, not a spike where the window tails meet."""
    rng = np.random.default_rng(0)
    spec = (rng.normal(size=(4, 115, 80)) - 6).astype(np.float32)
    waves = auralise(spec).numpy()
    edge = 300
    for w in waves:
        interior = np.abs(w[edge:-edge]).max()
        assert np.abs(w[:edge]).max() <= 2 * interior and np.abs(w[-edge:]).max() <= 2 * interior
        assert np.sqrt(np.mean(w ** 2)) > 0.05  # not a lone spike over near-silence
