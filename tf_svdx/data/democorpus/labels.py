"""Sing/nosing labels from an ISOLATED vocal stem (DATA.md recipe).

10 ms frames are active above (95th percentile of the frame levels − 30 dB); inactive gaps
shorter than 0.3 s between active runs are filled, then active runs shorter than 0.2 s are
dropped; the result is written as complementary sing/nosing segments from 0 to the stem's end.
"""

from __future__ import annotations

import numpy as np

from tf_svdx.data.democorpus.signal import FRAME_S, active_frames
from tf_svdx.data.lab import Segment, segments_from_frames

__all__ = ["labels_from_stem", "smooth_activity"]


def smooth_activity(active: np.ndarray, frame_s: float = FRAME_S, min_gap_s: float = 0.3,
                    min_seg_s: float = 0.2) -> np.ndarray:
    """Fill inactive gaps < min_gap_s between active runs, then drop active runs < min_seg_s."""
    active = np.asarray(active, bool).copy()
    min_gap = int(round(min_gap_s / frame_s))
    min_seg = int(round(min_seg_s / frame_s))
    starts, stops = _runs(active)
    for stop, nxt in zip(stops[:-1], starts[1:]):  # gaps between consecutive active runs
        if nxt - stop < min_gap:
            active[stop:nxt] = True
    for start, stop in zip(*_runs(active)):
        if stop - start < min_seg:
            active[start:stop] = False
    return active


def labels_from_stem(stem: np.ndarray, sr: int, *, frame_s: float = FRAME_S,
                     rel_db: float = -30.0, percentile: float = 95.0, min_gap_s: float = 0.3,
                     min_seg_s: float = 0.2) -> list[Segment]:
    """Complementary (start, end, "sing"|"nosing") segments covering 0 → len(stem) / sr exactly.

    A stem without sound (all frames below −80 dBFS) is one `nosing` segment.
    """
    n = len(stem)
    if n == 0:
        return []
    active = active_frames(stem, sr, rel_db=rel_db, percentile=percentile, frame_s=frame_s)
    segments = segments_from_frames(smooth_activity(active, frame_s, min_gap_s, min_seg_s),
                                    1.0 / frame_s)
    last = segments[-1]
    segments[-1] = Segment(last.start, n / sr, last.label)  # the last frame may be partial
    return segments


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)
