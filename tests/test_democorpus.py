"""The demo corpus builder (`svdx make-corpus`, tf_svdx.data.democorpus).

Builds a ~1-minute corpus of short tracks (6–9 s instead of 150–210 s) three times: with two
processes, again with one process (same seed: must be byte-identical), and with another seed.
Needs the system packages of the Makefile's APT_PACKAGES and pysinsy / praat-parselmouth.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tf_svdx.config import MakeCorpus
from tf_svdx.data.corpus import read_corpus
from tf_svdx.data.democorpus import build_corpus, labels_from_stem, make_plan
from tf_svdx.data.democorpus import chorales, recordings
from tf_svdx.data.democorpus.plan import SPLITS, assign_splits, make_speech_plan
from tf_svdx.data.democorpus.signal import SAMPLE_RATE
from tf_svdx.data.democorpus.singers import Run, Sinsy
from tf_svdx.data.lab import read_lab
from tf_svdx.errors import ConfigError, MissingDependencyError

SMALL = MakeCorpus(minutes=1.0, seed=0, min_track_s=6.0, max_track_s=9.0, stems=True,
                   speech=True, speech_fraction=0.3, workers=2)


def _options(out: Path, **changes) -> MakeCorpus:
    return dataclasses.replace(SMALL, out=str(out), **changes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    report = build_corpus(_options(out), progress=False)
    assert report["built_tracks"] == len(make_plan(_options(out)))
    return out


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """The same seed and options, built by ONE process."""
    out = tmp_path_factory.mktemp("demo") / "twin"
    build_corpus(_options(out, workers=1), progress=False)
    return out


def _meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text())


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob(pattern))}


# --- layout ------------------------------------------------------------------------------------

def test_layout_is_a_readable_jamendo_corpus(corpus):
    c = read_corpus(corpus)
    assert not c.problems and not c.unlisted
    assert {t.split for t in c.tracks} == set(SPLITS)
    meta = _meta(corpus)
    assert len(c.tracks) == len(meta["tracks"]) == meta["report"]["tracks"]
    singers = {r["singer"] for r in meta["tracks"].values() if r["kind"] == "song"}
    assert len(singers) >= 2
    assert any(r["kind"] == "recording" for r in meta["tracks"].values())
    for track in c.tracks:
        info = sf.info(str(track.audio))
        assert (info.format, info.samplerate, info.channels) == ("FLAC", SAMPLE_RATE, 1)
        record = meta["tracks"][Path(track.audio).stem]
        assert record["split"] == track.split
        assert abs(record["duration_s"] - info.frames / SAMPLE_RATE) < 1e-9
        for key in ("sources", "sung_s", "kind"):
            assert key in record
        if record["kind"] == "song":
            for key in ("transposition", "tempo_bpm", "programs", "singer",
                        "vocal_to_accompaniment_db", "chorale"):
                assert key in record
            assert not any(p.split()[0] in ("52", "53", "54", "85", "91")
                           for group in record["programs"].values() for p in group)
    attribution = (corpus / "ATTRIBUTION.md").read_text()
    for source in {s for r in meta["tracks"].values() for s in r["sources"]}:
        assert source in attribution
    assert "wesnoth" in attribution and "choir" in attribution  # the excluded tracks are listed
    report = (corpus / "report.txt").read_text()
    assert "sung fraction" in report and "split test" in report and "singer sinsy" in report


def test_splits_are_disjoint_by_chorale_and_recording(corpus):
    meta = _meta(corpus)["tracks"]
    for key in ("chorale", "recording"):
        split_of = {}
        for record in meta.values():
            if record.get(key):
                assert split_of.setdefault(record[key], record["split"]) == record["split"]


def test_labels_cover_every_file_with_complementary_segments(corpus):
    for lab in sorted((corpus / "labels").glob("*.lab")):
        segments = read_lab(lab)
        frames = sf.info(str(corpus / "audio" / f"{lab.stem}.flac")).frames
        assert segments[0].start == 0.0
        assert segments[-1].end == frames / SAMPLE_RATE
        for a, b in zip(segments, segments[1:]):
            assert a.end == b.start and a.label != b.label
        record = _meta(corpus)["tracks"][lab.stem]
        sung = sum(s.end - s.start for s in segments if s.label == "sing")
        assert abs(sung - record["sung_s"]) < 1e-6
        if record["kind"] == "recording":
            assert [s.label for s in segments] == ["nosing"]


def test_sung_fraction_is_substantial(corpus):
    report = _meta(corpus)["report"]
    assert 0.25 < report["sung_fraction"] < 0.75
    assert sum(s["tracks"] for s in report["per_split"].values()) == report["tracks"]


def test_everything_is_band_limited_to_8_khz(corpus):
    for name in ("song_001", "recording_002"):
        y, _ = sf.read(corpus / "audio" / f"{name}.flac")
        power = np.abs(np.fft.rfft(y)) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / SAMPLE_RATE)
        above = power[freqs > 8200].sum() / power.sum()
        assert above < 1e-6, (name, above)


# --- quality of the labels: from the isolated vocal stem ---------------------------------------

def _sing_mask(root: Path, name: str, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    mask = np.zeros(n, bool)
    for s in read_lab(root / "labels" / f"{name}.lab"):
        if s.label == "sing":
            mask |= (t >= s.start) & (t < s.end)
    return mask


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x ** 2) + 1e-20)


def test_sung_regions_are_loud_and_harmonic_in_the_vocal_stem(corpus):
    import parselmouth
    meta = _meta(corpus)["tracks"]
    for name, record in meta.items():
        if record["kind"] != "song":
            continue
        vocal, _ = sf.read(corpus / "stems" / f"{name}.vocal.flac")
        sing = _sing_mask(corpus, name, len(vocal))
        assert sing.any(), name
        assert _db(vocal[sing]) > _db(vocal[~sing]) + 25, name
        pitch = parselmouth.Sound(vocal, SAMPLE_RATE).to_pitch(time_step=0.01, pitch_floor=70,
                                                                pitch_ceiling=900)
        f0 = pitch.selected_array["frequency"]
        inside = sing[np.minimum((pitch.xs() * SAMPLE_RATE).astype(int), len(vocal) - 1)]
        f0 = f0[inside]
        assert np.mean(f0 > 0) > 0.7, (name, "voiced", np.mean(f0 > 0))
        semitones = 12 * np.log2(np.maximum(f0, 1.0))
        both = (f0[1:] > 0) & (f0[:-1] > 0)
        steady = np.mean(np.abs(np.diff(semitones))[both] < 0.5)
        assert steady > 0.85, (name, "stable f0", steady)


def test_instrumental_tracks_have_no_vocal_stem(corpus):
    meta = _meta(corpus)["tracks"]
    for name, record in meta.items():
        vocal, _ = sf.read(corpus / "stems" / f"{name}.vocal.flac")
        mix, _ = sf.read(corpus / "audio" / f"{name}.flac")
        accompaniment, _ = sf.read(corpus / "stems" / f"{name}.accompaniment.flac")
        assert np.max(np.abs(vocal + accompaniment - mix)) < 3 / 32768  # the stems add up
        if record["kind"] == "recording":
            assert not np.any(vocal)
            assert np.any(mix)


# --- reproducibility and resuming --------------------------------------------------------------

def test_same_seed_gives_byte_identical_corpus_whatever_the_process_count(corpus, twin):
    for pattern in ("audio/*.flac", "labels/*.lab", "stems/*.flac", "filelists/*",
                    "speech/audio/*.flac", "speech/labels/*.lab"):
        a, b = _files(corpus, pattern), _files(twin, pattern)
        assert a and a.keys() == b.keys(), pattern
        assert [k for k in a if a[k] != b[k]] == [], pattern
    assert _meta(corpus)["tracks"] == _meta(twin)["tracks"]


def test_another_seed_gives_another_corpus(corpus, tmp_path):
    out = tmp_path / "other"
    build_corpus(_options(out, seed=1, speech=False, stems=False), progress=False)
    a, b = _files(corpus, "audio/*.flac"), _files(out, "audio/*.flac")
    assert not set(a.values()) & set(b.values())
    assert _files(corpus, "labels/*.lab") != _files(out, "labels/*.lab")
    read_corpus(out)


def test_rerun_skips_finished_tracks_and_remakes_missing_ones(corpus, twin):
    opts = _options(twin, workers=1)
    assert build_corpus(opts, progress=False)["built_tracks"] == 0
    # A killed run: a deleted track, a track without its record, a half-written temporary.
    reference = _files(corpus, "audio/*.flac")
    (twin / "audio" / "song_001.flac").unlink()
    (twin / "meta" / "recording_002.json").unlink()
    (twin / "audio" / ".song_003.flac.abc.tmp").write_bytes(b"half")
    report = build_corpus(opts, progress=False)
    assert report["built_tracks"] == 2
    assert _files(twin, "audio/*.flac") == reference
    assert not list((twin / "audio").glob(".*.tmp"))


# --- the spoken-voice subset -------------------------------------------------------------------

def test_speech_subset_is_separate_and_labelled_nosing(corpus):
    speech = read_corpus(corpus / "speech")
    assert {t.split for t in speech.tracks} == set(SPLITS)
    meta = _meta(corpus / "speech")["tracks"]
    for track in speech.tracks:
        assert [s.label for s in read_lab(track.labels)] == ["nosing"]
        record = meta[Path(track.audio).stem]
        assert record["speech_segments"] and record["kind"] == "speech"
        for start, end in record["speech_segments"]:
            assert 0 <= start < end <= record["duration_s"]
    assert not any(r["kind"] == "speech" for r in _meta(corpus)["tracks"].values())


# --- missing dependencies ----------------------------------------------------------------------

def test_missing_soundfont_names_the_debian_package(tmp_path):
    opts = _options(tmp_path / "c", soundfont=str(tmp_path / "missing.sf2"))
    with pytest.raises(MissingDependencyError, match="fluid-soundfont-gm"):
        build_corpus(opts, progress=False)
    assert not (tmp_path / "c").exists()


def test_missing_programs_name_their_debian_packages(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingDependencyError, match="Debian package fluidsynth"):
        build_corpus(_options(tmp_path / "c"), progress=False)
    fluidsynth = shutil.which("fluidsynth", path=os.defpath + ":/usr/bin")
    (empty / "fluidsynth").symlink_to(fluidsynth)
    with pytest.raises(MissingDependencyError, match="Debian package (festival|espeak-ng)"):
        build_corpus(_options(tmp_path / "c"), progress=False)


def test_missing_music_package_names_it(tmp_path, monkeypatch):
    package = dataclasses.replace(recordings.MUSIC["wesnoth"], folder=str(tmp_path / "none"))
    monkeypatch.setitem(recordings.MUSIC, "wesnoth", package)
    recordings.music_files.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="wesnoth-1.16-music"):
            build_corpus(_options(tmp_path / "c", recordings="wesnoth"), progress=False)
    finally:
        recordings.music_files.cache_clear()


def test_cli_reports_a_missing_dependency_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tf_svdx.cli", "make-corpus", f"--out={tmp_path / 'c'}",
         "--minutes=0.2", "--seed=3", f"--config.make_corpus.soundfont={tmp_path / 'x.sf2'}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "fluid-soundfont-gm" in result.stderr


# --- units ------------------------------------------------------------------------------------

def test_labels_from_stem_merges_gaps_and_drops_blips():
    sr = SAMPLE_RATE
    t = np.arange(int(6.005 * sr)) / sr
    tone = np.sin(2 * np.pi * 220 * t)
    on = ((t >= 0.5) & (t < 1.5)) | ((t >= 1.7) & (t < 2.5))  # gap 0.2 s: merged
    on |= (t >= 3.0) & (t < 4.0)  # gap 0.5 s: kept
    on |= (t >= 5.0) & (t < 5.1)  # 0.1 s blip: dropped
    segments = labels_from_stem(tone * on, sr)
    assert [(round(a, 3), round(b, 3), lab) for a, b, lab in segments] == [
        (0.0, 0.5, "nosing"), (0.5, 2.5, "sing"), (2.5, 3.0, "nosing"), (3.0, 4.0, "sing"),
        (4.0, round(len(t) / sr, 3), "nosing")]
    assert segments[-1].end == len(t) / sr  # the partial last frame is covered
    quiet = labels_from_stem(1e-3 * tone * on, sr)  # the threshold is relative
    assert [s.label for s in quiet] == [s.label for s in segments]
    assert labels_from_stem(np.zeros(sr), sr) == [(0.0, 1.0, "nosing")]


def test_frames_are_never_empty_when_the_last_start_rounds_onto_the_end():
    """song_038 of a 180-minute corpus crashed in np.add.reduceat: at 22,050 Hz the 88th 10 ms
    frame of a 19,184-sample signal starts at 19,183.5, which rounds (half to even) onto the end."""
    from tf_svdx.data.democorpus.signal import frame_edges, frame_levels
    for n in (19184, 662, 221, 220, 1, 22050, 19183, 19185):
        edges = frame_edges(n, 22050)
        assert edges[0] == 0 and edges[-1] == n and (np.diff(edges) > 0).all(), (n, edges[-3:])
        assert len(frame_levels(np.ones(n), 22050)) == len(edges) - 1
    assert len(frame_edges(19184, 22050)) - 1 == 87
    assert labels_from_stem(np.ones(19184), 22050)[-1].end == 19184 / 22050


def test_plan_is_deterministic_and_validated():
    assert make_plan(SMALL) == make_plan(SMALL)
    assert make_plan(SMALL) != make_plan(dataclasses.replace(SMALL, seed=1))
    full = make_plan(MakeCorpus())
    minutes = sum(p.seconds for p in full) / 60
    assert 55 < minutes < 65
    kinds = [p.kind for p in full]
    assert 0.15 <= kinds.count("recording") / len(kinds) <= 0.25
    assert {p.singer for p in full if p.kind == "song"} == {"sinsy", "festival", "espeak"}
    assert len(make_speech_plan(SMALL)) >= 3
    assert assign_splits(3, (0.7, 0.15, 0.15)) and sorted(assign_splits(3, (0.7, .15, .15))) \
        == ["test", "train", "valid"]
    with pytest.raises(ConfigError, match="unknown 'tenor'"):
        make_plan(dataclasses.replace(SMALL, singers="sinsy,tenor"))
    with pytest.raises(ConfigError, match="min_track_s"):
        make_plan(dataclasses.replace(SMALL, min_track_s=10, max_track_s=5))


def test_chorale_table_matches_music21():
    table = chorales.usable()
    assert len(table) > 300
    for name in ("bwv66.6", "bwv269"):
        chorale = chorales.load_chorale(name)
        assert chorale is not None and table[name] == chorale.soprano_range
        assert len(chorale.bounds) - 1 >= chorales.MIN_PHRASES


def test_sinsy_score_starts_with_a_bar_of_rest_and_ties_across_bars():
    import xml.etree.ElementTree as ET
    run = Run(((0.0, 3.0, 64), (3.0, 2.0, 65), (5.0, 1.0, 67)), 90)  # the 2nd note crosses a bar
    root = ET.fromstring(Sinsy.musicxml(run, ["か", "き", "く"]).encode())
    measures = root.findall(".//measure")
    first = measures[0].findall("note")
    assert len(first) == 1 and first[0].find("rest") is not None
    notes = [n for m in measures[1:] for n in m.findall("note")]
    sounding = [n for n in notes if n.find("rest") is None]
    assert [n.findtext("lyric/text") for n in sounding] == ["か", "き", None, "く"]
    assert [t.get("type") for t in sounding[1].findall("tie")] == ["start"]
    assert [t.get("type") for t in sounding[2].findall("tie")] == ["stop"]
    durations = [int(n.findtext("duration")) for n in notes]
    assert sum(durations) % (4 * Sinsy.DIVISIONS) == 0
    assert notes[-1].find("rest") is not None  # Sinsy wants to end on a rest
