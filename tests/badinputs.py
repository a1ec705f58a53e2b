"""Reusable bad (and awkward-but-valid) audio inputs for loader / corpus / CLI tests.

    cases = make_bad_inputs(tmp_folder, source_wave, sr)
    for c in cases: ... c.name, c.path, c.expect, c.check

`expect` is "ok" (the file must load; `c.check(x)` — x is the loaded 22,050 Hz mono float32 —
must be True, `c.note` says what it checks) or a substring of the expected `AudioError.reason`.
Everything is derived from `source_wave` (mono float, ≤ 3 s used) with soundfile only (its
bundled libsndfile 1.2 writes WAV, FLAC, OGG Vorbis/Opus and MP3), so the set is deterministic
and needs no external tools. Files are short so a test over all of them takes seconds.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

OK = "ok"
TARGET_SR = 22050

# Names, in build order: tests can parametrise over these at collection time.
CASE_NAMES = (
    # damaged files
    "truncated_wav", "truncated_flac", "truncated_mp3", "truncated_mp3_no_xing",
    "truncated_ogg", "truncated_ogg_at_page", "corrupt_flac_frames", "flac_missing_bytes",
    "flac_header_overstates_length", "streamed_flac_no_length", "corrupt_ogg_page",
    "ogg_page_missing", "wav_bad_rate_field", "zero_length_file", "text_file_as_wav",
    "nan_float_wav", "inf_float_wav", "zero_samples_wav", "header_only_flac",
    # unsupported things
    "unsupported_extension", "float64_wav", "alaw_wav", "ogg_opus", "missing_file",
    "directory_named_wav",
    # awkward but valid
    "wav_8khz", "wav_96khz", "wav_6ch", "silence_wav", "unicode_name_flac", "int32_wav",
    "int24_wav", "uint8_wav", "float32_wav", "flac_24bit", "flac_8bit", "mp3_no_xing",
    "stereo_ogg", "uppercase_ext",
)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    path: Path
    expect: str  # "ok" or a substring of the AudioError reason
    check: Callable[[np.ndarray], bool] | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.expect == OK


def _bytes(data, sr, fmt, subtype) -> bytes:
    bio = io.BytesIO()
    sf.write(bio, data, sr, format=fmt, subtype=subtype)
    return bio.getvalue()


def _tone(freq, sr, seconds, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _ogg_pages(b: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(b):
        nseg = b[pos + 26]
        end = pos + 27 + nseg + sum(b[pos + 27:pos + 27 + nseg])
        out.append((pos, end))
        pos = end
    return out


def _mp3_strip_xing(b: bytes) -> bytes:
    """Remove the first frame (LAME's Xing/Info frame) → an MP3 like `ffmpeg -write_xing 0`."""
    assert b[0] == 0xFF, "expected a bare MPEG stream from libsndfile"
    h = b[:4]
    mpeg1 = (h[1] >> 3) & 3 == 3
    br = ((0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320) if mpeg1 else
          (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160))[h[2] >> 4] * 1000
    rate = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000),
            0: (11025, 12000, 8000)}[(h[1] >> 3) & 3][(h[2] >> 2) & 3]
    length = (1152 if mpeg1 else 576) // 8 * br // rate + ((h[2] >> 1) & 1)
    assert b"Xing" in b[:length] or b"Info" in b[:length]
    return b[length:]


def _flac_frame_starts(b: bytes) -> list[int]:
    # FLAC frame sync 0xFFF8 at fixed block size; good enough for libsndfile's output
    out, p = [], b.find(b"\xff\xf8", 42)
    while p >= 0:
        out.append(p)
        p = b.find(b"\xff\xf8", p + 2)
    return out


