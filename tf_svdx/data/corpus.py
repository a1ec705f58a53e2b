"""Find a corpus's tracks: a Jamendo-layout folder, a CSV manifest, or a folder of unlabelled music.

This module only locates files and checks the corpus's structure; decoding audio and parsing
`.lab` files happen later (prepare), where one bad file is skipped without losing the rest.
Recoverable defects (a listed file that is missing, a track without labels) become `Problem`s;
structural ones (a track in two splits, a manifest path leaving its folder) raise `LabelError`
naming the file and line; an unusable corpus raises `CorpusError`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from tf_svdx.data.lab import read_text
from tf_svdx.errors import AudioError, CorpusError, LabelError

__all__ = ["AUDIO_EXTENSIONS", "SPLITS", "Corpus", "Problem", "Track", "read_corpus"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SPLITS = ("train", "valid", "test", "unlabelled")
LABELLED_SPLITS = SPLITS[:3]
MANIFEST_COLUMNS = ("audio", "labels", "split")
_HASH_CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Track:
    track_id: str  # audio path relative to the corpus root, POSIX, NFC, without extension
    audio: Path
    labels: Path | None  # None = unlabelled (GAN-only data)
    split: str  # one of SPLITS


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something skipped; `path` may carry a line number (`filelists/train:3`)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass
class Corpus:
    root: Path
    kind: str  # 'jamendo' | 'manifest' | 'folder'
    tracks: list[Track]
    problems: list[Problem] = dataclasses.field(default_factory=list)
    unlisted: list[str] = dataclasses.field(default_factory=list)  # Jamendo audio in no filelist

    def split(self, name: str) -> list[Track]:
        return [t for t in self.tracks if t.split == name]

    def summary(self) -> str:
        counts = ", ".join(f"{s} {n}" for s in SPLITS if (n := len(self.split(s))))
        text = f"{self.kind} corpus {self.root}: {len(self.tracks)} tracks ({counts})"
        if self.problems:
            text += f", {len(self.problems)} skipped"
        if self.unlisted:
            text += f", {len(self.unlisted)} audio files in no filelist (ignored)"
        return text

    def fingerprint(self) -> str:
        """Short hash of the tracks' ids, splits and contents (size, first and last 64 KiB of the
        audio, whole label file): changes when the data changes, not when files are touched."""
        digest = hashlib.sha256()
        for track in sorted(self.tracks, key=lambda t: (t.track_id, t.split)):
            labels = _content_hash(track.labels, whole=True) if track.labels else ""
            digest.update("\0".join([track.track_id, track.split, _content_hash(track.audio),
                                     labels]).encode("utf-8") + b"\n")
        return digest.hexdigest()[:16]


def _content_hash(path: Path, whole: bool = False) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if whole or size <= 2 * _HASH_CHUNK:
                data = f.read()
            else:
                data = f.read(_HASH_CHUNK)
                f.seek(size - _HASH_CHUNK)
                data += f.read(_HASH_CHUNK)
    except OSError as e:
        raise AudioError(path, f"cannot read ({e.strerror})") from None
    return f"{size}:{hashlib.sha256(data).hexdigest()}"


def _nfc(text: str) -> str:
    # macOS writes decomposed (NFD) names; lists typed elsewhere are composed (NFC).
    return unicodedata.normalize("NFC", text)


def _is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def _stem(relative: str) -> str:
    """`a/b.Wav` → `a/b`: the track id of a relative POSIX audio path."""
    path = PurePosixPath(relative)
    return str(path.with_suffix("")) if _is_audio(path.name) else relative


def _inside(path: Path, real_root: Path) -> bool:
    """Whether `path`, with every symlink resolved, lies under `real_root` (already resolved)."""
    try:
        return path.resolve().is_relative_to(real_root)
    except (OSError, RuntimeError):  # symlink loop
        return False


def _scan_audio(root: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Audio files under `root` by NFC relative POSIX path, sorted. Hidden files and folders
    (e.g. macOS `._x.mp3`) are ignored; symlinks leaving `root`, broken ones and second links to
    one file become Problems."""
    real_root = root.resolve()
    found: dict[str, Path] = {}
    first_name: dict[Path, str] = {}
    problems: list[Problem] = []

    def unreadable(error: OSError):
        problems.append(Problem(str(error.filename), f"cannot list folder ({error.strerror})"))

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:  # os.walk does not follow folder symlinks; say so when one leaves root
            if os.path.islink(os.path.join(folder, d)) and not _inside(Path(folder, d), real_root):
                problems.append(Problem(os.path.join(folder, d),
                                        "symlink to a folder outside the corpus, skipped"))
        for name in sorted(files):
            if name.startswith(".") or not _is_audio(name):
                continue
            path = Path(folder, name)
            if not path.exists():
                problems.append(Problem(str(path), "broken symlink, skipped"))
            elif not _inside(path, real_root):
                problems.append(Problem(str(path), "symlink to a file outside the corpus, "
                                                   "skipped"))
            elif (real := path.resolve()) in first_name:
                problems.append(Problem(str(path), f"same file as {first_name[real]}, skipped"))
            else:
                first_name[real] = found_name = _nfc(path.relative_to(root).as_posix())
                found[found_name] = path
    return dict(sorted(found.items())), problems


