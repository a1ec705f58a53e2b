"""tf_svdx.data.corpus: Jamendo layouts, CSV manifests and unlabelled music folders."""

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tf_svdx.data.corpus import Corpus, Problem, Track, read_corpus
from tf_svdx.errors import CorpusError, LabelError

LAB = "0 1 nosing\n1 2 sing\n"
UNICODE = "Ünïcödé – 歌 song"


def touch(path: Path, content: bytes = b"RIFF fake audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def jamendo(root: Path, lists=None, audio=("a.ogg", "b.wav", f"{UNICODE}.mp3", "c.flac"),
            labels=("a", "b", UNICODE, "c")) -> Path:
    for name in audio:
        touch(root / "audio" / name)
    for stem in labels:
        touch(root / "labels" / f"{stem}.lab", LAB.encode())
    lists = lists if lists is not None else {
        "train": f"# training tracks\na.ogg\n\n{UNICODE}.mp3\n", "valid": "b.wav\n", "test": ""}
    (root / "filelists").mkdir(parents=True, exist_ok=True)
    for split, text in lists.items():
        (root / "filelists" / split).write_text(text, encoding="utf-8")
    return root


def test_jamendo_layout(tmp_path):
    corpus = read_corpus(jamendo(tmp_path))
    assert isinstance(corpus, Corpus) and corpus.kind == "jamendo"
    assert corpus.root == tmp_path
    assert corpus.tracks == [
        Track("audio/a", tmp_path / "audio/a.ogg", tmp_path / "labels/a.lab", "train"),
        Track(f"audio/{UNICODE}", tmp_path / f"audio/{UNICODE}.mp3",
              tmp_path / f"labels/{UNICODE}.lab", "train"),
        Track("audio/b", tmp_path / "audio/b.wav", tmp_path / "labels/b.lab", "valid")]
    assert corpus.problems == []
    assert corpus.unlisted == ["audio/c.flac"]
    assert "3 tracks (train 2, valid 1)" in corpus.summary()
    assert "1 audio files in no filelist" in corpus.summary()
    assert [t.track_id for t in corpus.split("valid")] == ["audio/b"]


def test_jamendo_splits_filter(tmp_path):
    corpus = read_corpus(jamendo(tmp_path), splits=("valid",))
    assert [t.track_id for t in corpus.tracks] == ["audio/b"]
    assert read_corpus(tmp_path, splits="train").split("valid") == []
    with pytest.raises(CorpusError, match="no usable track in split.s. test"):
        read_corpus(tmp_path, splits=["test"])


def test_jamendo_missing_audio_is_a_problem(tmp_path):
    root = jamendo(tmp_path, lists={"train": "a.ogg\n# x\nghost.ogg\n", "valid": "b.wav",
                                    "test": ""})
    corpus = read_corpus(root)
    assert [t.track_id for t in corpus.tracks] == ["audio/a", "audio/b"]
    assert corpus.problems == [Problem(f"{root}/filelists/train:3", "listed audio file "
                                       f"'ghost.ogg' not found in {root}/audio, skipped")]
    assert str(corpus.problems[0]).startswith(f"{root}/filelists/train:3: listed audio file")


def test_jamendo_missing_label_file_is_a_problem(tmp_path):
    root = jamendo(tmp_path, labels=("b", UNICODE))
    corpus = read_corpus(root)
    assert [t.track_id for t in corpus.tracks] == [f"audio/{UNICODE}", "audio/b"]
    [problem] = corpus.problems
    assert problem.path == f"{root}/filelists/train:2"
    assert "no label file" in problem.reason and "a.lab" in problem.reason


def test_jamendo_track_in_two_splits_names_both_lines(tmp_path):
    root = jamendo(tmp_path, lists={"train": "a.ogg\nb.wav\n", "valid": "\n\nb.wav\n",
                                    "test": ""})
    with pytest.raises(LabelError) as info:
        read_corpus(root)
    message = str(info.value)
    assert message.startswith(f"{root}/filelists/valid:3: ")
    assert f"{root}/filelists/train:2" in message
    assert "split 'valid' and also in split 'train'" in message


def test_jamendo_track_listed_twice(tmp_path):
    root = jamendo(tmp_path, lists={"train": "a.ogg\na.ogg\n", "valid": "", "test": ""})
    with pytest.raises(LabelError, match=r"train:2: 'a.ogg' is listed twice .*train:1"):
        read_corpus(root)


