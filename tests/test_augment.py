"""SPEC §3 train-time augmentation: tf_svdx.data.augment against scipy / numpy references."""

import dataclasses
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf

from tf_svdx.config import Augment, FrontEnd
from tf_svdx.data import augment as aug

FE = FrontEnd()
CFG = Augment()
SRC, OUT, BINS = CFG.source_frames, FE.excerpt_frames, FE.n_linear_bins  # 164, 115, 372


def _random_excerpt(seed=0, frames=SRC, bins=BINS):
    return np.random.default_rng(seed).random((frames, bins)).astype(np.float32)


def _scipy_ref(x, stretch, shift, out_frames, mode="constant"):
    x = np.asarray(x, np.float64)
    offset = [x.shape[0] // 2 - (out_frames // 2) / stretch, 0.0]
    return ndi.affine_transform(x, [1.0 / stretch, 1.0 / shift], offset=offset,
                                output_shape=(out_frames, x.shape[1]), order=1, mode=mode,
                                cval=0.0)


# ---------------------------------------------------------------------------- stretch / shift

@pytest.mark.parametrize("frames,out_frames", [(SRC, OUT), (165, OUT), (120, 64)])
def test_stretch_shift_matches_scipy(frames, out_frames):
    x = _random_excerpt(1, frames)
    params = [(1.0, 1.0), (0.7, 1.3), (1.3, 0.7), (0.5, 1.0), (0.83, 1.21), (1.17, 0.93),
              (2.0, 0.5), (1.0, 2.0)]
    for stretch, shift in params:
        got = aug.stretch_shift(x, stretch, shift, out_frames).numpy()
        ref = _scipy_ref(x, stretch, shift, out_frames)
        assert got.shape == (out_frames, BINS)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"{stretch}, {shift}")


def test_stretch_shift_float32_parameters_match_scipy():
    # parameters as float32 tensors (what sample_params gives): compare at the same values
    x = _random_excerpt(2)
    for stretch, shift in [(0.7123, 1.2871), (1.2999, 0.7001)]:
        s32, h32 = np.float32(stretch), np.float32(shift)
        got = aug.stretch_shift(x, tf.constant(s32), tf.constant(h32), OUT).numpy()
        np.testing.assert_allclose(got, _scipy_ref(x, float(s32), float(h32), OUT), atol=1e-5)


def test_identity_is_exact_centre_crop():
    for frames in (SRC, 165, OUT):
        x = _random_excerpt(3, frames)
        start = frames // 2 - OUT // 2
        got = aug.stretch_shift(x, 1.0, 1.0, OUT).numpy()
        np.testing.assert_array_equal(got, x[start:start + OUT])
        np.testing.assert_array_equal(aug.centre_crop(x, OUT).numpy(), x[start:start + OUT])
    assert SRC // 2 - OUT // 2 == 25  # the label frame (index src//2) lands on index out//2


def test_shift_two_moves_bin_50_to_100():
    x = np.zeros((SRC, BINS), np.float32)
    x[:, 50] = 1.0
    y = aug.stretch_shift(x, 1.0, 2.0, OUT).numpy()
    assert np.all(np.argmax(y, axis=1) == 100)
    np.testing.assert_array_equal(y[:, 100], 1.0)
    np.testing.assert_allclose(y[:, 99], 0.5)  # linear interpolation's neighbours
    np.testing.assert_allclose(y[:, 101], 0.5)
    assert np.all(y[:, :99] == 0) and np.all(y[:, 102:] == 0)