def _relative_path(name: str, listing: Path, line: int, what: str) -> str:
    """`name` as an NFC POSIX path that stays inside the listing's folder, else LabelError."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() \
            or PureWindowsPath(name).drive:
        raise LabelError(listing, line, f"{what} path {name!r} is absolute; paths must be "
                                        f"relative to {listing.parent}")
    if ".." in PurePosixPath(name).parts:
        raise LabelError(listing, line, f"{what} path {name!r} leaves {listing.parent} ('..')")
    return _nfc(PurePosixPath(name).as_posix())


# --- 1. Jamendo layout -------------------------------------------------------------------------

def _filelist_entries(path: Path):
    """(line number, name) of each entry; blank lines and `#` comment lines are skipped. Names
    may contain spaces, so only surrounding whitespace is stripped."""
    try:
        text = read_text(path)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read filelist ({e.strerror})") from None
    for lineno, line in enumerate(text.split("\n"), 1):
        name = line.strip()
        if name and not name.startswith("#"):
            yield lineno, name


def _find_listed(name: str, audio: dict[str, Path], by_stem: dict[str, list[str]]) -> str | None:
    """The audio key a filelist entry means: exact, else the one file with its stem (lists
    written for `.ogg` files still work after converting them to `.wav`)."""
    if name in audio:
        return name
    candidates = by_stem.get(_stem(name), [])
    return candidates[0] if len(candidates) == 1 else None


def _read_jamendo(root: Path, splits: tuple[str, ...]) -> Corpus:
    for sub in ("audio", "labels", "filelists"):
        if not (root / sub).is_dir():
            raise CorpusError(
                f"{root}: looks like a Jamendo-layout corpus but has no {sub}/ folder (expected "
                f"audio/, labels/<stem>.lab and filelists/{{train,valid,test}})")
    audio, problems = _scan_audio(root / "audio")
    by_stem: dict[str, list[str]] = {}
    for key in audio:
        by_stem.setdefault(_stem(key), []).append(key)
    real_labels = (root / "labels").resolve()
    label_files = {_nfc(p.relative_to(root / "labels").with_suffix("").as_posix()): p
                   for p in (root / "labels").rglob("*.lab")}

    tracks: list[Track] = []
    ids: dict[str, str] = {}  # track id → file:line
    listed: dict[str, tuple[str, str]] = {}  # audio key (or unmatched name) → (split, file:line)
    for split in LABELLED_SPLITS:
        filelist = root / "filelists" / split
        if not filelist.is_file() and (root / "filelists" / f"{split}.txt").is_file():
            filelist = root / "filelists" / f"{split}.txt"
        if not filelist.is_file():
            if split in splits:
                raise CorpusError(f"{filelist}: missing filelist for split {split!r} (one audio "
                                  f"file name per line)")
            continue
        for lineno, name in _filelist_entries(filelist):
            here = f"{filelist}:{lineno}"
            relative = _relative_path(name, filelist, lineno, "audio")
            key = _find_listed(relative, audio, by_stem)
            if (key or relative) in listed:
                other_split, there = listed[key or relative]
                raise LabelError(filelist, lineno, (
                    f"{name!r} is listed twice in split {split!r} (first at {there})"
                    if other_split == split else
                    f"{name!r} is in split {split!r} and also in split {other_split!r} "
                    f"({there}); a track may be in one split only"))
            listed[key or relative] = (split, here)
            if split not in splits:
                continue
            if key is None:
                problems.append(Problem(here, f"listed audio file {name!r} not found in "
                                              f"{root / 'audio'}, skipped"))
                continue
            labels = label_files.get(_stem(key))
            if labels is None or not labels.is_file():
                problems.append(Problem(here, f"no label file labels/{_stem(key)}.lab for "
                                              f"{name!r}, skipped"))
            elif not _inside(labels, real_labels):
                problems.append(Problem(here, f"label file {labels} is a symlink leaving "
                                              f"{root / 'labels'}, skipped"))
            elif (track_id := f"audio/{_stem(key)}") in ids:
                raise LabelError(filelist, lineno, f"{name!r} is the same track {track_id!r} as "
                                                   f"the entry at {ids[track_id]} (same name, "
                                                   f"other extension)")
            else:
                ids[track_id] = here
                tracks.append(Track(track_id, audio[key], labels, split))
    unlisted = [f"audio/{key}" for key in audio if key not in listed]
    return Corpus(root, "jamendo", tracks, problems, unlisted)


# --- 2. CSV manifest ---------------------------------------------------------------------------

def _manifest_rows(manifest: Path):
    """(line number, {column: stripped value}) per non-blank row, after checking the header."""
    try:
        text = read_text(manifest)
    except OSError as e:
        raise CorpusError(f"{manifest}: cannot read manifest ({e.strerror})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise LabelError(manifest, None, "empty manifest (expected a header "
                                             "audio,labels,split)")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in ("audio", "split") if c not in columns]
        unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
        if missing or unknown or len(set(columns)) != len(columns):
            found = ",".join(columns)
            raise LabelError(manifest, reader.line_num, f"bad header {found!r}: expected columns "
                                                        f"audio,labels,split (labels optional)"
                             + (f"; missing {', '.join(missing)}" if missing else ""))
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise LabelError(manifest, reader.line_num,
                                 f"expected {len(columns)} fields ({','.join(columns)}), "
                                 f"got {len(row)}")
            yield reader.line_num, {c: cell.strip() for c, cell in zip(columns, row)}
    except csv.Error as e:
        raise LabelError(manifest, reader.line_num, f"malformed CSV ({e})") from None


def _read_manifest(manifest: Path, splits: tuple[str, ...]) -> Corpus:
    root = manifest.parent
    real_root = root.resolve()
    tracks: list[Track] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}  # track id → manifest line
    for lineno, row in _manifest_rows(manifest):
        name, label_name, split = row["audio"], row.get("labels", ""), row["split"]
        here = f"{manifest}:{lineno}"
        if split not in SPLITS:
            raise LabelError(manifest, lineno,
                             f"unknown split {split!r} (valid splits: {', '.join(SPLITS)})")
        if not name:
            raise LabelError(manifest, lineno, "empty audio path")
        if split != "unlabelled" and not label_name:
            raise LabelError(manifest, lineno, f"split {split!r} needs a labels path (leave it "
                                               f"empty only for split 'unlabelled')")
        if split == "unlabelled" and label_name:
            raise LabelError(manifest, lineno, "split 'unlabelled' must have an empty labels "
                                               "path")
        relative = _relative_path(name, manifest, lineno, "audio")
        if not _is_audio(relative):
            raise LabelError(manifest, lineno, f"{name!r} is not a supported audio file "
                                               f"(supported: {' '.join(AUDIO_EXTENSIONS)})")
        track_id = _stem(relative)
        if track_id in first_line:
            raise LabelError(manifest, lineno, f"duplicate audio {name!r}: the same track "
                                               f"{track_id!r} is at line {first_line[track_id]}")
        first_line[track_id] = lineno
        audio = root / relative
        labels = root / _relative_path(label_name, manifest, lineno, "labels") \
            if label_name else None
        for path in filter(None, (audio, labels)):
            if not _inside(path, real_root):
                raise LabelError(manifest, lineno, f"{path} is a symlink resolving outside "
                                                   f"{root}")
        if split not in splits:
            continue
        if not audio.is_file():
            problems.append(Problem(here, f"audio file {name!r} not found, skipped"))
        elif labels is not None and not labels.is_file():
            problems.append(Problem(here, f"label file {label_name!r} not found, skipped"))
        else:
            tracks.append(Track(track_id, audio, labels, split))
    return Corpus(root, "manifest", tracks, problems)


# --- 3. A folder of unlabelled music -----------------------------------------------------------

def _read_folder(root: Path, splits: tuple[str, ...]) -> Corpus:
    audio, problems = _scan_audio(root)
    tracks, first = [], {}
    for key, path in audio.items():
        track_id = _stem(key)
        if track_id in first:  # `a.wav` beside `a.mp3`: one id, keep the first
            problems.append(Problem(str(path), f"same track id {track_id!r} as {first[track_id]}"
                                               f", skipped"))
        else:
            first[track_id] = key
            tracks.append(Track(track_id, path, None, "unlabelled"))
    return Corpus(root, "folder", tracks if "unlabelled" in splits else [], problems)


# --- entry point -------------------------------------------------------------------------------

def read_corpus(source: str | Path, *, splits: str | tuple[str, ...] | list[str] | None = None
                ) -> Corpus:
    """Find the tracks of `source`: a Jamendo-layout folder (one with `labels/` or `filelists/`),
    a `.csv` manifest, or any other folder (unlabelled music, searched recursively).

    `splits` keeps only the tracks of those splits (default: all). Raises CorpusError when no
    track is left, naming the first problem.
    """
    source = Path(source).absolute()
    if isinstance(splits, str):
        splits = (splits,)
    splits = tuple(SPLITS if splits is None else splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CorpusError(f"unknown split(s) {', '.join(map(repr, unknown))} "
                          f"(valid splits: {', '.join(SPLITS)})")
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise CorpusError(f"{source}: not a corpus (give a folder or a .csv manifest)")
        corpus = _read_manifest(source, splits)
    elif source.is_dir():
        jamendo = (source / "labels").is_dir() or (source / "filelists").is_dir()
        corpus = _read_jamendo(source, splits) if jamendo else _read_folder(source, splits)
    else:
        raise CorpusError(f"{source}: no such file or folder")
    if not corpus.tracks:
        first = f" (first problem: {corpus.problems[0]})" if corpus.problems else ""
        raise CorpusError(f"{source}: no usable track in split(s) {', '.join(splits)} of this "
                          f"{corpus.kind} corpus{first}")
    return corpus
