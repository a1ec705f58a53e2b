"""The real-data reference of FID-based selection (SPEC §6).

An explanation setting is judged by how close the target neuron's activations on its
explanations are to its activations on the real excerpts that drive it hardest: the top-N
training excerpts for maximisation, the bottom-N for minimisation (N = 50 by default; the paper
does not publish it). One scan of the split finds both sets at once, keeping only a running
top-N / bottom-N so memory does not grow with the corpus, and records for those excerpts also
the activations of a multi-dimensional layer (fc8 by default) for the multi-D distance.

The scan costs a forward pass over every `hop`-th frame of the split, while the 27 × 2 settings
of the grid all reuse it, so it is cached as .npz keyed by everything that changes its result:
the model's weights, the standardisation, the data, target, unit, layer, N, split and hop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf_svdx.data.pipeline import Prepared, whole_track
from tf_svdx.errors import ConfigError
from tf_svdx.io import atomic_path
from tf_svdx.models.detector import feature_model

#: Bump when the scan's algorithm or the file layout changes, so old caches are not reused.
CACHE_VERSION = 2  # 2: all_target
DIRECTIONS = ("maximise", "minimise")
_ARRAYS = ("top_target", "bottom_target", "top_layer", "bottom_layer", "top_index",
           "bottom_index", "all_target")


@dataclasses.dataclass
class Reference:
    """Top-n / bottom-n real excerpts of a split for one target unit.

    `*_target` [n] float64: the target unit's activations, top in descending and bottom in
    ascending order; `*_layer` [n, d] float64: `layer`'s activations of the same excerpts,
    flattened per excerpt; `*_index` [n, 2] int64: (track number in `prepared.tracks(split)`
    order, centre frame). `count`: excerpts scanned. `all_target` [count] float32: every scanned
    excerpt's target activation (the real distribution reports plot explanations against).
    `fingerprint`: the cache key."""

    target: str
    unit: int
    layer: str
    n: int
    split: str
    top_target: np.ndarray
    bottom_target: np.ndarray
    top_layer: np.ndarray
    bottom_layer: np.ndarray
    top_index: np.ndarray
    bottom_index: np.ndarray
    count: int
    fingerprint: str
    all_target: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))

    def for_direction(self, direction: str) -> tuple[np.ndarray, np.ndarray]:
        """(target activations, layer activations) to compare explanations of `direction` with:
        the excerpts that activate the unit most for "maximise", least for "minimise"."""
        if direction == "maximise":
            return self.top_target, self.top_layer
        if direction == "minimise":
            return self.bottom_target, self.bottom_layer
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")


def model_fingerprint(model: keras.Model) -> str:
    """16 hex chars of sha256 over every weight's path, shape, dtype and little-endian bytes, in
    the model's order: identical weights give the same key whatever folder they were loaded
    from, and any changed weight gives a new one (optimizer and RNG state are not weights)."""
    h = hashlib.sha256()
    for w in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(w))
        value = np.ascontiguousarray(value, value.dtype.newbyteorder("<"))
        name = getattr(w, "path", None) or w.name
        h.update(f"{name}|{value.shape}|{value.dtype.str}\n".encode("utf-8"))
        h.update(value.tobytes())
    return h.hexdigest()[:16]


def reference_key(det, prepared: Prepared, *, split: str = "train", target: str = "fc9",
                  unit: int = 0, layer: str = "fc8", n: int = 50, hop: int = 10) -> str:
    """The cache key (16 hex chars) of `scan_reference` with these arguments: a hash of
    everything its result depends on (`batch` and `progress` do not change it)."""
    params = {"version": CACHE_VERSION, "model": model_fingerprint(det.model), "target": target,
              "unit": int(unit), "layer": layer, "n": int(n), "split": split, "hop": int(hop),
              "data": prepared.manifest["data_fingerprint"]}
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8"))
    for stat in (det.standardiser.mean, det.standardiser.std):
        h.update(np.ascontiguousarray(stat, "<f4").tobytes())
    return h.hexdigest()[:16]


def scan_reference(det, prepared: Prepared, *, split: str = "train", target: str = "fc9",
                   unit: int = 0, layer: str = "fc8", n: int = 50, hop: int = 10,
                   batch: int = 256, cache_dir: str | Path | None = None,
                   progress: bool = False) -> Reference:
    """The top-n / bottom-n excerpts of `split` for unit `unit` of `target` (SPEC §6).

    `det` is an `evaluation.TrainedDetector`. Every `hop`-th frame of every track is the centre
    of one standardised excerpt (tracks padded as in whole-track prediction, so the first and
    last frames count too), run through the detector in inference mode. A conv/pool target's
    activation is the mean over frequency and time of channel `unit`. With `cache_dir`, a
    previous scan with the same key is loaded instead (`reference-<key>.npz`), and a new scan
    is written there atomically. Raises ConfigError for an unknown layer or unit, a front end
    that differs from the data's, or a split with fewer than n excerpts."""
    _check_arguments(det, prepared, n=n, hop=hop, batch=batch)
    key = reference_key(det, prepared, split=split, target=target, unit=unit, layer=layer, n=n,
                        hop=hop)
    path = Path(cache_dir) / f"reference-{key}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        cached = _load(path, key)
        if cached is not None:
            return cached
    _check_enough_excerpts(prepared, split, n, hop)
    ref = _scan(det, prepared, split=split, target=target, unit=unit, layer=layer, n=n, hop=hop,
                batch=batch, key=key, progress=progress)
    if path is not None:
        _save(ref, path)
    return ref


