"""tf_svdx.data.lab: strict .lab reading, writing, frame labels and coverage."""


import numpy as np
import pytest

from tf_svdx.config import FrontEnd
from tf_svdx.data.lab import (LabelError, Segment, coverage_gap, frame_labels, read_lab,
                              segments_from_frames, write_lab)

GOOD = "0 1.5 nosing\n1.5 4.25 sing\n4.25 10 nosing\n"


def write(tmp_path, content, name="song.lab"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_reads_good_file(tmp_path):
    assert read_lab(write(tmp_path, GOOD)) == [(0.0, 1.5, "nosing"), (1.5, 4.25, "sing"),
                                              (4.25, 10.0, "nosing")]


@pytest.mark.parametrize("content", [
    "\ufeff" + GOOD,                                    # byte-order mark
    GOOD.replace("\n", "\r\n"),                         # CRLF
    "\n\n" + GOOD.replace("\n", "\n\n") + "\n  \n",     # blank lines
    GOOD.replace(" ", "\t").rstrip("\n"),               # tabs, no trailing newline
    "0 1.5 nosing\n1.5005 4.25 sing\n4.2495 10 nosing",  # gaps/overlaps within 1 ms
])
def test_tolerated_variants(tmp_path, content):
    segments = read_lab(write(tmp_path, content))
    assert [s.label for s in segments] == ["nosing", "sing", "nosing"]
    assert segments[-1].end == 10.0


@pytest.mark.parametrize("content, line, reason", [
    ("0 1 nosing\n1 2\n", 2, "expected 3 fields"),
    ("0 1 nosing\n1 2 sing extra\n", 2, "got 4"),
    ("0 1 nosing\n1 two sing\n", 2, "end time 'two' is not a number"),
    ("0 1,5 nosing\n", 1, "end time '1,5' is not a number"),
    ("0 1 nosing\nnan 2 sing\n", 2, "start time 'nan' is not finite"),
    ("0 inf nosing\n", 1, "end time 'inf' is not finite"),
    ("0 1e999 nosing\n", 1, "not finite"),
    ("-0.5 1 nosing\n", 1, "negative start time -0.5"),
    ("0 1 nosing\n1 1 sing\n", 2, "end 1.0 is not after start 1.0"),
    ("0 1 nosing\n1 0.5 sing\n", 2, "is not after start"),
    ("0 1 nosing\n1 2 Singing\n", 2, "unknown label 'Singing' (valid labels: sing, nosing)"),
    ("0 1 nosing\n0.9 2 sing\n", 2, "overlaps the previous segment (line 1)"),
    ("0 1 nosing\n\n1.2 2 sing\n", 3, "gap of 0.2 s after the previous segment (line 1"),
    ("0 1 nosing\n1 2 sing\n0.5 0.8 nosing\n", 3, "out of order"),
])
def test_defects_name_file_line_and_reason(tmp_path, content, line, reason):
    path = write(tmp_path, content)
    with pytest.raises(LabelError) as info:
        read_lab(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in str(info.value)


def test_gap_message_states_tolerance(tmp_path):
    with pytest.raises(LabelError, match=r"contiguous within 0\.001 s"):
        read_lab(write(tmp_path, "0 1 nosing\n1.01 2 sing\n"))


@pytest.mark.parametrize("content", ["", "\n\n  \r\n", "\ufeff"])
def test_empty_file_is_an_error_without_line(tmp_path, content):
    path = write(tmp_path, content)
    with pytest.raises(LabelError) as info:
        read_lab(path)
    assert info.value.line is None
    assert str(info.value) == f"{path}: no segments (empty label file)"


def test_undecodable_file_names_the_line(tmp_path):
    path = write(tmp_path, b"0 1 nosing\n1 2 s\xe9ng\n")
    with pytest.raises(LabelError, match=r"song\.lab:2: not UTF-8"):
        read_lab(path)


def test_missing_file_is_a_label_error(tmp_path):
    with pytest.raises(LabelError, match=r"nope\.lab: cannot read label file"):
        read_lab(tmp_path / "nope.lab")


def test_write_read_round_trip_is_exact(tmp_path):
    segments = [(0.0, 0.1 + 0.2, "nosing"), (0.1 + 0.2, 12.345678901234, "sing"),
                (12.345678901234, 200.0, "nosing")]
    path = tmp_path / "sub" / "ünïcode.lab"
    write_lab(path, segments)
    assert read_lab(path) == segments
    assert all(isinstance(s, Segment) for s in read_lab(path))
    assert not list(path.parent.glob(".*.tmp"))


def test_write_checks_before_writing(tmp_path):
    path = tmp_path / "bad.lab"
    with pytest.raises(LabelError, match=r"bad\.lab:2: gap"):
        write_lab(path, [(0, 1, "nosing"), (2, 3, "sing")])
    with pytest.raises(LabelError, match="unknown label"):
        write_lab(path, [(0, 1, "voice")])
    with pytest.raises(LabelError, match="no segments"):
        write_lab(path, [])
    assert not path.exists() and not list(tmp_path.iterdir())


def test_frame_labels_hand_computed():
    # Frame centres are (315 i + 512) / 22050 s. In the sing segment [1.0, 2.0): frame 68
    # (0.99465 s) is out, 69 (1.00893 s) is the first in, 138 (1.99465 s) the last, 139
    # (2.00893 s) is out.
    segments = [(0.0, 1.0, "nosing"), (1.0, 2.0, "sing"), (2.0, 3.0, "nosing")]
    labels = frame_labels(segments, 250)
    assert labels.dtype == np.uint8 and labels.shape == (250,)
    assert np.flatnonzero(labels).tolist() == list(range(69, 139))
    # Frames past the labels' end (3 s: from frame 209 on) are 0 as well.
    assert frame_labels([(0.0, 3.0, "sing")], 250)[[208, 209]].tolist() == [1, 0]


def test_frame_labels_boundary_belongs_to_next_segment():
    fe = FrontEnd()
    centre_10 = (10 * fe.hop + fe.frame_len / 2) / fe.sample_rate
    labels = frame_labels([(0, centre_10, "nosing"), (centre_10, 5, "sing")], 20, fe)
    assert labels[9] == 0 and labels[10] == 1


def test_frame_labels_other_front_end_and_empty():
    fe = FrontEnd(sample_rate=1000, hop=100, frame_len=200)  # centres at 0.1, 0.2, 0.3, ...
    assert frame_labels([(0.15, 0.35, "sing")], 5, fe).tolist() == [0, 1, 1, 0, 0]
    assert frame_labels([(0, 1, "sing")], 0).shape == (0,)
    with pytest.raises(ValueError, match="unknown label"):
        frame_labels([(0, 1, "voice")], 3)


def test_coverage_gap():
    segments = [(0.0, 1.0, "nosing"), (1.0, 8.0, "sing")]
    assert coverage_gap(segments, 10.0) == pytest.approx(2.0)
    assert coverage_gap(segments, 8.0) == 0.0
    assert coverage_gap(segments, 5.0) == 0.0  # labels longer than the audio: nothing missing
    assert coverage_gap([(2.0, 4.0, "sing"), (3.0, 5.0, "nosing")], 6.0) == pytest.approx(3.0)


def test_segments_from_frames():
    active = np.array([0, 0, 1, 1, 1, 0, 1], bool)
    segments = segments_from_frames(active, 10.0)
    assert segments == [(0.0, 0.2, "nosing"), (0.2, 0.5, "sing"), (0.5, 0.6, "nosing"),
                        (0.6, 0.7, "sing")]
    assert segments_from_frames([1, 1], 2) == [(0.0, 1.0, "sing")]
    assert segments_from_frames([], 10) == []
    with pytest.raises(ValueError):
        segments_from_frames([0.3, 1], 10)
    with pytest.raises(ValueError):
        segments_from_frames([[True]], 10)
    with pytest.raises(ValueError):
        segments_from_frames([True], 0)


def test_segments_from_frames_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    active = np.repeat(rng.random(40) < 0.5, rng.integers(1, 30, 40))
    rate = 100.0
    path = tmp_path / "gen.lab"
    write_lab(path, segments_from_frames(active, rate))
    segments = read_lab(path)
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(active.size / rate)
    # Sampling the segments at each frame's middle gives the activity back.
    fe = FrontEnd(sample_rate=1000, hop=10, frame_len=10)  # centres at (i + 0.5) / 100 s
    assert np.array_equal(frame_labels(segments, active.size, fe), active.astype(np.uint8))
