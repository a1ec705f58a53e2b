"""`svdx prepare`: a corpus → TFRecord shards, standardisation statistics and a manifest.

Resumable and crash-safe: tracks are grouped into shards, and each shard is written atomically
together with a sidecar (`.json`, written after the shard) holding its key — a hash of the front
end and of its tracks' audio and label bytes — plus its statistics and problems. A rerun reuses
every shard whose sidecar key still matches, and `manifest.json`, written last, marks a complete
run. Bad files are skipped and reported; the job fails only when nothing usable is left (or at
the first problem with `strict`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tf_svdx import audio, features
from tf_svdx.config import Config, FrontEnd
from tf_svdx.data import lab
from tf_svdx.data.corpus import Track, read_corpus
from tf_svdx.data.records import UNLABELLED, TrackFeatures, write_shard
from tf_svdx.errors import CorpusError, SvdxError
from tf_svdx.io import remove_stale_temporaries, write_json

MANIFEST = "manifest.json"
STATS = "standardisation.npz"
SHARDS = "shards"
MAX_LABEL_GAP_S = 1.0  # labels may stop this much short of the audio end (frame rounding)


def _file_digest(path: Path | None) -> str:
    if path is None:
        return "-"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _track_key(track: Track) -> list:
    try:
        return [track.track_id, track.split, _file_digest(track.audio), _file_digest(track.labels)]
    except OSError as e:
        return [track.track_id, track.split, f"unreadable: {e.strerror}", "-"]


def extract(track: Track, fe: FrontEnd) -> TrackFeatures:
    """Decode one track and compute its features and frame labels; SvdxError on bad input."""
    wave = audio.load(track.audio, sample_rate=fe.sample_rate)
    n = features.num_frames(len(wave), fe)
    if n == 0:
        raise audio.AudioError(track.audio, f"too short: {len(wave)} samples, need at least "
                                            f"{fe.frame_len} for one frame")
    magnitude = features.stft_magnitude(wave, fe)[:, :fe.n_linear_bins]
    log_mel = features.linear_to_log_mel(magnitude, fe).numpy()
    if track.labels is None:
        labels = np.full(n, UNLABELLED, np.uint8)
    else:
        segments = lab.read_lab(track.labels)
        duration = len(wave) / fe.sample_rate
        gap = lab.coverage_gap(segments, duration)
        if gap > MAX_LABEL_GAP_S:
            raise lab.LabelError(track.labels, None,
                                 f"labels end {gap:.2f} s before the audio ({duration:.2f} s)")
        labels = lab.frame_labels(segments, n, fe)
    return TrackFeatures(track.track_id, track.split, log_mel,
                         magnitude.numpy().astype(np.float16), labels)


@dataclasses.dataclass
class _Shard:
    name: str
    tracks: list
    key: str

    def paths(self, out: Path):
        return out / SHARDS / f"{self.name}.tfrecord", out / SHARDS / f"{self.name}.json"


def _plan(tracks: list[Track], fe: FrontEnd, per_shard: int) -> list[_Shard]:
    shards = []
    by_split: dict[str, list[Track]] = {}
    for t in tracks:
        by_split.setdefault(t.split, []).append(t)
    for split, members in sorted(by_split.items()):
        groups = [members[i:i + per_shard] for i in range(0, len(members), per_shard)]
        for i, group in enumerate(groups):
            blob = json.dumps([dataclasses.asdict(fe), [_track_key(t) for t in group]])
            shards.append(_Shard(f"{split}-{i:05d}-of-{len(groups):05d}", group,
                                 hashlib.sha256(blob.encode()).hexdigest()))
    return shards


def _load_sidecar(path: Path, key: str) -> dict | None:
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return side if side.get("key") == key else None


def _summarise(results: list[TrackFeatures], fe: FrontEnd) -> dict:
    stats = features.RunningStats(fe.n_mels)
    frames = sung = labelled = 0
    for r in results:
        stats.update(r.log_mel)
        frames += r.n_frames
        mask = r.labels != UNLABELLED
        labelled += int(mask.sum())
        sung += int((r.labels[mask] == 1).sum())
    return {"tracks": [r.track_id for r in results], "frames": frames, "labelled_frames": labelled,
            "sung_frames": sung, "stats": {"count": stats.count, "mean": stats.mean.tolist(),
                                           "m2": stats.m2.tolist()}}


def prepare(config: Config, *, progress: bool = True) -> dict:
    """Run the whole preparation; returns the manifest it wrote."""
    fe, opts = config.frontend, config.prepare
    if not opts.corpus or not opts.out:
        raise CorpusError("prepare needs prepare.corpus and prepare.out")
    corpus = read_corpus(opts.corpus)
    out = Path(opts.out)
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out / SHARDS)
    remove_stale_temporaries(out)
    problems = [{"path": p.path, "reason": p.reason} for p in corpus.problems]
    if opts.strict and problems:
        raise CorpusError(f"{problems[0]['path']}: {problems[0]['reason']} (--strict)")

    plan = _plan(corpus.tracks, fe, opts.tracks_per_shard)
    sidecars = {}
    bar = tqdm(total=len(corpus.tracks), unit="track", desc="prepare", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(max(1, opts.workers)) as pool:
        for shard in plan:
            record_path, side_path = shard.paths(out)
            side = _load_sidecar(side_path, shard.key)
            if side is not None and (record_path.exists() or not side["tracks"]):
                sidecars[shard.name] = side
                bar.update(len(shard.tracks))
                continue
            results, shard_problems = [], []
            futures = [pool.submit(extract, t, fe) for t in shard.tracks]
            for track, future in zip(shard.tracks, futures):
                try:
                    results.append(future.result())
                except SvdxError as e:
                    shard_problems.append({"path": str(track.audio if not isinstance(
                        e, lab.LabelError) else track.labels), "reason": str(e)})
                    if opts.strict:
                        raise CorpusError(f"{e} (--strict)") from e
                bar.update(1)
            if results:
                write_shard(record_path, results)
            else:
                record_path.unlink(missing_ok=True)
            side = {"key": shard.key, "problems": shard_problems, **_summarise(results, fe)}
            write_json(side_path, side)
            sidecars[shard.name] = side
    bar.close()

    wanted = {p.name for s in plan for p in s.paths(out)}
    for stale in (out / SHARDS).iterdir():
        if stale.name not in wanted:
            stale.unlink()

    splits: dict[str, dict] = {}
    stats = features.RunningStats(fe.n_mels)
    train_present = any(s.name.startswith("train-") and sidecars[s.name]["tracks"] for s in plan)
    for shard in plan:
        side = sidecars[shard.name]
        split = shard.name.split("-")[0]
        entry = splits.setdefault(split, {"tracks": 0, "frames": 0, "labelled_frames": 0,
                                          "sung_frames": 0, "shards": []})
        entry["tracks"] += len(side["tracks"])
        for k in ("frames", "labelled_frames", "sung_frames"):
            entry[k] += side[k]
        if side["tracks"]:
            entry["shards"].append(f"{SHARDS}/{shard.name}.tfrecord")
        problems.extend(side["problems"])
        if split == "train" or not train_present:
            s = side["stats"]
            stats.merge(s["count"], s["mean"], s["m2"])
    for entry in splits.values():
        entry["sung_fraction"] = (entry["sung_frames"] / entry["labelled_frames"]
                                  if entry["labelled_frames"] else None)
        entry["hours"] = entry["frames"] / fe.fps / 3600
    usable = sum(e["tracks"] for e in splits.values())
    if usable == 0:
        first = f" (first: {problems[0]['path']}: {problems[0]['reason']})" if problems else ""
        raise CorpusError(f"{opts.corpus}: no usable track left{first}")

    stats.standardiser().save(out / STATS, count=stats.count)
    manifest = {
        "corpus": str(opts.corpus),
        "corpus_kind": corpus.kind,
        "data_fingerprint": hashlib.sha256("".join(s.key for s in plan).encode()).hexdigest()[:16],
        "config_fingerprint": config.fingerprint(),
        "frontend": dataclasses.asdict(fe),
        "standardisation": {"file": STATS, "frames": stats.count,
                            "split": "train" if train_present else "all"},
        "splits": splits,
        "skipped": problems,
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def summary_lines(manifest: dict) -> list[str]:
    """Human-readable summary for the console."""
    lines = []
    for split, e in sorted(manifest["splits"].items()):
        sung = "-" if e["sung_fraction"] is None else f"{100 * e['sung_fraction']:.1f}%"
        lines.append(f"{split:>10}: {e['tracks']:4d} tracks  {e['hours'] * 60:7.2f} min  "
                     f"sung {sung}")
    lines.append(f"   skipped: {len(manifest['skipped'])} file(s)")
    for p in manifest["skipped"]:
        lines.append(f"     - {p['reason']}")
    lines.append(f"data fingerprint {manifest['data_fingerprint']}, standardisation over "
                 f"{manifest['standardisation']['frames']} {manifest['standardisation']['split']} "
                 f"frames")
    return lines
