"""Whole-track evaluation of a trained detector (SPEC §3): frame-wise probabilities from the dense
model, a 56-frame median filter, a threshold tuned for accuracy on the validation split, and
test-split error, precision, recall, specificity, F1 and AUROC over all frames pooled.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import keras
import numpy as np
import scipy.ndimage
import tensorflow as tf

from tf_svdx import config as config_lib
from tf_svdx import features
from tf_svdx.config import FrontEnd
from tf_svdx.data import augment
from tf_svdx.data.records import UNLABELLED, TrackFeatures
from tf_svdx.models import build_dense, build_detector, predict_track

MEDIAN_FRAMES = 56
STATS = "standardisation.npz"


@dataclasses.dataclass
class TrainedDetector:
    """A training run folder loaded for inference: model, its dense twin, standardisation."""

    folder: Path
    config: config_lib.Config
    model: keras.Model
    dense: keras.Model
    standardiser: features.Standardiser
    record: dict

    @classmethod
    def load(cls, folder: str | Path, weights: str = "best.weights.h5") -> "TrainedDetector":
        folder = Path(folder)
        record, cfg = config_lib.read_run(folder, "train-detector")
        if not (folder / weights).exists():
            weights = "final.weights.h5"
        model = build_detector(cfg.detector, cfg.frontend)
        model.load_weights(folder / weights)
        return cls(folder, cfg, model, build_dense(model),
                   features.Standardiser.load(folder / STATS), record)

    @property
    def frontend(self) -> FrontEnd:
        return self.config.frontend


def copy_standardisation(prepared_folder: Path, run_folder: Path) -> None:
    """A run carries its own statistics, so it can be used without the prepared data."""
    from tf_svdx.io import atomic_path
    with atomic_path(run_folder / STATS) as tmp:
        shutil.copyfile(prepared_folder / STATS, tmp)


def frame_probabilities(det: TrainedDetector, log_mel: np.ndarray, linear=None,
                        pitch_shifts: tuple[float, ...] = (0.0,)) -> np.ndarray:
    """P(sing) per frame of a whole track's log-mel [T, 80]; with several pitch shifts (e.g. 0,
    ±0.1, ±0.2), the mean over them.

    A shift resamples the frequency axis of the linear magnitudes `linear` [T, bins] (as in
    training augmentation), then recomputes log-mel, so shifts other than 0 need them."""
    fe = det.frontend
    pad = np.full((fe.excerpt_pad, fe.n_mels), np.log(fe.log_floor), np.float32)
    probs = []
    if linear is None and any(shift != 0 for shift in pitch_shifts):
        raise ValueError("pitch-shift averaging needs the linear magnitudes")
    for shift in pitch_shifts:
        x = log_mel
        if shift != 0:
            shifted = augment.stretch_shift(tf.constant(np.asarray(linear, np.float32)), 1.0,
                                            1.0 + shift, out_frames=len(log_mel))
            x = features.linear_to_log_mel(shifted, fe).numpy()
        padded = det.standardiser(np.concatenate([pad, x, pad])).numpy()
        probs.append(predict_track(det.dense, padded))
    return np.mean(probs, axis=0)


def track_probabilities(det: TrainedDetector, track: TrackFeatures,
                        pitch_shifts: tuple[float, ...] = (0.0,)) -> np.ndarray:
    """`frame_probabilities` of a prepared track (its record holds the linear magnitudes)."""
    return frame_probabilities(det, track.log_mel, track.linear, pitch_shifts)


def smooth(prob: np.ndarray, frames: int = MEDIAN_FRAMES) -> np.ndarray:
    return scipy.ndimage.median_filter(prob, size=frames, mode="nearest")


def tune_threshold(prob: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises frame accuracy (ties: the middle of the best interval)."""
    order = np.argsort(prob, kind="stable")
    p, y = prob[order], labels[order].astype(np.int64)
    # threshold between p[i-1] and p[i]: frames < i are called nosing, ≥ i sing
    correct = np.concatenate([[0], np.cumsum(1 - y)]) + np.concatenate([np.cumsum(y[::-1])[::-1],
                                                                        [0]])
    distinct = np.concatenate([[True], p[1:] > p[:-1], [True]])
    correct = np.where(distinct, correct, -1)
    i = int(np.argmax(correct))
    lo = p[i - 1] if i > 0 else p[0] - 1e-3
    hi = p[i] if i < len(p) else p[-1] + 1e-3
    return float((lo + hi) / 2)


def metrics(prob: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import roc_auc_score
    pred = prob >= threshold
    y = labels.astype(bool)
    tp, tn = int(np.sum(pred & y)), int(np.sum(~pred & ~y))
    fp, fn = int(np.sum(pred & ~y)), int(np.sum(~pred & y))

    def ratio(a, b):
        return a / b if b else float("nan")
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {"frames": int(len(y)), "threshold": threshold,
            "error": ratio(fp + fn, len(y)), "precision": precision, "recall": recall,
            "specificity": ratio(tn, tn + fp),
            "f1": ratio(2 * precision * recall, precision + recall),
            "auroc": float(roc_auc_score(y, prob)) if 0 < y.sum() < len(y) else float("nan")}


def pooled(det: TrainedDetector, tracks,
           pitch_shifts=(0.0,)) -> tuple[np.ndarray, np.ndarray]:
    """Median-filtered probabilities and labels of all labelled frames of `tracks`, pooled."""
    probs, labels = [], []
    for t in tracks:
        p = smooth(track_probabilities(det, t, pitch_shifts))
        mask = t.labels != UNLABELLED
        probs.append(p[mask])
        labels.append(t.labels[mask])
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(det: TrainedDetector, prepared, pitch_shifts=(0.0,)) -> dict:
    """Tune the threshold on 'valid', report on 'test' (both pooled over all their frames)."""
    valid_p, valid_y = pooled(det, prepared.tracks("valid"), pitch_shifts)
    threshold = tune_threshold(valid_p, valid_y)
    test_p, test_y = pooled(det, prepared.tracks("test"), pitch_shifts)
    return {"threshold": threshold, "pitch_shifts": list(pitch_shifts),
            "median_filter_frames": MEDIAN_FRAMES,
            "valid": metrics(valid_p, valid_y, threshold),
            "test": metrics(test_p, test_y, threshold),
            "data_fingerprint": prepared.manifest["data_fingerprint"],
            "detector": str(det.folder)}


def frame_segments(active: np.ndarray, duration: float, fe: FrontEnd) -> list:
    """Per-frame sing/nosing decisions → complementary segments covering [0, duration].

    Frame i is centred at fe.frame_times(i); a boundary between frames lies halfway between
    their centres."""
    from tf_svdx.data import lab
    segments = lab.segments_from_frames(active, fe.fps)
    offset = fe.frame_times(1)[0] - 0.5 / fe.fps
    out = []
    for k, (start, end, label) in enumerate(segments):
        start = 0.0 if k == 0 else round(start + offset, 6)
        end = duration if k == len(segments) - 1 else round(end + offset, 6)
        out.append((start, end, label))
    return out