def test_stretch_slows_down_about_the_centre():
    x = np.zeros((SRC, BINS), np.float32)
    x[SRC // 2 + 10, :] = 1.0  # 10 frames after the centre
    y = aug.stretch_shift(x, 2.0, 1.0, OUT).numpy()
    assert np.argmax(y[:, 0]) == OUT // 2 + 20  # twice as slow: 20 frames after the centre
    x[:] = 0.0
    x[SRC // 2, :] = 1.0  # the centre frame stays put for any stretch
    for stretch in (0.7, 0.9, 1.3):
        y = aug.stretch_shift(x, stretch, 1.0, OUT).numpy()
        assert y[OUT // 2, 0] == 1.0


def test_pitch_down_leaves_top_bins_zero():
    x = _random_excerpt(4) + 0.1
    shift = 0.7
    y = aug.stretch_shift(x, 1.0, shift, OUT).numpy()
    first_zero = math.floor((BINS - 1) * shift) + 1  # source bin k/shift > 371
    assert first_zero == 260
    assert np.all(y[:, first_zero:] == 0)
    assert np.all(y[:, :first_zero] > 0)


def test_time_mode_nearest_repeats_edge_frames():
    x = _random_excerpt(5, 164)
    # with f0k's 164 frames, stretch 0.7 reads 0.43 frames past the last source frame
    const = aug.stretch_shift(x, 0.7, 1.0, OUT).numpy()
    assert np.all(const[-1] == 0)
    near = aug.stretch_shift(x, 0.7, 1.0, OUT, time_mode="nearest").numpy()
    assert np.all(near[-1] > 0)
    # = scipy on a source whose edge frames are repeated (offset moves by the padding)
    for stretch, shift in [(0.7, 1.3), (0.5, 0.8), (1.1, 1.0)]:
        got = aug.stretch_shift(x, stretch, shift, OUT, time_mode="nearest").numpy()
        padded = np.pad(x, [(40, 40), (0, 0)], mode="edge")
        ref = ndi.affine_transform(
            padded.astype(np.float64), [1 / stretch, 1 / shift],
            offset=[164 // 2 + 40 - (OUT // 2) / stretch, 0], output_shape=(OUT, BINS),
            order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    # inside the source both modes agree exactly: always so for the default 165 frames
    assert SRC // 2 - (OUT // 2) / (1 - CFG.max_stretch) >= 0
    assert SRC // 2 + (OUT // 2) / (1 - CFG.max_stretch) <= SRC - 1
    x = _random_excerpt(5)
    for stretch in (0.7, 0.9):
        np.testing.assert_array_equal(
            aug.stretch_shift(x, stretch, 1.1, OUT, time_mode="nearest").numpy(),
            aug.stretch_shift(x, stretch, 1.1, OUT).numpy())
    with pytest.raises(ValueError):
        aug.stretch_shift(x, 1.0, 1.0, OUT, time_mode="reflect")


# ---------------------------------------------------------------------------- random filter

def _f0k_filter_db(strength, centre, width, bins=BINS, fmax=FE.fmax):
    """numpy transcription of f0k's apply_random_filters for one example (gain in dB)."""
    std = 2 ** ((centre + width) / 12) - 2 ** (centre / 12)
    mean = 2 ** (centre / 12)
    mean, std = mean * bins / fmax, std * bins / fmax
    return strength * np.exp(np.square((np.arange(bins) - mean) / std) * -.5)


def test_filter_strength_zero_is_identity():
    x = _random_excerpt(6, OUT)
    np.testing.assert_array_equal(aug.random_filter(x, 0.0, 100.0, 5.0, FE).numpy(), x)


def test_filter_matches_f0k():
    x = _random_excerpt(7, OUT)
    for strength, centre, width in [(10.0, 100.0, 5.0), (-7.5, 130.0, 2.0), (3.0, 150.0, 9.0),
                                    (-10.0, 90.0, -1.5)]:
        got = aug.random_filter(x, strength, centre, width, FE).numpy()
        ref = x * 10 ** (_f0k_filter_db(strength, centre, width) / 20)
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=0)


def test_filter_peak_gain_is_strength_at_centre_bin():
    x = np.ones((OUT, BINS), np.float32)
    k = 120
    centre = 12 * math.log2(k * FE.fmax / FE.n_linear_bins)  # mean_bin exactly k
    for strength in (10.0, -10.0, 4.0):
        y = aug.random_filter(x, strength, centre, 5.0, FE).numpy()
        gain_db = 20 * np.log10(y[0])
        assert np.argmax(np.abs(gain_db)) == k
        assert gain_db[k] == pytest.approx(strength, abs=1e-4)
        np.testing.assert_array_equal(y[0], y[-1])  # same gain in every frame


def test_filter_finite_for_extreme_params():
    x = _random_excerpt(8, OUT)
    k = 100
    centre_k = 12 * math.log2(k * FE.fmax / FE.n_linear_bins)
    for strength in (-100.0, 100.0):
        for centre in (-1e4, -100.0, 0.0, centre_k, 1e3, 1e4):
            for width in (0.0, -0.0, 1e-12, -1e-12, -3.0, -1e6, 1e6, 50.0):
                y = aug.random_filter(x, strength, centre, width, FE).numpy()
                assert np.all(np.isfinite(y)), (strength, centre, width)
    # width 0 at an exact-bin centre (0/0 without the floor) gives the full peak there
    y = aug.random_filter(np.ones((1, BINS), np.float32), 10.0, centre_k, 0.0, FE).numpy()
    assert 20 * np.log10(y[0, k]) == pytest.approx(10.0, abs=1e-4)


def test_filter_negative_width_is_narrower_like_f0k():
    x = np.ones((1, BINS), np.float32)
    pos = aug.random_filter(x, 10.0, 110.0, 4.0, FE).numpy()
    neg = aug.random_filter(x, 10.0, 110.0, -4.0, FE).numpy()
    assert np.sum(neg > 1.01) < np.sum(pos > 1.01)


# ---------------------------------------------------------------------------- parameters

def test_sample_params_ranges_and_determinism():
    seeds = tf.random.experimental.stateless_split(tf.constant([7, 11], tf.int64), 500)
    p = {k: v.numpy() for k, v in aug.sample_params_batch(seeds, CFG).items()}
    assert p["stretch"].min() >= 0.7 and p["stretch"].max() <= 1.3
    assert p["shift"].min() >= 0.7 and p["shift"].max() <= 1.3
    assert np.abs(p["strength_db"]).max() <= 10.0
    lo, hi = 12 * math.log2(150), 12 * math.log2(8000)
    assert p["centre_semitone"].min() >= lo and p["centre_semitone"].max() <= hi
    assert p["centre_semitone"].max() - p["centre_semitone"].min() > 0.9 * (hi - lo)
    assert abs(p["width_semitones"].mean() - 5.0) < 0.3
    assert abs(p["width_semitones"].std() - 2.0) < 0.3
    for key in ("stretch", "shift", "strength_db"):  # the draws are not all alike
        assert np.std(p[key]) > 0.1
    assert abs(np.corrcoef(p["stretch"], p["shift"])[0, 1]) < 0.15
    # the batch version equals the single one; int32 and int64 seeds agree
    one = aug.sample_params(seeds[3], CFG)
    for key in one:
        assert one[key].shape == ()
        assert one[key].numpy() == p[key][3]
    small32 = aug.sample_params(tf.constant([12, -5], tf.int32), CFG)
    small64 = aug.sample_params(tf.constant([12, -5], tf.int64), CFG)
    assert all(small32[k].numpy() == small64[k].numpy() for k in small32)
    with pytest.raises(TypeError):
        aug.sample_params(tf.constant([1.0, 2.0]), CFG)


def test_sample_params_follow_config():
    cfg = dataclasses.replace(CFG, max_stretch=0.1, max_shift=0.0, filter_max_db=2.0,
                              filter_width_std=0.0, filter_width_semitones=3.0)
    seeds = tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), 100)
    p = {k: v.numpy() for k, v in aug.sample_params_batch(seeds, cfg).items()}
    assert np.all(np.abs(p["stretch"] - 1) <= 0.1) and np.all(p["shift"] == 1.0)
    assert np.all(np.abs(p["strength_db"]) <= 2.0) and np.all(p["width_semitones"] == 3.0)


# ---------------------------------------------------------------------------- full augmentation

def test_augment_excerpt_deterministic_and_seed_dependent():
    x = _random_excerpt(9)
    a = aug.augment_excerpt(x, [3, 4], CFG, FE).numpy()
    b = aug.augment_excerpt(x, tf.constant([3, 4], tf.int64), CFG, FE).numpy()
    c = aug.augment_excerpt(x, [3, 5], CFG, FE).numpy()
    assert a.shape == (OUT, BINS) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.all(a >= 0)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)


def test_augment_excerpt_composes_stretch_shift_and_filter():
    x = _random_excerpt(10)
    seed = tf.constant([5, 6], tf.int64)
    p = aug.sample_params(seed, CFG)
    y = aug.stretch_shift(x, p["stretch"], p["shift"], OUT, time_mode="nearest")
    y = aug.random_filter(y, p["strength_db"], p["centre_semitone"], p["width_semitones"], FE)
    # the filter gains are folded into the interpolation weights: equal to float32 rounding
    np.testing.assert_allclose(aug.augment_excerpt(x, seed, CFG, FE).numpy(), y.numpy(),
                               rtol=1e-5, atol=0)


def test_disabled_is_centre_crop():
    x = _random_excerpt(11)
    off = dataclasses.replace(CFG, enabled=False)
    start = SRC // 2 - OUT // 2
    np.testing.assert_array_equal(aug.augment_excerpt(x, [1, 2], off, FE).numpy(),
                                  x[start:start + OUT])
    xs = np.stack([x, x + 1])
    np.testing.assert_array_equal(aug.augment_batch(xs, [[1, 2], [3, 4]], off, FE).numpy(),
                                  xs[:, start:start + OUT])
    with pytest.raises(ValueError):
        aug.augment_excerpt(x[:100], [1, 2], off, FE)


def test_augment_batch_equals_single():
    xs = np.stack([_random_excerpt(20 + i) for i in range(6)])
    seeds = tf.random.experimental.stateless_split(tf.constant([9, 9], tf.int64), 6)
    batch = aug.augment_batch(xs, seeds, CFG, FE).numpy()
    assert batch.shape == (6, OUT, BINS)
    assert batch.tobytes() == aug.augment_batch(xs, seeds, CFG, FE).numpy().tobytes()
    for i in range(6):
        single = aug.augment_excerpt(xs[i], seeds[i], CFG, FE).numpy()
        np.testing.assert_allclose(batch[i], single, rtol=1e-5, atol=0)


def test_graph_mode_static_shapes():
    single = tf.function(lambda x, s: aug.augment_excerpt(x, s, CFG, FE), input_signature=[
        tf.TensorSpec([SRC, BINS], tf.float32), tf.TensorSpec([2], tf.int64)])
    dyn = tf.function(lambda x, s: aug.augment_excerpt(x, s, CFG, FE), input_signature=[
        tf.TensorSpec([None, BINS], tf.float32), tf.TensorSpec([2], tf.int64)])
    batch = tf.function(lambda x, s: aug.augment_batch(x, s, CFG, FE), input_signature=[
        tf.TensorSpec([None, SRC, BINS], tf.float32), tf.TensorSpec([None, 2], tf.int64)])
    assert single.get_concrete_function().structured_outputs.shape.as_list() == [OUT, BINS]
    assert dyn.get_concrete_function().structured_outputs.shape.as_list() == [OUT, BINS]
    assert batch.get_concrete_function().structured_outputs.shape.as_list() == [None, OUT, BINS]
    x = _random_excerpt(12)
    seed = tf.constant([1, 7], tf.int64)
    eager = aug.augment_excerpt(x, seed, CFG, FE).numpy()
    traced = single(x, seed).numpy()
    assert traced.tobytes() == single(x, seed).numpy().tobytes()
    # eager and traced may differ in the last bit (grappler folds the filter's exp)
    np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=0)
    np.testing.assert_allclose(dyn(x, seed).numpy(), eager, rtol=1e-5, atol=0)
    np.testing.assert_allclose(batch(x[None], seed[None]).numpy()[0], eager, rtol=1e-5, atol=0)