def test_jamendo_missing_filelists_folder(tmp_path):
    touch(tmp_path / "audio" / "a.ogg")
    touch(tmp_path / "labels" / "a.lab", LAB.encode())
    with pytest.raises(CorpusError, match=r"Jamendo-layout corpus but has no filelists/ folder"):
        read_corpus(tmp_path)


def test_jamendo_missing_one_filelist(tmp_path):
    root = jamendo(tmp_path, lists={"train": "a.ogg\n", "valid": "b.wav\n"})
    with pytest.raises(CorpusError, match=r"filelists/test: missing filelist for split 'test'"):
        read_corpus(root)
    assert len(read_corpus(root, splits=("train", "valid")).tracks) == 2
    (root / "filelists" / "test.txt").write_text("# none yet\n")  # a .txt suffix is accepted
    assert len(read_corpus(root).tracks) == 2


def test_jamendo_filelist_variants(tmp_path):
    # CRLF + BOM, a name listed with the extension of the original release (the audio was
    # converted), and a name stored decomposed (NFD, as macOS writes it) but listed composed.
    nfd = unicodedata.normalize("NFD", "Café")
    root = jamendo(tmp_path, audio=("a.wav", f"{nfd}.mp3", "b.wav"), labels=("a", nfd, "b"),
                   lists={"train": "\ufeffa.ogg\r\nCafé.mp3\r\n", "valid": "b.wav", "test": ""})
    corpus = read_corpus(root)
    assert [t.track_id for t in corpus.tracks] == ["audio/a", "audio/Café", "audio/b"]
    assert corpus.tracks[0].audio == root / "audio" / "a.wav"
    assert corpus.tracks[1].audio == root / "audio" / f"{nfd}.mp3"
    assert corpus.problems == [] and corpus.unlisted == []


def test_jamendo_same_stem_twice(tmp_path):
    root = jamendo(tmp_path, audio=("a.ogg", "a.wav", "b.wav"),
                   lists={"train": "a.ogg\na.wav\n", "valid": "b.wav", "test": ""})
    with pytest.raises(LabelError, match=r"train:2: 'a.wav' is the same track 'audio/a' as "
                                         r".*train:1"):
        read_corpus(root)


@pytest.mark.parametrize("entry", ["../outside.ogg", "/etc/passwd"])
def test_jamendo_filelist_escape(tmp_path, entry):
    root = jamendo(tmp_path / "corpus", lists={"train": f"a.ogg\n{entry}\n", "valid": "",
                                               "test": ""})
    with pytest.raises(LabelError, match=r"filelists/train:2: audio path"):
        read_corpus(root)


def test_jamendo_audio_symlink_out_is_skipped(tmp_path):
    outside = touch(tmp_path / "elsewhere" / "x.ogg")
    root = jamendo(tmp_path / "corpus", lists={"train": "a.ogg\nx.ogg\n", "valid": "",
                                               "test": ""})
    (root / "audio" / "x.ogg").symlink_to(outside)
    touch(root / "labels" / "x.lab", LAB.encode())
    corpus = read_corpus(root)
    assert [t.track_id for t in corpus.tracks] == ["audio/a"]
    assert {p.reason.split(",")[0] for p in corpus.problems} == {
        "symlink to a file outside the corpus", "listed audio file 'x.ogg' not found in "
        f"{root}/audio"}


# --- CSV manifests ------------------------------------------------------------------------------