def _check_arguments(det, prepared: Prepared, *, n: int, hop: int, batch: int) -> None:
    for name, value in (("n", n), ("hop", hop), ("batch", batch)):
        if int(value) != value or value < 1:
            raise ConfigError(f"reference {name} must be a positive integer, got {value!r}")
    if det.frontend != prepared.frontend:
        raise ConfigError(f"{prepared.folder}: prepared with front end {prepared.frontend}, but "
                          f"the detector was trained on {det.frontend}")
    fe = det.frontend
    expected = (fe.n_mels, fe.excerpt_frames, 1)
    if tuple(det.model.input_shape[1:]) != expected:
        raise ConfigError(f"detector input {tuple(det.model.input_shape[1:])} does not match the "
                          f"front end's {expected}")


def _check_enough_excerpts(prepared: Prepared, split: str, n: int, hop: int) -> None:
    """Fail before the scan when the manifest already shows that the split is too small: a
    track of T frames gives ceil(T / hop) ≤ (T + hop − 1) / hop excerpts."""
    entry = prepared.manifest.get("splits", {}).get(split)
    if not entry or "frames" not in entry or "tracks" not in entry:
        return
    at_most = (entry["frames"] + entry["tracks"] * (hop - 1)) // hop
    if at_most < n:
        raise ConfigError(_too_few(split, at_most, hop, n))


def _too_few(split: str, count: int, hop: int, n: int) -> str:
    return (f"split {split!r} has {count} excerpts at hop {hop}, fewer than n={n}; "
            f"lower n or hop")


class _Extremes:
    """The n largest (or smallest) target values seen so far, with their layer activations and
    indices. Ties keep the earlier excerpt (stable sort, old entries first), so the result does
    not depend on the batch size."""

    def __init__(self, n: int, largest: bool):
        self.n, self.largest = n, largest
        self.values = np.zeros(0, np.float64)
        self.layer: np.ndarray | None = None
        self.index = np.zeros((0, 2), np.int64)

    def update(self, values: np.ndarray, layer: np.ndarray, index: np.ndarray) -> None:
        v = np.concatenate([self.values, values])
        acts = layer if self.layer is None else np.concatenate([self.layer, layer])
        idx = np.concatenate([self.index, index])
        order = np.argsort(-v if self.largest else v, kind="stable")[:self.n]
        self.values, self.layer, self.index = v[order], acts[order], idx[order]


def _excerpt_batches(tracks, fe, standardiser, hop: int, batch: int):
    """Yield (x [B, n_mels, excerpt_frames, 1] float32, index [B, 2] int64) over all tracks.

    Batches run across track boundaries so only the very last one is short, and at most about
    two batches of excerpts are held at once, however long a track is."""
    pending_x: list[np.ndarray] = []
    pending_i: list[np.ndarray] = []
    size = 0
    for track_no, track in enumerate(tracks):
        padded = whole_track(track, fe, standardiser)  # [T + 2·pad, n_mels]
        # window c covers padded rows c … c + excerpt_frames − 1, centred on original frame c;
        # the view is [T, n_mels, excerpt_frames]: already the model's (mels, frames) layout
        windows = np.lib.stride_tricks.sliding_window_view(padded, fe.excerpt_frames, axis=0)
        centres = np.arange(0, track.n_frames, hop, dtype=np.int64)
        for start in range(0, len(centres), batch):
            chunk = centres[start:start + batch]
            pending_x.append(windows[chunk])
            pending_i.append(np.stack([np.full_like(chunk, track_no), chunk], axis=1))
            size += len(chunk)
            while size >= batch:
                x, i = np.concatenate(pending_x), np.concatenate(pending_i)
                yield x[:batch, ..., None], i[:batch]
                pending_x, pending_i, size = [x[batch:]], [i[batch:]], size - batch
    if size:
        yield np.concatenate(pending_x)[..., None], np.concatenate(pending_i)


