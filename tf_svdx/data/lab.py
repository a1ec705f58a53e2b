"""Jamendo `.lab` label files: `start end sing|nosing` per line, seconds, contiguous segments.

Reading is strict: every defect is a `LabelError` naming the file and line, because a silently
misread label file trains a detector on wrong targets. Frame labels follow the SPEC §2 rule: a
frame is `sing` when its centre time lies in a `sing` segment.

No TensorFlow here: the corpus tools import this module.
"""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path

import numpy as np

from tf_svdx.config import FrontEnd
from tf_svdx.errors import LabelError
from tf_svdx.io import atomic_path

__all__ = ["LABELS", "TOLERANCE_S", "LabelError", "Segment", "read_lab", "read_text",
           "write_lab", "frame_labels", "coverage_gap", "segments_from_frames"]

LABELS = ("sing", "nosing")
TOLERANCE_S = 1e-3  # gaps or overlaps between consecutive segments up to this are rounding
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


class Segment(typing.NamedTuple):
    start: float
    end: float
    label: str


def _parse_time(token: str, name: str) -> float | str:
    """The time as a float, or the reason it is not one."""
    if _NON_FINITE.fullmatch(token):
        return f"{name} time {token!r} is not finite (NaN/inf)"
    if not _NUMBER.fullmatch(token):
        return f"{name} time {token!r} is not a number"
    value = float(token)
    if not math.isfinite(value):  # e.g. 1e999
        return f"{name} time {token!r} is not finite (NaN/inf)"
    return value


def _check_segment(start: float, end: float, label, previous: tuple[int, Segment] | None) -> str:
    """Why this segment (after `previous` = (line, segment)) is invalid, or '' if it is fine."""
    if not (math.isfinite(start) and math.isfinite(end)):
        return f"times must be finite (NaN/inf), got {start} {end}"
    if start < 0:
        return f"negative start time {start}"
    if end <= start:
        return f"end {end} is not after start {start}"
    if label not in LABELS:
        return f"unknown label {label!r} (valid labels: {', '.join(LABELS)})"
    if previous is not None:
        line, prev = previous
        if start < prev.start:
            return (f"segments out of order: starts at {start} s, before the previous segment "
                    f"(line {line}) which starts at {prev.start} s")
        if start < prev.end - TOLERANCE_S:
            return (f"overlaps the previous segment (line {line}): starts at {start} s, before "
                    f"its end {prev.end} s (tolerance {TOLERANCE_S} s)")
        if start > prev.end + TOLERANCE_S:
            return (f"gap of {start - prev.end:.6g} s after the previous segment (line {line}, "
                    f"ending at {prev.end} s); segments must be contiguous within "
                    f"{TOLERANCE_S} s")
    return ""


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (byte-order mark dropped, line ends normalised to \\n); an undecodable
    one raises LabelError naming the line. Shared with the corpus filelists and manifests."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabelError(path, raw.count(b"\n", 0, e.start) + 1,
                         f"not UTF-8 text (undecodable byte at offset {e.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lab(path: str | Path) -> list[Segment]:
    """Parse a `.lab` file strictly; every defect raises `LabelError(path, line, reason)`.

    Blank lines, CRLF/CR line ends and a UTF-8 byte-order mark are accepted. Segments must be in
    time order, each ending after it starts, and consecutive ones must meet within TOLERANCE_S.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as e:
        raise LabelError(path, None, f"cannot read label file ({e.strerror})") from None
    segments: list[Segment] = []
    previous: tuple[int, Segment] | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise LabelError(path, lineno,
                             f"expected 3 fields 'start end label', got {len(fields)}")
        start, end = _parse_time(fields[0], "start"), _parse_time(fields[1], "end")
        for value in (start, end):
            if isinstance(value, str):
                raise LabelError(path, lineno, value)
        reason = _check_segment(start, end, fields[2], previous)
        if reason:
            raise LabelError(path, lineno, reason)
        segment = Segment(start, end, fields[2])
        segments.append(segment)
        previous = (lineno, segment)
    if not segments:
        raise LabelError(path, None, "no segments (empty label file)")
    return segments


def write_lab(path: str | Path, segments: typing.Iterable[tuple[float, float, str]]) -> None:
    """Write segments atomically in the `.lab` format, after the same checks `read_lab` makes.

    Times are written in Python's shortest round-trip form, so read_lab gives back equal floats.
    """
    path = Path(path)
    lines, previous = [], None
    for lineno, (start, end, label) in enumerate(segments, 1):
        start, end = float(start), float(end)
        reason = _check_segment(start, end, label, previous)
        if reason:
            raise LabelError(path, lineno, reason)
        previous = (lineno, Segment(start, end, label))
        lines.append(f"{start!r} {end!r} {label}\n")
    if not lines:
        raise LabelError(path, None, "no segments to write")
    with atomic_path(path) as tmp:
        tmp.write_bytes("".join(lines).encode("utf-8"))


def frame_labels(segments: typing.Sequence[tuple[float, float, str]], n_frames: int,
                 fe: FrontEnd = FrontEnd()) -> np.ndarray:
    """uint8[n_frames]: 1 where the frame's centre time lies in a `sing` segment [start, end).

    Frames outside every segment (e.g. past the end of the labels) are 0; use `coverage_gap` to
    decide whether that is acceptable.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be ≥ 0, got {n_frames}")
    centres = fe.frame_times(int(n_frames))
    labels = np.zeros(int(n_frames), np.uint8)
    for start, end, label in segments:
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r} (valid labels: {', '.join(LABELS)})")
        if label == "sing":
            first, stop = np.searchsorted(centres, [start, end], "left")
            labels[first:stop] = 1
    return labels


def coverage_gap(segments: typing.Iterable[tuple[float, float, str]], duration: float) -> float:
    """Seconds of [0, duration] that no segment covers (labels stopping short of the audio)."""
    covered, reach = 0.0, 0.0
    for start, end, _ in sorted(segments):
        start, end = max(float(start), reach), min(float(end), duration)
        if end > start:
            covered += end - start
            reach = end
    return max(0.0, float(duration) - covered)


def segments_from_frames(active: typing.Sequence[bool] | np.ndarray,
                         frame_rate: float) -> list[Segment]:
    """Boolean activity per frame → alternating sing/nosing segments from 0 to len/frame_rate.

    Frame i stands for the interval [i / frame_rate, (i + 1) / frame_rate). An empty vector gives
    no segments.
    """
    active = np.asarray(active)
    if active.ndim != 1:
        raise ValueError(f"active must be 1-D, got shape {active.shape}")
    if active.dtype != bool:
        if active.size and not np.isin(active, (0, 1)).all():
            raise ValueError("active must be boolean (or 0/1)")
        active = active.astype(bool)
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be positive and finite, got {frame_rate}")
    if not active.size:
        return []
    changes = np.flatnonzero(active[1:] != active[:-1]) + 1
    bounds = [0, *changes.tolist(), active.size]
    return [Segment(lo / frame_rate, hi / frame_rate, "sing" if active[lo] else "nosing")
            for lo, hi in zip(bounds[:-1], bounds[1:])]
