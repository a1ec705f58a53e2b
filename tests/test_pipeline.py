"""The tf.data pipeline: excerpt geometry, labels, determinism, augmentation, GAN mode."""

import numpy as np
import pytest
import tensorflow as tf

from tf_svdx import config as config_lib
from tf_svdx.config import Augment, FrontEnd
from tf_svdx.data.pipeline import ExcerptSource, Prepared, excerpts, training_excerpts, whole_track
from tf_svdx.data.prepare import prepare
from tf_svdx.data.records import UNLABELLED, TrackFeatures

FE = FrontEnd()


@pytest.fixture(scope="module")
def prepared(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare(config_lib.load(None, [f"prepare.corpus={tiny_corpus}", f"prepare.out={out}"]),
            progress=False)
    return Prepared(out)


def _cfg(*extra):
    return config_lib.load(None, ["pipeline.batch_size=8", *extra])


def _coded_track(track_id, n, label_fn):
    """A synthetic track whose log-mel value at frame i is i + 1000·k (k = track number)."""
    k = int(track_id[-1])
    log_mel = np.repeat((np.arange(n) + 1000 * k)[:, None], FE.n_mels, 1).astype(np.float32)
    labels = np.array([label_fn(i) for i in range(n)], np.uint8)
    linear = np.ones((n, FE.n_linear_bins), np.float16)
    return TrackFeatures(track_id, "train", log_mel, linear, labels)


def test_excerpts_are_centred_windows_labelled_by_their_centre():
    tracks = [_coded_track("t1", 300, lambda i: i % 2), _coded_track("t2", 40, lambda i: 1)]
    source = ExcerptSource(tracks, FE, pad=83, linear=False, labelled_only=True)
    batch_x, batch_y = next(iter(excerpts(source, FE, batch_size=256, seed=0)))
    x = batch_x.numpy()
    assert x.shape == (256, 80, 115, 1)
    centre = x[:, 0, 57, 0]
    for row, c, y in zip(x[:, 0, :, 0], centre, batch_y.numpy()):
        track, frame = divmod(int(c), 1000)
        n = 300 if track == 1 else 40
        expected_label = frame % 2 if track == 1 else 1
        assert y == expected_label
        inside = np.arange(frame - 57, frame + 58)
        valid = (inside >= 0) & (inside < n)
        np.testing.assert_array_equal(row[valid], inside[valid] + 1000 * track)
        assert np.all(row[~valid] == np.float32(np.log(1e-7)))  # padding is silence
    # both tracks and their edge frames get drawn
    assert {int(c) // 1000 for c in centre} == {1, 2}


def test_unlabelled_frames_are_never_centres_of_labelled_batches():
    track = _coded_track("t1", 200, lambda i: UNLABELLED if i < 100 else 0)
    source = ExcerptSource([track], FE, pad=83, linear=False, labelled_only=True)
    x, y = next(iter(excerpts(source, FE, batch_size=128, seed=3)))
    assert np.all(x.numpy()[:, 0, 57, 0] % 1000 >= 100) and np.all(y.numpy() == 0)


def test_same_seed_same_batches_and_random_access(prepared):
    a = [b[0].numpy() for b in training_excerpts(prepared, _cfg()).take(3)]
    b = [b[0].numpy() for b in training_excerpts(prepared, _cfg()).take(3)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    later = next(iter(training_excerpts(prepared, _cfg(), start_batch=2)))[0].numpy()
    np.testing.assert_array_equal(later, a[2])
    other = next(iter(training_excerpts(prepared, _cfg("seed=7"))))[0].numpy()
    assert not np.array_equal(other, a[0])


def test_parallelism_does_not_change_batches(prepared):
    one = next(iter(training_excerpts(prepared, _cfg("pipeline.parallel_calls=1"))))[0]
    four = next(iter(training_excerpts(prepared, _cfg("pipeline.parallel_calls=4"))))[0]
    np.testing.assert_array_equal(one.numpy(), four.numpy())


def test_detector_batches_are_standardised_and_augmented(prepared):
    x, y = next(iter(training_excerpts(prepared, _cfg("pipeline.batch_size=64"))))
    x = x.numpy()
    assert x.shape == (64, 80, 115, 1) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    assert abs(x.mean()) < 1.0 and 0.3 < x.std() < 3.0
    plain, plain_y = next(iter(training_excerpts(prepared, _cfg("pipeline.batch_size=64"),
                                                 augment=False)))
    np.testing.assert_array_equal(y.numpy(), plain_y.numpy())  # same centres drawn
    assert np.abs(x - plain.numpy()).mean() > 0.05


def test_augmentation_disabled_equals_plain_log_mel(prepared):
    """The augmented path with stretch = shift = 1 and no filter reproduces the stored log-mel
    up to the float16 storage of linear magnitudes."""
    cfg = _cfg("augment.max_stretch=0", "augment.max_shift=0", "augment.filter_max_db=0")
    x = next(iter(training_excerpts(prepared, cfg)))[0].numpy()
    plain = next(iter(training_excerpts(prepared, cfg, augment=False)))[0].numpy()
    assert np.abs(x - plain).max() < 0.02


def test_gan_stream_is_raw_log_mel(prepared):
    x, _ = next(iter(training_excerpts(prepared, _cfg(), augment=False, standardise=False,
                                       labelled_only=False)))
    assert x.numpy().min() >= np.float32(np.log(1e-7)) - 1e-6
    assert x.numpy().max() > 0 or x.numpy().mean() < -3  # raw scale, not standardised


def test_whole_track_iterator(prepared, tiny_corpus):
    tracks = list(prepared.tracks("train"))
    assert len(tracks) == 6 and len({t.track_id for t in tracks}) == 6
    x = whole_track(tracks[0], FE, prepared.standardiser)
    assert x.shape == (tracks[0].n_frames + 114, 80)
    with pytest.raises(Exception, match="no split 'nope'"):
        prepared.tracks("nope")


def test_augmentation_config_is_respected(prepared):
    cfg = _cfg()
    assert isinstance(cfg.augment, Augment) and cfg.augment.source_frames == 165
    ds = training_excerpts(prepared, _cfg("augment.enabled=false"))
    plain = training_excerpts(prepared, _cfg(), augment=False)
    np.testing.assert_array_equal(next(iter(ds))[0].numpy(), next(iter(plain))[0].numpy())
    assert tf.data.experimental.cardinality(ds) == tf.data.INFINITE_CARDINALITY