def make_bad_inputs(folder, source_wave, sr: int = TARGET_SR) -> list[Case]:
    """Write every case of CASE_NAMES into `folder` and return them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(source_wave, dtype=np.float64)
    if y.ndim != 1:
        y = y.mean(axis=1)
    y = y[: int(3 * sr)]
    if sr != TARGET_SR:
        raise ValueError("pass a 22,050 Hz clip (e.g. one of tests/data/tiny_corpus)")
    y = 0.9 * y / max(np.max(np.abs(y)), 1e-9)
    n = len(y)
    cases: list[Case] = []

    def write(name, ext, data: bytes, expect, check=None, note="", filename=None) -> None:
        p = folder / (filename or f"{name}{ext}")
        p.write_bytes(data)
        cases.append(Case(name, p, expect, check, note))

    def close_to(ref, tol=1e-4):
        return lambda x: x.shape == ref.shape and float(np.max(np.abs(x - ref))) <= tol

    wav16 = _bytes(y, sr, "WAV", "PCM_16")
    flac16 = _bytes(y, sr, "FLAC", "PCM_16")
    q16 = sf.read(io.BytesIO(wav16), dtype="float64")[0]  # what a 16-bit file holds
    ogg = _bytes(y, sr, "OGG", "VORBIS")
    mp3 = _bytes(y, sr, "MP3", "MPEG_LAYER_III")

    # --- damaged -------------------------------------------------------------------------
    write("truncated_wav", ".wav", wav16[: len(wav16) // 2], "truncated")
    write("truncated_flac", ".flac", flac16[: len(flac16) // 2], "truncated")
    write("truncated_mp3", ".mp3", mp3[: len(mp3) // 2], "truncated")
    # Without a Xing header tensorflow-io returns the decodable prefix with no error.
    write("truncated_mp3_no_xing", ".mp3", _mp3_strip_xing(mp3)[: len(mp3) // 2 + 7],
          "truncated")
    # tensorflow-io returns the audio of the complete pages, silently.
    write("truncated_ogg", ".ogg", ogg[: len(ogg) // 2], "truncated")
    pages = _ogg_pages(ogg)
    write("truncated_ogg_at_page", ".ogg", ogg[: pages[len(pages) // 2][1]], "truncated")

    starts = _flac_frame_starts(flac16)
    bad = bytearray(flac16)  # flip bytes inside the second frame's body: tfio zero-fills it
    for k in range(8):
        bad[starts[1] + 40 + 13 * k] ^= 0x5A
    write("corrupt_flac_frames", ".flac", bytes(bad), "corrupt")
    # delete bytes inside the last-but-one frame: a chain of intact frame headers, but libFLAC
    # loses a frame, and tensorflow-io then loops forever waiting for the declared samples
    cut = starts[-2] + 200
    write("flac_missing_bytes", ".flac", flac16[:cut] + flac16[cut + 600:], "corrupt")
    over = bytearray(flac16)  # STREAMINFO total_samples + 1 %: tfio hangs forever on this
    v = int.from_bytes(over[18:26], "big")
    total = v & ((1 << 36) - 1)
    over[18:26] = ((v & ~((1 << 36) - 1)) | (total + total // 100)).to_bytes(8, "big")
    write("flac_header_overstates_length", ".flac", bytes(over), "header declares")
    streamed = bytearray(flac16)
    streamed[18:26] = (v & ~((1 << 36) - 1)).to_bytes(8, "big")
    write("streamed_flac_no_length", ".flac", bytes(streamed), "streamed FLAC")

    mid = pages[len(pages) // 2]
    bad = bytearray(ogg)  # a bit flip: libogg drops the page, tfio returns fewer samples
    bad[(mid[0] + mid[1]) // 2] ^= 0x10
    write("corrupt_ogg_page", ".ogg", bytes(bad), "checksum")
    write("ogg_page_missing", ".ogg", ogg[: mid[0]] + ogg[mid[1]:], "missing")

    bad = bytearray(wav16)  # sample-rate field 22050 → 44100, byte rate left alone
    struct.pack_into("<I", bad, 24, 44100)
    write("wav_bad_rate_field", ".wav", bytes(bad), "corrupt WAV header")
    write("zero_length_file", ".wav", b"", "empty file")
    write("text_file_as_wav", ".wav", b"This is not audio, just a text file.\n" * 20,
          "not audio")
    z = y.copy()
    z[n // 2] = np.nan
    write("nan_float_wav", ".wav", _bytes(z, sr, "WAV", "FLOAT"), "non-finite")
    z = y.copy()
    z[n // 3] = np.inf
    write("inf_float_wav", ".wav", _bytes(z, sr, "WAV", "FLOAT"), "non-finite")
    write("zero_samples_wav", ".wav", _bytes(np.zeros(0), sr, "WAV", "PCM_16"), "no audio samples")
    write("header_only_flac", ".flac", flac16[:60], "truncated")

    # --- unsupported ---------------------------------------------------------------------
    write("unsupported_extension", ".aiff", _bytes(y, sr, "AIFF", "PCM_16"),
          "unsupported file extension")
    write("float64_wav", ".wav", _bytes(y, sr, "WAV", "DOUBLE"), "64-bit float")
    write("alaw_wav", ".wav", _bytes(y, sr, "WAV", "ALAW"), "unsupported WAV encoding")
    y48 = _tone(440, 48000, 1.0)
    write("ogg_opus", ".ogg", _bytes(y48, 48000, "OGG", "OPUS"), "Opus")
    cases.append(Case("missing_file", folder / "does_not_exist.wav", "file not found"))
    d = folder / "a_directory.wav"
    d.mkdir(exist_ok=True)
    cases.append(Case("directory_named_wav", d, "directory"))

    # --- awkward but valid ---------------------------------------------------------------
    for name, rate in (("wav_8khz", 8000), ("wav_96khz", 96000)):
        tone = _tone(1000, rate, 2.0)
        write(name, ".wav", _bytes(tone, rate, "WAV", "PCM_16"), OK,
              check=lambda x: abs(len(x) - 2 * TARGET_SR) <= 2,
              note=f"2 s of 1 kHz at {rate} Hz → 44,100 ± 2 samples")
    six = _bytes(np.stack([y * (k + 1) / 6 for k in range(6)], axis=1), sr, "WAV", "PCM_16")
    six_ref = sf.read(io.BytesIO(six), dtype="float64")[0].mean(axis=1)
    write("wav_6ch", ".wav", six, OK, check=close_to(six_ref, 1e-6),
          note="mean of the 6 channels")
    write("silence_wav", ".wav", _bytes(np.zeros(sr), sr, "WAV", "PCM_16"), OK,
          check=lambda x: len(x) == TARGET_SR and not np.any(x), note="all zeros")
    write("unicode_name_flac", ".flac", flac16, OK, check=close_to(q16),
          note="same samples as the source", filename="Sängerin – ça 日本.flac")
    # tensorflow-io reads every 32-bit WAV as float: integer PCM came out as 1e37 / inf
    write("int32_wav", ".wav", _bytes(y, sr, "WAV", "PCM_32"), OK, check=close_to(y, 1e-6),
          note="32-bit integer PCM decodes to the source")
    write("int24_wav", ".wav", _bytes(y, sr, "WAV", "PCM_24"), OK, check=close_to(y, 1e-6))
    write("uint8_wav", ".wav", _bytes(y, sr, "WAV", "PCM_U8"), OK, check=close_to(y, 1 / 64))
    write("float32_wav", ".wav", _bytes(y, sr, "WAV", "FLOAT"), OK, check=close_to(y, 1e-6))
    write("flac_24bit", ".flac", _bytes(y, sr, "FLAC", "PCM_24"), OK, check=close_to(y, 1e-6))
    write("flac_8bit", ".flac", _bytes(y, sr, "FLAC", "PCM_S8"), OK, check=close_to(y, 1 / 64))
    write("mp3_no_xing", ".mp3", _mp3_strip_xing(mp3), OK,
          check=lambda x: abs(len(x) - n) <= 3 * 576, note="length within 3 MP3 frames")
    st = np.stack([y, 0.5 * y], axis=1)
    write("stereo_ogg", ".ogg", _bytes(st, sr, "OGG", "VORBIS"), OK,
          check=lambda x: len(x) == n, note="stereo mixes down, same length")
    write("uppercase_ext", ".WAV", wav16, OK, check=close_to(q16),
          note="extension matching is case-insensitive")

    assert [c.name for c in cases] == list(CASE_NAMES), [c.name for c in cases]
    return cases


def load_source_clip(seconds: float = 3.0) -> tuple[np.ndarray, int]:
    """The first `seconds` of the tiny corpus's first FLAC (a real rendered mixture)."""
    path = sorted((Path(__file__).parent / "data" / "tiny_corpus" / "audio").glob("*.flac"))[0]
    y, sr = sf.read(path, dtype="float64", frames=int(seconds * 22050))
    return y, sr
