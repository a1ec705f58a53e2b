"""tf.data input pipelines over a prepared folder (the output of `svdx prepare`).

Training excerpts are drawn uniformly over all (labelled) frames of a split: each track is padded
with silence so that every frame can be an excerpt centre, all tracks are concatenated into one
in-memory array, and a batch is a stateless-random draw of centres keyed by (seed, batch number).
So a given seed gives the same batches whatever the parallelism, and batch k can be regenerated
without replaying batches 0…k−1 (a resumed training run sees exactly the batches it would have).

Memory: log-mel float32 (320 B/frame) plus, with augmentation, linear magnitudes float16
(744 B/frame): about 260 MB per hour of audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx import features
from tf_svdx.config import Augment, Config, FrontEnd
from tf_svdx.data import augment as aug
from tf_svdx.data.prepare import MANIFEST, STATS
from tf_svdx.data.records import UNLABELLED, TrackFeatures, read_tracks
from tf_svdx.errors import CorpusError


class Prepared:
    """A prepared folder: its manifest, standardisation, and per-split tracks."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except OSError:
            raise CorpusError(f"{self.folder}: no {MANIFEST}; run `svdx prepare` first") from None
        self.frontend = FrontEnd(**self.manifest["frontend"])
        self.standardiser = features.Standardiser.load(self.folder / STATS)

    @property
    def splits(self) -> list[str]:
        return sorted(self.manifest["splits"])

    def shard_paths(self, split: str) -> list[Path]:
        if split not in self.manifest["splits"]:
            raise CorpusError(f"{self.folder}: no split {split!r} (have: {', '.join(self.splits)})")
        return [self.folder / p for p in self.manifest["splits"][split]["shards"]]

    def tracks(self, split: str):
        """Whole-track iterator (evaluation, dense prediction): TrackFeatures in corpus order."""
        return read_tracks(self.shard_paths(split), self.frontend)


class ExcerptSource:
    """All tracks of a split in one padded array, and the frames that may be excerpt centres."""

    def __init__(self, tracks, fe: FrontEnd, pad: int, *, linear: bool, labelled_only: bool):
        log_mels, linears, labels, centres = [], [], [], []
        floor = np.float32(np.log(fe.log_floor))
        offset = 0
        for t in tracks:
            n = t.n_frames
            log_mels += [np.full((pad, fe.n_mels), floor, np.float32), t.log_mel]
            if linear:
                linears += [np.zeros((pad, fe.n_linear_bins), np.float16), t.linear]
            labels += [np.full(pad, UNLABELLED, np.uint8), t.labels]
            keep = np.flatnonzero(t.labels != UNLABELLED) if labelled_only else np.arange(n)
            centres.append(offset + pad + keep)
            offset += pad + n
        if not log_mels:
            raise CorpusError("no tracks to draw excerpts from")
        log_mels.append(np.full((pad, fe.n_mels), floor, np.float32))
        labels.append(np.full(pad, UNLABELLED, np.uint8))
        if linear:
            linears.append(np.zeros((pad, fe.n_linear_bins), np.float16))
        self.log_mel = np.concatenate(log_mels)
        self.linear = np.concatenate(linears) if linear else None
        self.labels = np.concatenate(labels)
        self.centres = np.concatenate(centres).astype(np.int64)
        if len(self.centres) == 0:
            raise CorpusError("no labelled frames to draw excerpts from")


def to_model_layout(excerpts: tf.Tensor) -> tf.Tensor:
    """[N, frames, mels] → the models' (N, mels, frames, 1) layout (SPEC §1)."""
    return tf.transpose(excerpts, [0, 2, 1])[..., tf.newaxis]


def _windows(array: tf.Tensor, centres: tf.Tensor, length: int) -> tf.Tensor:
    """Gather [N, length, bins] windows of `array` centred on `centres`."""
    offsets = tf.range(length, dtype=tf.int64) - length // 2
    return tf.gather(array, centres[:, tf.newaxis] + offsets)


def excerpts(source: ExcerptSource, fe: FrontEnd, *, batch_size: int, seed: int,
             augment: Augment | None = None, standardiser: features.Standardiser | None = None,
             parallel_calls: int = 2, start_batch: int = 0) -> tf.data.Dataset:
    """Endless batches of (x [B, n_mels, excerpt_frames, 1] float32, y [B] float32 labels).

    Labels are the centre frame's (UNLABELLED = 255 passes through for unlabelled data). With
    `augment` (and augment.enabled), excerpts are cut from linear magnitudes with
    `augment.source_frames` of context, stretched/shifted/filtered, then mapped to log-mel.
    `standardiser` None gives raw log-mel (the GAN's input).
    """
    use_aug = augment is not None and augment.enabled
    if use_aug and source.linear is None:
        raise ValueError("augmentation needs an ExcerptSource built with linear=True")
    log_mel = tf.constant(source.log_mel)
    linear = tf.constant(source.linear) if use_aug else None
    labels = tf.constant(source.labels)
    centres = tf.constant(source.centres)
    n_centres = len(source.centres)

    def make_batch(batch_no):
        key = tf.stack([tf.constant(seed, tf.int64), batch_no])
        pick = tf.random.stateless_uniform([batch_size], seed=key, maxval=n_centres,
                                           dtype=tf.int64)
        c = tf.gather(centres, pick)
        if use_aug:
            src = tf.cast(_windows(linear, c, augment.source_frames), tf.float32)
            seeds = tf.random.experimental.stateless_split(key + 1, batch_size)
            mag = aug.augment_batch(src, seeds, augment, fe, out_frames=fe.excerpt_frames)
            x = features.linear_to_log_mel(mag, fe)
        else:
            x = _windows(log_mel, c, fe.excerpt_frames)
        if standardiser is not None:
            x = standardiser(x)
        return to_model_layout(x), tf.cast(tf.gather(labels, c), tf.float32)

    return (tf.data.Dataset.counter(start_batch)
            .map(make_batch, num_parallel_calls=parallel_calls, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def training_excerpts(prepared: Prepared, config: Config, split: str = "train", *,
                      augment: bool = True, standardise: bool = True, labelled_only: bool = True,
                      start_batch: int = 0) -> tf.data.Dataset:
    """The detector's (standardised, augmented, labelled) or the GAN's (raw) excerpt stream."""
    fe = prepared.frontend
    aug_cfg = config.augment if augment else None
    use_linear = aug_cfg is not None and aug_cfg.enabled
    pad = max(config.augment.source_frames, fe.excerpt_frames) // 2 + 1
    source = ExcerptSource(prepared.tracks(split), fe, pad, linear=use_linear,
                           labelled_only=labelled_only)
    return excerpts(source, fe, batch_size=config.pipeline.batch_size, seed=config.seed,
                    augment=aug_cfg,
                    standardiser=prepared.standardiser if standardise else None,
                    parallel_calls=config.pipeline.parallel_calls, start_batch=start_batch)


def whole_track(track: TrackFeatures, fe: FrontEnd,
                standardiser: features.Standardiser | None) -> np.ndarray:
    """A track's log-mel padded by half an excerpt of silence each side (SPEC §3 prediction),
    standardised: [n_frames + 2·pad, n_mels]. Every original frame is then an excerpt centre."""
    pad = fe.excerpt_pad
    floor = np.full((pad, fe.n_mels), np.log(fe.log_floor), np.float32)
    x = np.concatenate([floor, track.log_mel, floor])
    return x if standardiser is None else standardiser(x).numpy()