def manifest(root: Path, text: str, name="corpus.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest(tmp_path):
    touch(tmp_path / "audio" / f"{UNICODE}.wav")
    touch(tmp_path / "audio" / "x, y.flac")
    touch(tmp_path / "lab" / f"{UNICODE}.lab", LAB.encode())
    touch(tmp_path / "lab" / "x.lab", LAB.encode())
    touch(tmp_path / "gan" / "m.MP3")
    path = manifest(tmp_path, "\ufeffaudio,labels,split\r\n"
                              f"audio/{UNICODE}.wav,lab/{UNICODE}.lab,train\r\n"
                              "\r\n"
                              '"audio/x, y.flac", lab/x.lab ,test\r\n'
                              "gan/m.MP3,,unlabelled\r\n")
    corpus = read_corpus(path)
    assert corpus.kind == "manifest" and corpus.root == tmp_path
    assert corpus.tracks == [
        Track(f"audio/{UNICODE}", tmp_path / f"audio/{UNICODE}.wav",
              tmp_path / f"lab/{UNICODE}.lab", "train"),
        Track("audio/x, y", tmp_path / "audio/x, y.flac", tmp_path / "lab/x.lab", "test"),
        Track("gan/m", tmp_path / "gan/m.MP3", None, "unlabelled")]
    assert corpus.problems == []
    assert [t.track_id for t in read_corpus(path, splits=["unlabelled"]).tracks] == ["gan/m"]


def test_manifest_without_labels_column(tmp_path):
    touch(tmp_path / "a.ogg")
    corpus = read_corpus(manifest(tmp_path, "split,audio\nunlabelled,a.ogg\n"))
    assert corpus.tracks == [Track("a", tmp_path / "a.ogg", None, "unlabelled")]


@pytest.mark.parametrize("text, line, reason", [
    ("audio,labels\n", 1, "missing split"),
    ("audio,lables,split\n", 1, "bad header 'audio,lables,split'"),
    ("audio,labels,split\na.wav,a.lab,training\n", 2,
     "unknown split 'training' (valid splits: train, valid, test, unlabelled)"),
    ("audio,labels,split\na.wav,a.lab\n", 2, "expected 3 fields"),
    ("audio,labels,split\na.wav,,train\n", 2, "split 'train' needs a labels path"),
    ("audio,labels,split\na.wav,a.lab,unlabelled\n", 2, "must have an empty labels path"),
    ("audio,labels,split\n,a.lab,train\n", 2, "empty audio path"),
    ("audio,labels,split\na.txt,a.lab,train\n", 2, "'a.txt' is not a supported audio file"),
    ("audio,labels,split\n\na.wav,a.lab,train\n\nb.wav,b.lab,test\na.wav,c.lab,valid\n", 6,
     "duplicate audio 'a.wav': the same track 'a' is at line 3"),
    ("audio,labels,split\n../x.wav,a.lab,train\n", 2, "audio path '../x.wav' leaves"),
    ("audio,labels,split\nsub/../../x.wav,a.lab,train\n", 2, "leaves"),
    ("audio,labels,split\n/etc/passwd.wav,a.lab,train\n", 2, "is absolute"),
    ("audio,labels,split\nC:\\music\\x.wav,a.lab,train\n", 2, "is absolute"),
    ("audio,labels,split\na.wav,../a.lab,train\n", 2, "labels path '../a.lab' leaves"),
    ("audio,labels,split\na.wav,/etc/passwd,train\n", 2, "labels path '/etc/passwd' is absolute"),
])
def test_manifest_defects(tmp_path, text, line, reason):
    root = tmp_path / "corpus"
    touch(root / "a.wav")
    touch(root / "a.lab", LAB.encode())
    path = manifest(root, text)
    with pytest.raises(LabelError) as info:
        read_corpus(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert reason in str(info.value)


def test_manifest_empty_or_undecodable(tmp_path):
    with pytest.raises(LabelError, match="empty manifest"):
        read_corpus(manifest(tmp_path, ""))
    path = tmp_path / "bad.csv"
    path.write_bytes(b"audio,labels,split\n\xff.wav,,unlabelled\n")
    with pytest.raises(LabelError, match=r"bad\.csv:2: not UTF-8"):
        read_corpus(path)


@pytest.mark.parametrize("column", ["audio", "labels"])
def test_manifest_symlink_out(tmp_path, column):
    root = tmp_path / "corpus"
    touch(tmp_path / "secret.wav")
    touch(tmp_path / "secret.lab", LAB.encode())
    touch(root / "a.wav")
    touch(root / "a.lab", LAB.encode())
    (root / "link.wav").symlink_to(tmp_path / "secret.wav")
    (root / "link.lab").symlink_to(tmp_path / "secret.lab")
    (root / "dir").symlink_to(tmp_path, target_is_directory=True)
    row, link = (("link.wav,a.lab,train", "link.wav") if column == "audio" else
                 ("a.wav,link.lab,train", "link.lab"))
    path = manifest(root, f"audio,labels,split\n{row}\n")
    with pytest.raises(LabelError, match=rf"corpus\.csv:2: .*/{link} is a symlink resolving "
                                         "outside"):
        read_corpus(path)
    # a folder symlink on the way out is caught the same way
    with pytest.raises(LabelError, match=r"corpus\.csv:2: .*resolving outside"):
        read_corpus(manifest(root, "audio,labels,split\ndir/secret.wav,a.lab,train\n"))


def test_manifest_missing_files_are_problems(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "b.wav")
    touch(tmp_path / "b.lab", LAB.encode())
    path = manifest(tmp_path, "audio,labels,split\na.wav,a.lab,train\nb.wav,b.lab,valid\n"
                              "c.wav,b.lab,test\n")
    corpus = read_corpus(path)
    assert [t.track_id for t in corpus.tracks] == ["b"]
    assert corpus.problems == [
        Problem(f"{path}:2", "label file 'a.lab' not found, skipped"),
        Problem(f"{path}:4", "audio file 'c.wav' not found, skipped")]


# --- unlabelled music folders -------------------------------------------------------------------

def test_music_folder(tmp_path):
    root = tmp_path / "music"
    for name in ["z.wav", "A/b.FLAC", f"A/{UNICODE}.ogg", "a.mp3", "notes.txt", "cover.jpg",
                 ".hidden.wav", "._z.wav", ".cache/x.wav", "B/C/deep.Ogg"]:
        touch(root / name)
    corpus = read_corpus(root)
    assert corpus.kind == "folder" and corpus.root == root and corpus.problems == []
    assert [t.track_id for t in corpus.tracks] == ["A/b", f"A/{UNICODE}", "B/C/deep", "a", "z"]
    assert all(t.split == "unlabelled" and t.labels is None for t in corpus.tracks)
    assert corpus.tracks[0].audio == root / "A" / "b.FLAC"
    assert read_corpus(str(root)).tracks == corpus.tracks  # deterministic
    with pytest.raises(CorpusError, match="no usable track in split.s. train"):
        read_corpus(root, splits=("train",))


def test_music_folder_symlinks_and_clashes(tmp_path):
    root = tmp_path / "music"
    touch(root / "a.wav")
    touch(root / "a.mp3")  # same track id 'a'
    touch(tmp_path / "outside" / "o.wav")
    (root / "out.wav").symlink_to(tmp_path / "outside" / "o.wav")
    (root / "outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "broken.wav").symlink_to(tmp_path / "nothing.wav")
    (root / "same.wav").symlink_to(root / "a.wav")
    corpus = read_corpus(root)
    assert [(t.track_id, t.audio.name) for t in corpus.tracks] == [("a", "a.mp3")]
    reasons = {Path(p.path).name: p.reason for p in corpus.problems}
    assert reasons == {
        "outdir": "symlink to a folder outside the corpus, skipped",
        "a.wav": "same track id 'a' as a.mp3, skipped",
        "broken.wav": "broken symlink, skipped",
        "out.wav": "symlink to a file outside the corpus, skipped",
        "same.wav": "same file as a.wav, skipped"}


# --- entry point and fingerprint ----------------------------------------------------------------

def test_read_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file or folder"):
        read_corpus(tmp_path / "missing")
    with pytest.raises(CorpusError, match="not a corpus"):
        read_corpus(touch(tmp_path / "list.txt"))
    with pytest.raises(CorpusError, match=r"unknown split.s. 'training' \(valid splits"):
        read_corpus(tmp_path, splits=("training",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no usable track"):
        read_corpus(tmp_path / "empty")


def test_fingerprint(tmp_path):
    root = jamendo(tmp_path)
    big = bytes(range(1, 256)) * 1200  # > 2 × 64 KiB, no zero byte
    touch(root / "audio" / "b.wav", big)
    first = read_corpus(root).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    os.utime(root / "audio" / "b.wav", ns=(1, 1))  # touching is not a change
    assert read_corpus(root).fingerprint() == first
    changes = [
        lambda: touch(root / "audio" / "b.wav", big[:-1] + b"\0"),      # last 64 KiB
        lambda: touch(root / "audio" / "b.wav", b"\0" + big[1:]),       # first 64 KiB
        lambda: touch(root / "audio" / "b.wav", big + b"\0"),           # size
        lambda: touch(root / "labels" / "a.lab", b"0 1 sing\n1 2 sing\n"),
        lambda: (root / "filelists" / "valid").write_text("b.wav\na.ogg"),  # split
    ]
    seen = {first}
    for change in changes:
        if change is changes[-1]:
            (root / "filelists" / "train").write_text(f"{UNICODE}.mp3\n")
        change()
        seen.add(read_corpus(root).fingerprint())
    assert len(seen) == len(changes) + 1


def test_importing_data_does_not_import_tensorflow():
    code = "import sys, tf_svdx.data; assert 'tensorflow' not in sys.modules, 'tensorflow'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
