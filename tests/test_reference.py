"""The real-data reference of FID selection: against a brute-force scan, and its cache."""

import dataclasses
import warnings

import keras
import numpy as np
import pytest

from tf_svdx import config as config_lib
from tf_svdx.config import Detector
from tf_svdx.data.pipeline import Prepared
from tf_svdx.errors import ConfigError
from tf_svdx.evaluation import TrainedDetector
from tf_svdx.explain import reference
from tf_svdx.explain.reference import (Reference, model_fingerprint, reference_key,
                                       scan_reference)
from tf_svdx.models import build_dense, build_detector, feature_model

HOP = 10


@pytest.fixture(scope="module")
def prepared(tiny_prepared):
    return Prepared(tiny_prepared)


@pytest.fixture(scope="module")
def det(prepared, tmp_path_factory):
    """A tiny detector with random (seeded) weights: the scan does not care whether it learned."""
    keras.utils.set_random_seed(3)
    cfg = config_lib.Config(detector=Detector(width=0.125))
    model = build_detector(cfg.detector, cfg.frontend)
    return TrainedDetector(tmp_path_factory.mktemp("detector"), cfg, model, build_dense(model),
                           prepared.standardiser, {})


def brute_force(det, prepared, split, hop, target, unit, layer):
    """Every hop-th frame's excerpt sliced out explicitly, run with model.predict."""
    fe = det.frontend
    pad = fe.excerpt_pad
    floor = np.full((pad, fe.n_mels), np.log(fe.log_floor), np.float32)
    mean, std = det.standardiser.mean, det.standardiser.std
    xs, index = [], []
    for track_no, track in enumerate(prepared.tracks(split)):
        padded = (np.concatenate([floor, track.log_mel, floor]) - mean) / std
        for c in range(0, track.n_frames, hop):
            window = padded[c:c + fe.excerpt_frames]
            assert window.shape == (fe.excerpt_frames, fe.n_mels)
            np.testing.assert_allclose(window[pad], (track.log_mel[c] - mean) / std)
            xs.append(window.T[..., None])  # (mels, frames, 1): mel bands on axis 1
            index.append((track_no, c))
    out = feature_model(det.model, [target, layer]).predict(np.stack(xs), batch_size=64,
                                                             verbose=0)
    t = out[target]
    t = t[..., unit] if t.ndim == 2 else t[..., unit].mean(axis=(1, 2))
    return t.astype(np.float64), out[layer].reshape(len(xs), -1), np.array(index)


@pytest.fixture(scope="module")
def default_scan(det, prepared):
    return scan_reference(det, prepared, n=20, hop=HOP, batch=37)


