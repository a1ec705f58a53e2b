"""Instruments: General MIDI programs, a Standard MIDI File writer and fluidsynth rendering."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from tf_svdx.data.democorpus.chorales import Note
from tf_svdx.data.democorpus.signal import SAMPLE_RATE, conform, fit_length
from tf_svdx.errors import MissingDependencyError

# 0-based GM programs with their names. Voice-like programs are never used for "nosing" sound:
# 52 Choir Aahs, 53 Voice Oohs, 54 Synth Voice, 85 Lead 6 (voice), 91 Pad 4 (choir).
VOICE_LIKE = frozenset({52, 53, 54, 85, 91})
GM_NAMES = {
    0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1",
    6: "Harpsichord", 11: "Vibraphone", 16: "Drawbar Organ", 19: "Church Organ", 21: "Accordion",
    22: "Harmonica", 24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)",
    32: "Acoustic Bass", 33: "Electric Bass (finger)", 40: "Violin", 41: "Viola", 42: "Cello",
    43: "Contrabass", 46: "Orchestral Harp", 48: "String Ensemble 1", 49: "String Ensemble 2",
    56: "Trumpet", 57: "Trombone", 58: "Tuba", 60: "French Horn", 61: "Brass Section",
    64: "Soprano Sax", 65: "Alto Sax", 66: "Tenor Sax", 68: "Oboe", 69: "English Horn",
    70: "Bassoon", 71: "Clarinet", 73: "Flute", 74: "Recorder", 75: "Pan Flute",
}
# Alto, tenor and bass: pitched, sustained or plucked accompaniment.
ACCOMPANIMENT = (0, 1, 4, 6, 16, 19, 21, 24, 25, 32, 33, 41, 42, 43, 46, 48, 49, 57, 58, 60,
                 61, 66, 70, 71)
# The melody when it is not sung (the hard negative), in a singer's octave: high or low voices.
LEAD_HIGH = (40, 56, 64, 65, 68, 71, 73, 74, 11, 0, 22)
LEAD_LOW = (42, 57, 60, 66, 70, 71, 41, 0)
assert not VOICE_LIKE & (set(ACCOMPANIMENT) | set(LEAD_HIGH) | set(LEAD_LOW))

TPQ = 480  # MIDI ticks per quarter note


def program_name(program: int) -> str:
    return f"{program} {GM_NAMES[program]}"


def write_midi(path: Path, bpm: float, channels: list[tuple[int, int, list[Note]]]) -> None:
    """A format-0 Standard MIDI File: one tempo; per channel (program, velocity, notes in
    quarters)."""
    events = [(0, 0, b"\xff\x51\x03" + int(round(60e6 / bpm)).to_bytes(3, "big"))]
    for ch, (program, velocity, notes) in enumerate(channels):
        events.append((0, 0, bytes([0xC0 | ch, program])))
        events.append((0, 0, bytes([0xB0 | ch, 7, 100])))  # channel volume
        for on, dur, pitch in notes:
            t0, t1 = int(round(on * TPQ)), int(round((on + dur) * TPQ))
            if t1 > t0:  # note-off (order 1) sorts before a note-on (2) at the same tick
                events.append((t0, 2, bytes([0x90 | ch, pitch, velocity])))
                events.append((t1, 1, bytes([0x80 | ch, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    track, last = bytearray(), 0
    for tick, _, data in events:
        track += _varlen(tick - last) + data
        last = tick
    track += _varlen(0) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ)
                     + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def _varlen(v: int) -> bytes:
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    return bytes(reversed(out))


def render(channels: list[tuple[int, int, list[Note]]], bpm: float, n_samples: int,
           soundfont: str, workdir: Path, name: str) -> np.ndarray:
    """Render notes (quarters) with fluidsynth → conformed mono float64 of exactly n_samples.

    Silence when no channel has a note. Float output without dither, one synthesis thread:
    the same input gives the same samples.
    """
    if not any(notes for _, _, notes in channels):
        return np.zeros(n_samples)
    midi, wav = workdir / f"{name}.mid", workdir / f"{name}.wav"
    write_midi(midi, bpm, channels)
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-T", "wav",
           "-O", "float", "-o", "synth.cpu-cores=1", "-F", str(wav), soundfont, str(midi)]
    try:
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise MissingDependencyError("fluidsynth not found: install the Debian package "
                                     "fluidsynth") from None
    if result.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"fluidsynth failed on {midi}: "
                           f"{result.stderr.decode(errors='replace').strip()[-300:]}")
    y, sr = sf.read(wav, dtype="float64", always_2d=True)
    return fit_length(conform(y.mean(axis=1), sr), n_samples)