def _activation_function(model: keras.Model, target: str, unit: int, layer: str, fe):
    """A traced x → (target unit [B], layer flattened [B, d]) in inference mode (dropout off)."""
    try:
        features = feature_model(model, list(dict.fromkeys([target, layer])))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    target_shape = tuple(features.output[target].shape)
    rank = len(target_shape)
    if rank not in (2, 4):
        raise ConfigError(f"target layer {target!r} has output shape {target_shape}; "
                          f"need [B, units] or [B, H, W, channels]")
    if not 0 <= unit < target_shape[-1]:
        raise ConfigError(f"unit {unit} out of range: {target!r} has {target_shape[-1]} "
                          f"units/channels")
    spec = tf.TensorSpec([None, fe.n_mels, fe.excerpt_frames, 1], tf.float32)

    @tf.function(input_signature=[spec])
    def run(x):
        out = features(x, training=False)
        t = out[target][..., unit]
        if rank == 4:
            t = tf.reduce_mean(t, axis=[1, 2])
        return t, tf.reshape(out[layer], [tf.shape(x)[0], -1])

    return run


def _scan(det, prepared: Prepared, *, split: str, target: str, unit: int, layer: str, n: int,
          hop: int, batch: int, key: str, progress: bool) -> Reference:
    """One pass over the split keeping the running top-n and bottom-n."""
    from tqdm import tqdm
    fe = det.frontend
    run = _activation_function(det.model, target, unit, layer, fe)
    tracks = prepared.tracks(split)
    total = prepared.manifest.get("splits", {}).get(split, {}).get("tracks")
    tracks = tqdm(tracks, total=total, unit="track", desc=f"reference {split}",
                  disable=not progress)
    top, bottom = _Extremes(n, largest=True), _Extremes(n, largest=False)
    count, everything = 0, []
    for x, index in _excerpt_batches(tracks, fe, det.standardiser, hop, batch):
        t, acts = run(tf.constant(x, tf.float32))
        t, acts = t.numpy().astype(np.float64), acts.numpy().astype(np.float64)
        top.update(t, acts, index)
        bottom.update(t, acts, index)
        everything.append(t.astype(np.float32))
        count += len(t)
    if count < n:
        raise ConfigError(_too_few(split, count, hop, n))
    return Reference(target=target, unit=int(unit), layer=layer, n=int(n), split=split,
                     top_target=top.values, bottom_target=bottom.values,
                     top_layer=top.layer, bottom_layer=bottom.layer,
                     top_index=top.index, bottom_index=bottom.index,
                     count=count, fingerprint=key, all_target=np.concatenate(everything))


def _save(ref: Reference, path: Path) -> None:
    """Plain arrays and strings only, so loading never needs pickle."""
    arrays = {name: getattr(ref, name) for name in _ARRAYS}
    meta = {"target": np.str_(ref.target), "unit": np.int64(ref.unit), "layer": np.str_(ref.layer),
            "n": np.int64(ref.n), "split": np.str_(ref.split), "count": np.int64(ref.count),
            "fingerprint": np.str_(ref.fingerprint), "version": np.int64(CACHE_VERSION)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **meta)


def _load(path: Path, key: str) -> Reference | None:
    """The cached Reference, or None (with a warning) when the file is unreadable or is not the
    scan it claims to be; the caller then rescans and overwrites it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != key or int(z["version"]) != CACHE_VERSION:
                raise ValueError("its key does not match its name")
            return Reference(target=str(z["target"]), unit=int(z["unit"]),
                             layer=str(z["layer"]), n=int(z["n"]), split=str(z["split"]),
                             count=int(z["count"]), fingerprint=str(z["fingerprint"]),
                             **{name: z[name] for name in _ARRAYS})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"{path}: unusable reference cache ({e}); rescanning", stacklevel=3)
        return None