def test_dataset_map_parallel_deterministic():
    n = 8
    xs = np.stack([_random_excerpt(30 + i) for i in range(n)])
    seeds = tf.random.experimental.stateless_split(tf.constant([4, 2], tf.int64), n)

    def run():
        ds = tf.data.Dataset.from_tensor_slices((xs, seeds))
        ds = ds.map(lambda x, s: aug.augment_excerpt(x, s, CFG, FE), num_parallel_calls=2,
                    deterministic=True)
        assert ds.element_spec.shape.as_list() == [OUT, BINS]
        return np.stack(list(ds.as_numpy_iterator()))

    first, second = run(), run()
    assert first.tobytes() == second.tobytes()
    for i in (0, n - 1):
        np.testing.assert_allclose(first[i], aug.augment_excerpt(xs[i], seeds[i]).numpy(),
                                   rtol=1e-5, atol=0)
    # and the batched form after .batch()
    ds = tf.data.Dataset.from_tensor_slices((xs, seeds)).batch(4).map(
        lambda x, s: aug.augment_batch(x, s, CFG, FE), num_parallel_calls=2)
    assert ds.element_spec.shape.as_list() == [None, OUT, BINS]
    np.testing.assert_allclose(np.concatenate(list(ds.as_numpy_iterator())), first, rtol=1e-5,
                               atol=0)
