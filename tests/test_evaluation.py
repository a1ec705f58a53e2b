"""Evaluation and prediction: threshold tuning, metrics, segments, and the CLI end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf_svdx.config import FrontEnd
from tf_svdx.data import read_lab
from tf_svdx.data.pipeline import Prepared
from tf_svdx.evaluation import (TrainedDetector, evaluate, frame_segments, metrics, smooth,
                                track_probabilities, tune_threshold)

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def trained(tiny_detector_run):
    return tiny_detector_run


def test_tune_threshold_maximises_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    prob = np.clip(0.3 * labels + rng.uniform(0, 0.7, 500), 0, 1)
    t = tune_threshold(prob, labels)
    best = max(np.mean((prob >= c) == labels) for c in np.unique(prob))
    assert np.mean((prob >= t) == labels) == best
    assert tune_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 0.5


def test_metrics_by_hand():
    prob = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = metrics(prob, labels, 0.5)  # tp 2, fn 1, fp 1, tn 2
    assert m["error"] == pytest.approx(2 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(8 / 9)


def test_median_filter_removes_short_blips():
    p = np.zeros(300)
    p[100:120] = 1  # 20 frames < 56/2: removed
    p[200:280] = 1  # 80 frames: kept
    s = smooth(p)
    assert s[100:120].max() == 0 and s[210:270].min() == 1


def test_frame_segments_cover_the_file():
    fe = FrontEnd()
    active = np.zeros(700, bool)
    active[140:350] = True
    duration = (699 * fe.hop + fe.frame_len) / fe.sample_rate
    segs = frame_segments(active, duration, fe)
    assert [s[2] for s in segs] == ["nosing", "sing", "nosing"]
    assert segs[0][0] == 0 and segs[-1][1] == duration
    centres = fe.frame_times(700)
    assert segs[1][0] == pytest.approx((centres[139] + centres[140]) / 2, abs=1e-6)


def test_pitch_shift_zero_is_plain_and_shifts_change_little(trained, tiny_prepared):
    det = TrainedDetector.load(trained)
    track = next(iter(Prepared(tiny_prepared).tracks("test")))
    plain = track_probabilities(det, track)
    assert plain.shape == (track.n_frames,)
    averaged = track_probabilities(det, track, (0.0, -0.1, 0.1, -0.2, 0.2))
    assert averaged.shape == plain.shape and np.all(np.isfinite(averaged))
    assert not np.array_equal(plain, averaged)


def test_evaluate_reports_every_metric(trained, tiny_prepared):
    result = evaluate(TrainedDetector.load(trained), Prepared(tiny_prepared))
    for split in ("valid", "test"):
        assert set(result[split]) >= {"error", "precision", "recall", "specificity", "f1",
                                      "auroc", "frames"}
    assert result["valid"]["error"] <= 0.5  # tuned on it: never worse than a constant answer
    json.dumps(result)


def test_cli_evaluate_then_predict(trained, tiny_prepared, tiny_corpus, tmp_path):
    run = [sys.executable, "-m", "tf_svdx.cli"]
    out = subprocess.run(run + ["evaluate", f"--detector={trained}", f"--prepared={tiny_prepared}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "test: error" in out.stdout and (trained / "evaluation.json").exists()
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    good = tiny_corpus / "audio" / "chorale_08.flac"
    out = subprocess.run(run + ["predict", f"--detector={trained}", f"--out={tmp_path / 'p'}",
                                "--plot", str(good), str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "tuned on the validation split" in out.stdout
    assert f"skipped: {bad}" in out.stdout
    segments = read_lab(tmp_path / "p" / "chorale_08.lab")  # strict parser: valid and complete
    assert segments[0][0] == 0
    assert (tmp_path / "p" / "chorale_08.png").stat().st_size > 10_000
    out = subprocess.run(run + ["predict", f"--detector={trained}", str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "no input could be read" in out.stderr


def test_predict_averages_over_the_pitch_shifts_the_threshold_was_tuned_with(trained, tiny_corpus,
                                                                            tmp_path):
    import shutil
    from tf_svdx.evaluation import frame_probabilities
    from tf_svdx.predict import predict_file, threshold_of
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "evaluation.json").unlink(missing_ok=True)
    det = TrainedDetector.load(run)
    assert threshold_of(det) == (0.5, (0.0,), "default 0.5: run `svdx evaluate` to tune it")
    (run / "evaluation.json").write_text(json.dumps({"threshold": 0.4,
                                                     "pitch_shifts": [0.0, -0.1, 0.1]}))
    threshold, shifts, how = threshold_of(det)
    assert (threshold, shifts) == (0.4, (0.0, -0.1, 0.1)) and "+0, -0.1, +0.1" in how
    good = tiny_corpus / "audio" / "chorale_08.flac"
    log_mel, plain, _ = predict_file(det, good, threshold)
    _, averaged, segments = predict_file(det, good, threshold, shifts)
    assert averaged.shape == plain.shape == (len(log_mel),)
    assert not np.allclose(plain, averaged, atol=1e-4)
    with pytest.raises(ValueError, match="linear magnitudes"):
        frame_probabilities(det, log_mel, None, shifts)
    singles = [frame_probabilities(det, log_mel, _linear(det, good), (s,)) for s in shifts]
    np.testing.assert_allclose(averaged, smooth(np.mean(singles, axis=0)), atol=1e-6)
    assert segments[0][0] == 0


def _linear(det, path):
    from tf_svdx import audio, features
    fe = det.frontend
    return features.stft_magnitude(audio.load(path, fe.sample_rate), fe)[:, :fe.n_linear_bins].numpy()
