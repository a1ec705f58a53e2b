"""Build the corpus: check dependencies, plan, make the missing tracks in a process pool, then
write the filelists, meta.json, ATTRIBUTION.md and the quality report.

Layout of `out` (the Jamendo layout plus metadata):
    audio/<track>.flac        22,050 Hz mono 16-bit FLAC
    labels/<track>.lab        `start end sing|nosing`, complementary, 0 → the file end
    filelists/{train,valid,test}
    meta/<track>.json         per-track record; written last, it marks the track finished
    stems/<track>.{vocal,accompaniment}.flac   with `stems`
    meta.json, ATTRIBUTION.md, report.txt
    speech/                   with `speech`: the spoken-voice subset, the same layout

Resuming: a track whose record exists and matches its plan is kept; every file is written
under a temporary name and renamed, so a killed run leaves no half-written file, and a track
without its record is simply made again (byte-identical). Leftover temporaries are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from tf_svdx.config import MakeCorpus
from tf_svdx.data.democorpus import deps, recordings
from tf_svdx.data.democorpus.attribution import attribution
from tf_svdx.data.democorpus.plan import (SPLITS, TrackPlan, make_plan, make_speech_plan,
                                          parse_list, validate)
from tf_svdx.data.democorpus.signal import SAMPLE_RATE, write_flac
from tf_svdx.data.democorpus.singers import SINGERS
from tf_svdx.data.lab import write_lab
from tf_svdx.errors import CorpusError, SvdxError
from tf_svdx.io import atomic_path, remove_stale_temporaries, write_json

__all__ = ["BUILDER_VERSION", "build_corpus", "report_lines", "requirements"]

BUILDER_VERSION = 1  # bump when a change alters the audio, so that resumed builds remake tracks
SUBFOLDERS = ("audio", "labels", "meta", "filelists", "stems")


def requirements(opts: MakeCorpus) -> list[deps.Requirement]:
    """What building with these options needs (every singer and music package asked for), in
    the order it is checked."""
    out = [deps.Requirement("program", "fluidsynth", "fluidsynth",
                            purpose="rendering the instruments"),
           deps.Requirement("path", opts.soundfont, "fluid-soundfont-gm",
                            purpose="the instruments; path set by make_corpus.soundfont"),
           deps.Requirement("python", "music21", "music21", via="pip",
                            purpose="the chorale scores")]
    for singer in parse_list(opts.singers, SINGERS, "singers"):
        out += [r for r in SINGERS[singer].requirements() if r not in out]
    if opts.recording_fraction > 0:
        for key in parse_list(opts.recordings, recordings.MUSIC, "recordings"):
            out.append(recordings.MUSIC[key].requirement())
    if opts.speech:
        out.append(recordings.SPEECH.requirement())
    return out


def _spec(plan: TrackPlan, opts: MakeCorpus) -> dict:
    """Everything a track's content depends on: a finished track with another spec is remade."""
    return {"builder": BUILDER_VERSION, "soundfont": opts.soundfont, **dataclasses.asdict(plan)}


def _paths(root: Path, name: str) -> dict[str, Path]:
    return {"audio": root / "audio" / f"{name}.flac", "labels": root / "labels" / f"{name}.lab",
            "record": root / "meta" / f"{name}.json",
            "vocal": root / "stems" / f"{name}.vocal.flac",
            "accompaniment": root / "stems" / f"{name}.accompaniment.flac"}


