"""Dense whole-track prediction (SPEC §3 prediction): the fully-convolutional twin must agree
with explicit per-frame excerpts, chunk without changing the result, and trace for serving."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx import audio, features
from tf_svdx.config import Detector, FrontEnd
from tf_svdx.data.pipeline import whole_track
from tf_svdx.data.records import TrackFeatures
from tf_svdx.models import (build_dense, build_detector, copy_weights, dense_logits,
                            predict_track, probabilities, sliding_window_logits)
from tf_svdx.models.dense import context_frames

FE = FrontEnd()
TOLERANCE = 1e-4  # max abs difference on probabilities (issue 4)


@pytest.fixture(scope="module")
def padded_track(tiny_corpus) -> np.ndarray:
    """A real track (12.6 s, 879 frames), standardised by its own statistics and padded."""
    path = sorted((Path(tiny_corpus) / "audio").glob("*.flac"))[0]
    log_mel = features.log_mel(audio.load(path)).numpy()
    standardiser = features.Standardiser(log_mel.mean(0), log_mel.std(0, ddof=1))
    n = len(log_mel)
    track = TrackFeatures("t", "test", log_mel, np.zeros((n, FE.n_linear_bins), np.float16),
                          np.zeros(n, np.uint8))
    return whole_track(track, FE, standardiser)


def _detector(config: Detector, padded_track, seed=0):
    """A random detector whose fc9 is rescaled to give logits of mean 0 and std 2 on the track,
    so probabilities span (0, 1) and a 1e-4 agreement is a real constraint (random init alone
    gives logits that barely move)."""
    keras.utils.set_random_seed(seed)
    model = build_detector(config)
    logits = dense_logits(build_dense(model), padded_track).reshape(len(padded_track) - 114, -1)
    fc9 = model.get_layer("fc9")
    kernel, bias = fc9.get_weights()
    scale = 2.0 / logits.std(axis=0)
    fc9.set_weights([kernel * scale, (bias - logits.mean(axis=0)) * scale])
    return model


def _assert_agree(dense_probs, reference_probs):
    assert dense_probs.shape == reference_probs.shape
    assert np.abs(dense_probs - reference_probs).max() <= TOLERANCE
    # A one-frame misalignment would be caught: neighbouring frames differ by far more.
    assert np.abs(np.diff(reference_probs, axis=0)).max() > 100 * TOLERANCE


def test_dense_matches_sliding_window_on_a_real_track(padded_track):
    detector = _detector(Detector(width=0.25), padded_track)
    dense = build_dense(detector)
    n = len(padded_track) - 114
    reference = probabilities(sliding_window_logits(detector, padded_track, batch=128))
    probs = predict_track(dense, padded_track)
    assert probs.shape == (n,) and probs.dtype == np.float32
    assert probs.std() > 0.05
    _assert_agree(probs, reference)


def test_dense_matches_sliding_window_at_full_width(padded_track):
    excerpt = padded_track[300:300 + 200 + 114]  # 200 frames of output
    detector = _detector(Detector(), excerpt)
    _assert_agree(predict_track(build_dense(detector), excerpt),
                  probabilities(sliding_window_logits(detector, excerpt)))


def test_r2_dense_gives_two_logits_per_frame(padded_track):
    detector = excerpt = padded_track[:150 + 114]
    detector = _detector(Detector(width=0.125, outputs=2), excerpt)
    dense = build_dense(detector)
    logits = dense_logits(dense, excerpt)
    reference = sliding_window_logits(detector, excerpt)
    assert logits.shape == reference.shape == (150, 2)
    _assert_agree(probabilities(logits), probabilities(reference))
    assert predict_track(dense, excerpt).shape == (150,)


@pytest.mark.parametrize("chunk_frames", [1, 97, 300])
def test_chunked_equals_one_pass(padded_track, chunk_frames):
    dense = build_dense(_detector(Detector(width=0.125), padded_track))
    one_pass = dense_logits(dense, padded_track, chunk_frames=None)
    chunked = dense_logits(dense, padded_track[:400 + 114] if chunk_frames == 1 else padded_track,
                           chunk_frames=chunk_frames)
    np.testing.assert_allclose(chunked, one_pass[:len(chunked)], rtol=1e-5, atol=1e-6)
    assert len(chunked) in (400, len(padded_track) - 114)


def test_weights_are_copied_not_shared_and_there_is_no_dropout(padded_track):
    detector = _detector(Detector(width=0.125), padded_track)
    dense = build_dense(detector)
    assert context_frames(dense) == 114
    assert dense.count_params() == detector.count_params()
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in dense.layers)
    x = tf.constant(padded_track[:300].T[None, :, :, None])
    np.testing.assert_array_equal(dense(x, training=True), dense(x, training=False))
    before = predict_track(dense, padded_track)
    fc9 = detector.get_layer("fc9")
    fc9.set_weights([-w for w in fc9.get_weights()])  # e.g. a training step
    np.testing.assert_array_equal(predict_track(dense, padded_track), before)
    copy_weights(detector, dense)
    np.testing.assert_allclose(predict_track(dense, padded_track), 1 - before, atol=1e-6)


def test_dense_model_traces_into_a_serving_signature(padded_track):
    dense = build_dense(_detector(Detector(width=0.125), padded_track))
    serve = tf.function(lambda x: dense(x, training=False),
                        input_signature=[tf.TensorSpec([1, 80, None, 1], tf.float32)])
    concrete = serve.get_concrete_function()
    assert concrete.structured_outputs.shape.as_list() == [1, None]
    for n in (1, 77):
        x = tf.constant(padded_track[:n + 114].T[None, :, :, None])
        assert serve(x).shape == (1, n)
    ops = {op.type for op in concrete.graph.get_operations()}
    assert {"Conv2D", "MaxPool"} <= ops and not any("Py" in op for op in ops)


def test_bad_tracks_are_refused(padded_track):
    dense = build_dense(_detector(Detector(width=0.125), padded_track))
    with pytest.raises(ValueError, match="more than 114 frames"):
        predict_track(dense, padded_track[:114])
    with pytest.raises(ValueError, match=r"\[frames, 80\]"):
        predict_track(dense, padded_track[:, :40])
    with pytest.raises(ValueError, match="chunk_frames"):
        predict_track(dense, padded_track, chunk_frames=0)


def test_dense_model_file_round_trips(padded_track, tmp_path):
    dense = build_dense(_detector(Detector(width=0.125), padded_track))
    dense.save(tmp_path / "dense.keras")
    again = keras.models.load_model(tmp_path / "dense.keras")
    np.testing.assert_array_equal(predict_track(again, padded_track),
                                  predict_track(dense, padded_track))
