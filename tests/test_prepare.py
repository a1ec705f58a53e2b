"""`svdx prepare` on the built-in corpus: outputs, statistics, skipping, resume and SIGKILL."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tf_svdx import audio, config as config_lib, features
from tf_svdx.data import read_lab
from tf_svdx.data.pipeline import Prepared
from tf_svdx.data.prepare import MANIFEST, prepare
from tf_svdx.data.records import UNLABELLED
from tf_svdx.errors import CorpusError

REPO = Path(__file__).parents[1]


def _cfg(corpus, out, *extra):
    return config_lib.load(None, [f"prepare.corpus={corpus}", f"prepare.out={out}",
                                  "prepare.tracks_per_shard=3", *extra])


@pytest.fixture(scope="module")
def prepared(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare(_cfg(tiny_corpus, out), progress=False)
    return out, manifest


def test_manifest_and_shards(prepared, tiny_corpus):
    out, manifest = prepared
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["skipped"] == []
    train = manifest["splits"]["train"]
    assert train["tracks"] == len((tiny_corpus / "filelists/train").read_text().split())
    assert 0.2 < train["sung_fraction"] < 0.8
    assert len(train["shards"]) == 2  # 6 tracks, 3 per shard
    assert set(manifest["splits"]) == {"train", "valid", "test"}
    assert len(manifest["data_fingerprint"]) == 16


def test_records_hold_features_and_labels(prepared, tiny_corpus):
    out, _ = prepared
    data = Prepared(out)
    tracks = list(data.tracks("valid"))
    assert len(tracks) == 1
    t = tracks[0]
    name = (tiny_corpus / "filelists/valid").read_text().split()[0]
    wave = audio.load(tiny_corpus / "audio" / name)
    np.testing.assert_array_equal(t.log_mel, features.log_mel(wave).numpy())
    assert t.linear.shape == (t.n_frames, 372)
    segments = read_lab(tiny_corpus / "labels" / (Path(name).stem + ".lab"))
    centres = config_lib.FrontEnd().frame_times(t.n_frames)
    for (start, end, label) in segments:
        inside = (centres >= start) & (centres < end)
        assert np.all(t.labels[inside] == (label == "sing"))


def test_standardisation_is_over_training_frames(prepared, tiny_corpus):
    out, manifest = prepared
    frames = np.concatenate([t.log_mel for t in Prepared(out).tracks("train")])
    std = features.Standardiser.load(out / "standardisation.npz")
    np.testing.assert_allclose(std.mean, frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std.std, frames.std(0, ddof=1), rtol=1e-4)
    assert manifest["standardisation"]["frames"] == len(frames)


def test_rerun_reuses_every_shard_and_redoes_a_changed_one(prepared, tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    out = tmp_path / "out"
    first = prepare(_cfg(corpus, out), progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert prepare(_cfg(corpus, out), progress=False) == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == stamps
    # Change one validation track: only the valid shard is rewritten.
    name = (corpus / "filelists/valid").read_text().split()[0]
    wave, sr = soundfile.read(corpus / "audio" / name)
    soundfile.write(corpus / "audio" / name, wave * 0.5, sr)
    second = prepare(_cfg(corpus, out), progress=False)
    changed = {p.name for p in (out / "shards").iterdir() if stamps.get(p.name) != p.stat().st_mtime_ns}
    assert changed == {"valid-00000-of-00001.tfrecord", "valid-00000-of-00001.json"}
    assert second["data_fingerprint"] != first["data_fingerprint"]


def _bad_corpus(tiny_corpus, root):
    shutil.copytree(tiny_corpus, root)
    (root / "audio/broken.wav").write_text("this is not audio\n")
    (root / "labels/broken.lab").write_text("0 1 nosing\n")
    (root / "audio/badlab.flac").write_bytes((root / "audio/chorale_01.flac").read_bytes())
    (root / "labels/badlab.lab").write_text("0 1 sing\n1 0.5 nosing\n")
    with open(root / "filelists/train", "a") as f:
        f.write("broken.wav\nbadlab.flac\nmissing.flac\n")
    return root


def test_bad_files_are_skipped_and_reported(tiny_corpus, tmp_path):
    corpus = _bad_corpus(tiny_corpus, tmp_path / "corpus")
    manifest = prepare(_cfg(corpus, tmp_path / "out"), progress=False)
    reasons = {Path(p["path"]).name.split(":")[0]: p["reason"] for p in manifest["skipped"]}
    assert set(reasons) == {"broken.wav", "badlab.lab", "train"}, reasons
    assert "badlab.lab:2" in reasons["badlab.lab"] and "end" in reasons["badlab.lab"]
    assert "missing.flac" in reasons["train"]
    assert manifest["splits"]["train"]["tracks"] == 6
    with pytest.raises(CorpusError, match="--strict"):
        prepare(_cfg(corpus, tmp_path / "strict", "prepare.strict=true"), progress=False)


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "music").mkdir()
    (tmp_path / "music/a.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(CorpusError, match="no usable track left.*a.wav"):
        prepare(_cfg(tmp_path / "music", tmp_path / "out"), progress=False)


def test_unlabelled_music_folder(tiny_corpus, tmp_path):
    music = tmp_path / "music" / "deep"
    music.mkdir(parents=True)
    for p in sorted((tiny_corpus / "audio").glob("*.flac"))[:2]:
        wave, sr = soundfile.read(p)
        soundfile.write(music / (p.stem + ".ogg"), wave, sr, format="OGG", subtype="VORBIS")
    manifest = prepare(_cfg(tmp_path / "music", tmp_path / "out"), progress=False)
    assert list(manifest["splits"]) == ["unlabelled"]
    assert manifest["standardisation"]["split"] == "all"
    tracks = list(Prepared(tmp_path / "out").tracks("unlabelled"))
    assert len(tracks) == 2 and all(np.all(t.labels == UNLABELLED) for t in tracks)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tf_svdx.cli", *args, "--noprogress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


@pytest.mark.slow
def test_sigkill_leaves_nothing_half_written_and_rerun_completes(tiny_corpus, tmp_path):
    ref = tmp_path / "ref"
    prepare(_cfg(tiny_corpus, ref, "prepare.tracks_per_shard=1"), progress=False)
    out = tmp_path / "out"
    proc = _cli("prepare", f"--corpus={tiny_corpus}", f"--out={out}",
                "--config.prepare.tracks_per_shard=1")
    deadline = time.time() + 120
    while not list((out / "shards").glob("*.json")) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / MANIFEST).exists()
    done = sorted(p.name for p in (out / "shards").glob("*.tfrecord"))
    assert 1 <= len(done) < 8
    for name in done:  # whatever carries the final name is complete and identical to the ref
        assert (out / "shards" / name).read_bytes() == (ref / "shards" / name).read_bytes()
    proc = _cli("prepare", f"--corpus={tiny_corpus}", f"--out={out}",
                "--config.prepare.tracks_per_shard=1")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "train:    6 tracks" in stdout
    assert sorted(p.name for p in (out / "shards").iterdir()) == \
        sorted(p.name for p in (ref / "shards").iterdir())
    for p in (ref / "shards").iterdir():
        assert (out / "shards" / p.name).read_bytes() == p.read_bytes(), p.name
    assert json.loads((out / MANIFEST).read_text())["data_fingerprint"] == \
        json.loads((ref / MANIFEST).read_text())["data_fingerprint"]


def test_cli_errors_are_one_line(tmp_path):
    proc = _cli("prepare", f"--corpus={tmp_path / 'nope'}", f"--out={tmp_path / 'o'}")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("svdx: error: ") and "nope" in lines[0]
    proc = _cli("prepare", "--config.prepare.bogus=1")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--config.prepare.bogus: unknown key" in stderr


LAB_DEFECTS = {  # name: (.lab text, expected substring of the reported reason)
    "lab_negative": ("-1 1 sing\n", ":1: negative start time -1.0"),
    "lab_end_before_start": ("0 1 sing\n1 1 nosing\n", ":2: end 1.0 is not after start 1.0"),
    "lab_overlap": ("0 2 sing\n1 9 nosing\n", ":2: overlaps the previous segment"),
    "lab_gap": ("0 1 sing\n1.5 9 nosing\n", ":2: gap of 0.5 s"),
    "lab_unknown_label": ("0 9 song\n", ":1: unknown label 'song'"),
    "lab_not_numeric": ("0 1 sing\n1 x nosing\n", ":2: end time 'x' is not a number"),
    "lab_field_count": ("0 9\n", ":1: expected 3 fields"),
    "lab_empty": ("", "no segments"),
    "lab_short": ("0 0.5 sing\n", "labels end"),
}


def test_malformed_corpus_every_case_reported(tiny_corpus, tmp_path, real_clip):
    """One Jamendo corpus holding every malformed case: each is skipped with its own reason,
    each awkward-but-valid file is prepared, and the job as a whole succeeds."""
    from badinputs import make_bad_inputs
    root = tmp_path / "corpus"
    for d in ("audio", "labels", "filelists"):
        (root / d).mkdir(parents=True)
    cases = [c for c in make_bad_inputs(tmp_path / "cases", real_clip[:3 * 22050], 22050)
             if c.path.exists() and c.path.is_file() and c.name != "unsupported_extension"]
    train, expected = [], {}
    for c in cases:
        name = f"{c.name}{c.path.suffix}"
        shutil.copy(c.path, root / "audio" / name)
        (root / "labels" / f"{c.name}.lab").write_text("0 100 nosing\n")
        train.append(name)
        expected[c.name] = c.expect
    good = root / "audio" / "good.flac"
    soundfile.write(good, real_clip[:3 * 22050], 22050)
    for name, (text, reason) in LAB_DEFECTS.items():
        shutil.copy(good, root / "audio" / f"{name}.flac")
        (root / "labels" / f"{name}.lab").write_text(text)
        train.append(f"{name}.flac")
        expected[name] = reason
    shutil.copy(good, root / "audio" / "no_labels.flac")
    train += ["no_labels.flac", "not_there.flac", "good.flac"]
    (root / "labels" / "good.lab").write_text("0 3 sing\n")
    (root / "filelists" / "train").write_text("\n".join(train) + "\n")
    shutil.copy(good, root / "audio" / "valid.flac")
    (root / "labels" / "valid.lab").write_text("0 3 sing\n")
    (root / "filelists" / "valid").write_text("valid.flac\n")
    (root / "filelists" / "test").write_text("")
    bad = [n for n, e in expected.items() if e != "ok"]
    assert len(bad) >= 15 + len(LAB_DEFECTS) - 9, bad

    manifest = prepare(_cfg(root, tmp_path / "out", "prepare.tracks_per_shard=64"),
                       progress=False)
    reported = manifest["skipped"]
    for name, expect in expected.items():
        hits = [p["reason"] for p in reported if f"/{name}." in p["reason"] or
                f"/{name}." in p["path"]]
        if expect == "ok":
            assert not hits, (name, hits)
        else:
            assert len(hits) == 1 and expect in hits[0], (name, expect, hits)
    assert any("not_there.flac" in p["reason"] for p in reported)
    assert any("no_labels" in p["reason"] for p in reported)
    n_ok = sum(e == "ok" for e in expected.values()) + 1  # + good.flac
    assert manifest["splits"]["train"]["tracks"] == n_ok


def test_csv_manifest_corpus(tiny_corpus, tmp_path):
    """A CSV manifest (labelled + unlabelled rows) prepares like the Jamendo layout."""
    root = tmp_path / "mine"
    shutil.copytree(tiny_corpus, root / "data")
    rows = ["audio,labels,split"]
    for split in ("train", "valid", "test"):
        for name in (tiny_corpus / "filelists" / split).read_text().split():
            rows.append(f"data/audio/{name},data/labels/{Path(name).stem}.lab,{split}")
    shutil.copy(tiny_corpus / "audio/chorale_01.flac", root / "extra.flac")
    rows.append("extra.flac,,unlabelled")
    rows[1], rows[-1] = rows[-1], rows[1]  # order must not matter
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    manifest = prepare(_cfg(root / "corpus.csv", tmp_path / "out"), progress=False)
    assert manifest["corpus_kind"] == "manifest" and manifest["skipped"] == []
    assert {k: v["tracks"] for k, v in manifest["splits"].items()} == \
        {"train": 6, "valid": 1, "test": 1, "unlabelled": 1}
    assert manifest["standardisation"]["split"] == "train"
