"""Signal helpers of the corpus builder: one rate and band limit, levels, mixing, FLAC output.

Every source (fluidsynth at 22,050 Hz, Sinsy at 48 kHz, Festival at 16 kHz, espeak-ng at 22,050
Hz, Ogg recordings at 44.1 kHz, speech at 22.05–44.1 kHz) goes through `conform`: resampled to
16 kHz and back to 22,050 Hz with soxr's linear-phase HQ filter. Every file of the corpus is
therefore flat to 7.3 kHz and empty above 8 kHz (Festival's Nyquist frequency), so no source can
be told apart by its bandwidth, and nothing is delayed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tf_svdx.io import atomic_path

SAMPLE_RATE = 22050
BAND_RATE = 16000  # the common band limit is this rate's Nyquist frequency (8 kHz)
FRAME_S = 0.01
# Track lengths are whole multiples of this many samples (20 ms): 10 ms label frames then end
# exactly at the file end.
LENGTH_QUANTUM = 441
SILENCE_DB = -80.0  # frames below this (dBFS) count as silence when taking level percentiles


def conform(x: np.ndarray, sr: int) -> np.ndarray:
    """Mono float64 at SAMPLE_RATE, band-limited to BAND_RATE / 2 (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if not len(x):
        return x
    if sr != BAND_RATE:
        x = soxr.resample(x, sr, BAND_RATE, quality="HQ")
    return soxr.resample(x, BAND_RATE, SAMPLE_RATE, quality="HQ")


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """`x` cut or zero-padded to n samples."""
    out = np.zeros(n)
    out[:min(n, len(x))] = x[:n]
    return out


def place(track: np.ndarray, clip: np.ndarray, start: int) -> None:
    """Add `clip` into `track` from sample `start` (clipped at both ends)."""
    if start < 0:
        clip, start = clip[-start:], 0
    stop = min(len(track), start + len(clip))
    if stop > start:
        track[start:stop] += clip[:stop - start]


def frame_edges(n: int, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """Sample edges of consecutive `frame_s` frames covering n samples (the last may be short,
    never empty: at 22,050 Hz frame 87 of a 19,184-sample signal would start at 19,183.5, which
    rounds onto the end)."""
    n_frames = int(np.ceil(n / (sr * frame_s) - 1e-9))
    starts = np.round(np.arange(n_frames) * sr * frame_s).astype(np.int64)
    return np.append(starts[starts < n], n)


def frame_levels(x: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """Mean power of each frame in dB (full scale = 0 dB for a ±1 square wave)."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return np.zeros(0)
    edges = frame_edges(len(x), sr, frame_s)
    power = np.add.reduceat(x ** 2, edges[:-1]) / np.maximum(np.diff(edges), 1)
    return 10.0 * np.log10(power + 1e-20)


def active_frames(x: np.ndarray, sr: int, rel_db: float = -30.0, percentile: float = 95.0,
                  frame_s: float = FRAME_S, floor_db: float = SILENCE_DB) -> np.ndarray:
    """bool per frame: level above (`percentile` of the non-silent frame levels + `rel_db`).

    The percentile is taken over frames above `floor_db`, so that a stem that is silent most of
    the time still gets its threshold from its sound; a stem without any such frame is inactive.
    """
    level = frame_levels(x, sr, frame_s)
    loud = level[level > floor_db]
    if not loud.size:
        return np.zeros(len(level), bool)
    return level > max(np.percentile(loud, percentile) + rel_db, floor_db)


def active_samples(x: np.ndarray, sr: int, **kwargs) -> np.ndarray:
    """`active_frames` spread to a per-sample mask."""
    act = active_frames(x, sr, **kwargs)
    return np.repeat(act, np.diff(frame_edges(len(x), sr)))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20)) if len(x) else 0.0


def limit_bursts(x: np.ndarray, sr: int, headroom_db: float = 9.0) -> np.ndarray:
    """Turn down frames more than `headroom_db` above the median level of the active frames.

    Sinsy's voice model extrapolates into loud bursts on some notes; a singer's level never
    jumps like that. The gain is computed per 10 ms frame and interpolated between frame centres
    so that no click is added.
    """
    level = frame_levels(x, sr)
    act = active_frames(x, sr)
    if not act.any():
        return x
    ceiling = np.median(level[act]) + headroom_db
    gain_db = np.minimum(0.0, ceiling - level)
    if not (gain_db < 0).any():
        return x
    edges = frame_edges(len(x), sr)
    centres = (edges[:-1] + edges[1:]) / 2.0
    gain = 10.0 ** (np.interp(np.arange(len(x)), centres, gain_db) / 20.0)
    return x * gain


def highpass(x: np.ndarray, sr: int, cutoff_hz: float = 50.0) -> np.ndarray:
    """Zero-phase 4th-order Butterworth high-pass: removes the synthesizers' DC and rumble."""
    from scipy.signal import butter, sosfiltfilt
    if len(x) < 64:
        return x
    return sosfiltfilt(butter(2, cutoff_hz, "highpass", fs=sr, output="sos"), x)


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A small synthetic room (exponentially decaying noise), so that a dry voice is not a cue
    against fluidsynth's reverberant instruments. Returns the wet signal and its settings."""
    from scipy.signal import fftconvolve
    rt60 = float(rng.uniform(0.3, 1.2))
    wet_db = float(rng.uniform(-18.0, -8.0))
    predelay = int(rng.uniform(0.01, 0.03) * sr)
    n = int(rt60 * sr)
    ir = rng.standard_normal(n) * np.exp(-6.91 * np.arange(n) / n)  # −60 dB at rt60
    ir *= 10 ** (wet_db / 20.0) / np.sqrt(np.sum(ir ** 2))
    ir = np.concatenate([[1.0], np.zeros(predelay), ir])
    wet = fftconvolve(x, ir)[:len(x)]
    return wet, {"rt60_s": round(rt60, 3), "wet_db": round(wet_db, 2)}


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def write_flac(path: Path, x: np.ndarray) -> None:
    """16-bit mono FLAC at SAMPLE_RATE, written atomically (FLAC output is byte-reproducible)."""
    with atomic_path(path) as tmp:
        sf.write(tmp, to_pcm16(x), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
