"""TFRecord I/O: one `tf.train.Example` per track, the one place that knows the record layout.

Each record holds a whole track, so excerpts can be cut anywhere and whole-track evaluation needs
no re-assembly:
- `track_id` (bytes), `split` (bytes), `n_frames` (int64),
- `log_mel`: float32 [n_frames, n_mels], little-endian raw bytes (what the detector and GAN see),
- `linear`: float16 [n_frames, n_linear_bins] magnitudes up to fmax (what augmentation resamples),
- `labels`: uint8 [n_frames], 1 = sing, 0 = nosing, UNLABELLED for unlabelled tracks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx.config import FrontEnd
from tf_svdx.io import atomic_path

UNLABELLED = 255


@dataclasses.dataclass
class TrackFeatures:
    track_id: str
    split: str
    log_mel: np.ndarray  # [n_frames, n_mels] float32
    linear: np.ndarray  # [n_frames, n_linear_bins] float16
    labels: np.ndarray  # [n_frames] uint8

    @property
    def n_frames(self) -> int:
        return len(self.log_mel)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialise(track: TrackFeatures) -> bytes:
    n = track.n_frames
    if track.linear.shape[0] != n or track.labels.shape != (n,):
        raise ValueError(f"{track.track_id}: inconsistent frame counts")
    feature = {
        "track_id": _bytes(track.track_id.encode("utf-8")),
        "split": _bytes(track.split.encode("utf-8")),
        "n_frames": tf.train.Feature(int64_list=tf.train.Int64List(value=[n])),
        "log_mel": _bytes(np.ascontiguousarray(track.log_mel, "<f4").tobytes()),
        "linear": _bytes(np.ascontiguousarray(track.linear, "<f2").tobytes()),
        "labels": _bytes(np.ascontiguousarray(track.labels, np.uint8).tobytes()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_SPEC = {
    "track_id": tf.io.FixedLenFeature([], tf.string),
    "split": tf.io.FixedLenFeature([], tf.string),
    "n_frames": tf.io.FixedLenFeature([], tf.int64),
    "log_mel": tf.io.FixedLenFeature([], tf.string),
    "linear": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.FixedLenFeature([], tf.string),
}


def parse(serialised: tf.Tensor, fe: FrontEnd = FrontEnd()) -> dict:
    """Graph-mode parser: a serialised record → dict of tensors with static inner shapes."""
    ex = tf.io.parse_single_example(serialised, _SPEC)
    return {
        "track_id": ex["track_id"],
        "split": ex["split"],
        "log_mel": tf.reshape(tf.io.decode_raw(ex["log_mel"], tf.float32, little_endian=True),
                              [-1, fe.n_mels]),
        "linear": tf.reshape(tf.io.decode_raw(ex["linear"], tf.float16, little_endian=True),
                             [-1, fe.n_linear_bins]),
        "labels": tf.io.decode_raw(ex["labels"], tf.uint8),
    }


def write_shard(path: str | Path, tracks: list[TrackFeatures]) -> None:
    """Write all tracks to `path` atomically: a killed writer leaves only a `.tmp` file."""
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for track in tracks:
                writer.write(serialise(track))


def read_tracks(paths, fe: FrontEnd = FrontEnd()):
    """Eagerly iterate the tracks of the given shard files, in order, as TrackFeatures."""
    dataset = tf.data.TFRecordDataset([str(p) for p in paths]).map(lambda s: parse(s, fe))
    for ex in dataset.as_numpy_iterator():
        yield TrackFeatures(track_id=ex["track_id"].decode("utf-8"),
                            split=ex["split"].decode("utf-8"), log_mel=ex["log_mel"],
                            linear=ex["linear"], labels=ex["labels"])