def assert_matches_brute_force(ref, brute):
    values, layer, index = brute
    n = ref.n
    assert ref.count == len(values)
    order = np.argsort(-values, kind="stable")
    np.testing.assert_allclose(ref.top_target, values[order[:n]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.bottom_target, values[order[::-1][:n]], rtol=1e-5, atol=1e-6)
    rows = {tuple(i): k for k, i in enumerate(index)}
    for acts, idx, target in ((ref.top_layer, ref.top_index, ref.top_target),
                              (ref.bottom_layer, ref.bottom_index, ref.bottom_target)):
        picked = [rows[tuple(i)] for i in idx]  # the recorded (track, centre) are real excerpts
        np.testing.assert_allclose(acts, layer[picked], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(target, values[picked], rtol=1e-5, atol=1e-6)
    sorted_values = values[order]
    if sorted_values[n - 1] - sorted_values[n] > 1e-4:  # no near-tie at the boundary
        assert {tuple(i) for i in ref.top_index} == {tuple(i) for i in index[order[:n]]}


def test_top_and_bottom_match_brute_force(det, prepared, default_scan):
    ref = default_scan
    assert (ref.target, ref.unit, ref.layer, ref.n, ref.split) == ("fc9", 0, "fc8", 20, "train")
    d = det.model.get_layer("fc8").output.shape[-1]
    assert ref.top_target.shape == ref.bottom_target.shape == (20,)
    assert ref.top_layer.shape == ref.bottom_layer.shape == (20, d)
    assert ref.top_index.shape == ref.bottom_index.shape == (20, 2)
    assert ref.top_target.dtype == ref.top_layer.dtype == np.float64
    assert ref.top_target.min() >= ref.bottom_target.max()
    assert np.all(np.diff(ref.top_target) <= 0) and np.all(np.diff(ref.bottom_target) >= 0)
    assert np.ptp(ref.top_target) > 0  # a random detector still separates excerpts
    assert np.all(ref.top_index[:, 1] % HOP == 0)
    assert_matches_brute_force(ref, brute_force(det, prepared, "train", HOP, "fc9", 0, "fc8"))
    assert ref.for_direction("maximise") == (ref.top_target, ref.top_layer)
    assert ref.for_direction("minimise") == (ref.bottom_target, ref.bottom_layer)
    with pytest.raises(ValueError, match="maximise, minimise"):
        ref.for_direction("max")


def test_batch_size_does_not_change_the_result(det, prepared, default_scan):
    other = scan_reference(det, prepared, n=20, hop=HOP, batch=256)
    np.testing.assert_array_equal(other.top_index, default_scan.top_index)
    np.testing.assert_array_equal(other.bottom_index, default_scan.bottom_index)
    np.testing.assert_allclose(other.top_layer, default_scan.top_layer, rtol=1e-5, atol=1e-6)
    assert other.fingerprint == default_scan.fingerprint


def test_conv_target(det, prepared):
    ref = scan_reference(det, prepared, target="conv4", unit=1, layer="fc8", n=8, hop=25,
                         batch=64)
    assert ref.top_target.min() >= ref.bottom_target.max()
    assert_matches_brute_force(ref, brute_force(det, prepared, "train", 25, "conv4", 1, "fc8"))
    layer = scan_reference(det, prepared, target="fc9", layer="pool2", n=4, hop=50)
    assert layer.top_layer.shape[0] == 4 and layer.top_layer.ndim == 2  # flattened [n, H·W·C]


def test_cache_written_then_loaded_without_scanning(det, prepared, tmp_path, monkeypatch):
    first = scan_reference(det, prepared, n=20, hop=HOP, cache_dir=tmp_path)
    files = list(tmp_path.glob("reference-*.npz"))
    assert [f.name for f in files] == [f"reference-{first.fingerprint}.npz"]
    assert first.fingerprint == reference_key(det, prepared, n=20, hop=HOP)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind
    mtime = files[0].stat().st_mtime_ns

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned although the cache should have been used")
    monkeypatch.setattr(reference, "_scan", no_scan)
    second = scan_reference(det, prepared, n=20, hop=HOP, cache_dir=tmp_path, batch=5)
    assert files[0].stat().st_mtime_ns == mtime
    for field in dataclasses.fields(Reference):
        a, b = getattr(first, field.name), getattr(second, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b and type(a) is type(b), field.name
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays only: no pickle needed
        assert str(z["target"]) == "fc9"
    with pytest.raises(AssertionError, match="scanned"):  # another key is a miss
        scan_reference(det, prepared, n=19, hop=HOP, cache_dir=tmp_path)


def test_corrupt_cache_is_rescanned(det, prepared, tmp_path):
    key = reference_key(det, prepared, n=5, hop=100)
    path = tmp_path / f"reference-{key}.npz"
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unusable reference cache"):
        ref = scan_reference(det, prepared, n=5, hop=100, cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = scan_reference(det, prepared, n=5, hop=100, cache_dir=tmp_path)
    np.testing.assert_array_equal(ref.top_target, again.top_target)


def test_fingerprint_and_key_follow_the_weights(det, prepared):
    model = det.model
    before, key = model_fingerprint(model), reference_key(det, prepared)
    assert len(before) == 16 and before == model_fingerprint(model)
    kernel = model.get_layer("conv3").kernel
    saved = kernel.numpy()
    try:
        changed = saved.copy()
        changed[0, 0, 0, 0] += 1e-3
        kernel.assign(changed)
        assert model_fingerprint(model) != before
        assert reference_key(det, prepared) != key
    finally:
        kernel.assign(saved)
    assert model_fingerprint(model) == before and reference_key(det, prepared) == key
    keys = {reference_key(det, prepared, **kw) for kw in
            ({}, {"n": 49}, {"hop": 5}, {"unit": 1}, {"layer": "fc7"}, {"target": "conv4"},
             {"split": "valid"})}
    assert len(keys) == 7
    shifted = dataclasses.replace(det, standardiser=type(det.standardiser)(
        det.standardiser.mean + 1, det.standardiser.std))
    assert reference_key(shifted, prepared) != key


def test_too_few_excerpts(det, prepared, monkeypatch):
    def no_scan(*args, **kwargs):
        raise AssertionError("scanned although the manifest shows the split is too small")
    with monkeypatch.context() as m:
        m.setattr(reference, "_scan", no_scan)
        with pytest.raises(ConfigError, match="fewer than n=100000"):
            scan_reference(det, prepared, n=100_000)
    tracks = prepared.manifest["splits"]["train"]["tracks"]  # hop 1000: one excerpt per track
    with pytest.raises(ConfigError, match=f"has {tracks} excerpts at hop 1000, fewer than n=8"):
        scan_reference(det, prepared, n=8, hop=1000)


def test_bad_arguments(det, prepared):
    with pytest.raises(ConfigError, match="no layer fc10"):
        scan_reference(det, prepared, target="fc10", n=2, hop=500)
    with pytest.raises(ConfigError, match="unit 1 out of range"):
        scan_reference(det, prepared, unit=1, n=2, hop=500)
    with pytest.raises(ConfigError, match="hop must be a positive integer"):
        scan_reference(det, prepared, hop=0)


def test_progress_bar(det, prepared, capsys):
    scan_reference(det, prepared, n=2, hop=500, progress=True)
    assert "reference train" in capsys.readouterr().err