def _finished(root: Path, plan: TrackPlan, opts: MakeCorpus) -> dict | None:
    paths = _paths(root, plan.name)
    try:
        record = json.loads(paths["record"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    needed = ["audio", "labels"] + (["vocal", "accompaniment"] if opts.stems else [])
    if record.get("spec") != _spec(plan, opts) or not all(paths[k].is_file() for k in needed):
        return None
    return record


def _make(job) -> dict:
    """Worker: make one track and write it; returns its record."""
    from tf_svdx.data.democorpus.tracks import make_track
    plan, opts, root = job
    root = Path(root)
    try:
        with tempfile.TemporaryDirectory(prefix="svdx-corpus-") as tmp:
            track = make_track(plan, opts.soundfont, Path(tmp))
    except SvdxError:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the track's name, one line
        raise CorpusError(f"track {plan.name} ({plan.kind} {plan.chorale or plan.recording}) "
                          f"failed: {type(e).__name__}: {e}") from None
    paths = _paths(root, plan.name)
    write_flac(paths["audio"], track.mix)
    write_lab(paths["labels"], track.segments)
    if opts.stems:
        write_flac(paths["vocal"], track.vocal)
        write_flac(paths["accompaniment"], track.accompaniment)
    duration = len(track.mix) / SAMPLE_RATE
    record = {"spec": _spec(plan, opts), "split": plan.split, "kind": plan.kind,
              "duration_s": duration,
              "sung_s": round(sum(s.end - s.start for s in track.segments
                                  if s.label == "sing"), 6),
              "audio_sha256": hashlib.sha256(paths["audio"].read_bytes()).hexdigest(),
              **track.meta}
    write_json(paths["record"], record)
    return record


def _prepare_folder(root: Path, plans: list[TrackPlan], stems: bool) -> None:
    """Create the folders, remove temporaries of killed runs and tracks no longer planned."""
    for sub in SUBFOLDERS:
        if sub != "stems" or stems:
            (root / sub).mkdir(parents=True, exist_ok=True)
        if (root / sub).is_dir():
            remove_stale_temporaries(root / sub)
    remove_stale_temporaries(root)
    planned = {p.name for p in plans}
    for record in sorted((root / "meta").glob("*.json")):
        if record.stem not in planned:  # ours (it has a record), from other options
            for path in _paths(root, record.stem).values():
                if path != record:
                    path.unlink(missing_ok=True)
            record.unlink()


def _write_summary(root: Path, title: str, plans: list[TrackPlan], records: dict[str, dict],
                   opts: MakeCorpus, command: str, seconds: float, made: int,
                   excluded) -> dict:
    for split in SPLITS:
        names = [p.name for p in plans if p.split == split]
        with atomic_path(root / "filelists" / split) as tmp:
            tmp.write_text("".join(f"{n}.flac\n" for n in names), encoding="utf-8")
    records = {p.name: records[p.name] for p in plans}
    report = quality_report(plans, records, seconds, made)
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("out", "workers")}
    write_json(root / "meta.json", {"builder_version": BUILDER_VERSION, "command": command,
                                    "options": options, "report": report,
                                    "tracks": records})
    with atomic_path(root / "ATTRIBUTION.md") as tmp:
        tmp.write_text(attribution(title, records, command, excluded), encoding="utf-8")
    with atomic_path(root / "report.txt") as tmp:
        tmp.write_text("\n".join(report_lines(report)) + "\n", encoding="utf-8")
    return report


def quality_report(plans: list[TrackPlan], records: dict[str, dict], seconds: float,
                   made: int) -> dict:
    """Minutes, sung fraction, tracks (and minutes) per split and per singer; `made` tracks
    were made by this run, in `seconds`, the others were already there."""
    total = sum(records[p.name]["duration_s"] for p in plans)
    sung = sum(records[p.name]["sung_s"] for p in plans)
    per_split, per_singer = {}, {}
    for p in plans:
        r = records[p.name]
        s = per_split.setdefault(p.split, {"tracks": 0, "minutes": 0.0, "sung_minutes": 0.0})
        who = p.singer or p.kind
        g = per_singer.setdefault(who, {"tracks": 0, "minutes": 0.0, "sung_minutes": 0.0})
        for d in (s, g):
            d["tracks"] += 1
            d["minutes"] = round(d["minutes"] + r["duration_s"] / 60.0, 3)
            d["sung_minutes"] = round(d["sung_minutes"] + r["sung_s"] / 60.0, 3)
    return {"tracks": len(plans), "minutes": round(total / 60.0, 3),
            "sung_fraction": round(sung / total, 4) if total else 0.0,
            "per_split": {k: per_split[k] for k in SPLITS if k in per_split},
            "per_singer": dict(sorted(per_singer.items())),
            "built_tracks": made, "build_seconds": round(seconds, 1)}


def report_lines(report: dict) -> list[str]:
    lines = [f"{report['tracks']} tracks, {report['minutes']:.1f} min, sung fraction "
             f"{report['sung_fraction']:.1%}; this run made {report['built_tracks']} of them "
             f"in {report['build_seconds']:.0f} s"]
    for title, key in (("split", "per_split"), ("singer", "per_singer")):
        for name, d in report[key].items():
            lines.append(f"  {title} {name:<10} {d['tracks']:3d} tracks {d['minutes']:6.1f} min, "
                         f"sung {d['sung_minutes']:5.1f} min")
    return lines


def _command(opts: MakeCorpus) -> str:
    parts = [f"svdx make-corpus --out {opts.out} --minutes {opts.minutes:g} --seed {opts.seed}"]
    parts += [f"--{flag}" for flag in ("stems", "speech") if getattr(opts, flag)]
    defaults = MakeCorpus()
    for field in dataclasses.fields(MakeCorpus):
        if field.name in ("out", "minutes", "seed", "stems", "speech", "workers"):
            continue
        value = getattr(opts, field.name)
        if value != getattr(defaults, field.name):
            parts.append(f"--config.make_corpus.{field.name}={value}")
    return " ".join(parts)


def build_corpus(opts: MakeCorpus, progress: bool = True) -> dict:
    """Build (or finish) the corpus at opts.out; returns the quality report (also in meta.json,
    report.txt and, for the speech subset, under "speech")."""
    from tqdm import tqdm
    started = time.monotonic()
    root = Path(opts.out)
    validate(opts)
    deps.check(requirements(opts))
    plans = make_plan(opts)
    speech = make_speech_plan(opts) if opts.speech else []
    subsets = [(root, plans)] + ([(root / "speech", speech)] if speech else [])
    records: dict[str, dict] = {}
    jobs = []
    for folder, group in subsets:
        _prepare_folder(folder, group, opts.stems)
        for plan in group:
            record = _finished(folder, plan, opts)
            if record is None:
                jobs.append((plan, opts, str(folder)))
            else:
                records[plan.name] = record
    jobs.sort(key=lambda j: -j[0].seconds)  # longest first: the pool ends together
    workers = max(1, min(opts.workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=sum(j[0].seconds for j in jobs), unit="s", desc="make-corpus",
               disable=not progress or not jobs, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]")
    try:
        if workers == 1:
            results = map(_make, jobs)
            for record in results:
                records[_name(record)] = record
                bar.update(record["spec"]["seconds"])
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for record in pool.imap_unordered(_make, jobs):
                    records[_name(record)] = record
                    bar.update(record["spec"]["seconds"])
    finally:
        bar.close()
    seconds = time.monotonic() - started
    command = _command(opts)
    excluded = {k: recordings.excluded_files(k) for k in {p.recording.split("/")[0]
                                                          for p in plans if p.recording}}
    made = sum(1 for j in jobs if j[0].kind != "speech")
    report = _write_summary(root, "Demo singing-voice corpus (tf_svdx make-corpus)", plans,
                            records, opts, command, seconds, made,
                            dict(sorted(excluded.items())))
    if speech:
        report["speech"] = _write_summary(
            root / "speech", "Spoken-voice subset of the demo corpus (labelled nosing)", speech,
            records, opts, command, seconds, len(jobs) - made, {})
    return report


def _name(record: dict) -> str:
    return record["spec"]["name"]
