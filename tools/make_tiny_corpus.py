#!/usr/bin/env python3
"""Build the tiny labelled test corpus (Jamendo layout) committed under tests/data/tiny_corpus/.

    python tools/make_tiny_corpus.py --out tests/data/tiny_corpus --seed 0

What it makes (deterministic: the same seed gives byte-identical files):
  audio/chorale_NN.flac   22,050 Hz mono 16-bit FLAC, 10–14 s each
  labels/chorale_NN.lab   `start end sing|nosing`, complementary segments from 0 to the file end
  filelists/{train,valid,test}
  ATTRIBUTION.md          sources, licences and a per-track description

Each track is a few consecutive phrases (fermata to fermata) of one four-part Bach chorale from
the music21 corpus. Alto, tenor and bass are rendered by fluidsynth with the TimGM6mb soundfont on
random non-voice General MIDI programs (never 52–54, Choir Aahs / Voice Oohs / Synth Voice). The
soprano line is, phrase by phrase, either a "vocal" stem on GM program 53 (Voice Oohs: sampled
human voices — a stand-in for singing in THIS FIXTURE ONLY), a lead instrument (the hard negative:
melody without voice) or absent. Labels come from the ISOLATED vocal stem (`labels_from_stem`):
10 ms frames active above (95th-percentile frame level − 30 dB), gaps < 0.3 s merged, segments
< 0.2 s dropped. Mix: melody-to-accompaniment ratio uniform in −6…+6 dB, peak-normalised to 0.9.

Needs: music21 (pip), fluidsynth and /usr/share/sounds/sf2/TimGM6mb.sf2 (Debian), soundfile.
Byte-identical output needs the same toolchain (recorded in ATTRIBUTION.md): FluidSynth renders
to float WAV (no dither), and the mix is quantised to 16 bits by this script, not by libsndfile.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from tf_svdx.data.democorpus import labels_from_stem
from tf_svdx.data.democorpus.instruments import write_midi

SR = 22050
SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"
PEAK = 0.9
TPQ = 480  # MIDI ticks per quarter note
TAIL_S = 0.8  # release/reverb tail kept after the last note

# Candidate chorales: four-part (S, A, T, B), with fermatas marking phrases.
CHORALES = [
    "bwv66.6", "bwv26.6", "bwv269", "bwv253", "bwv40.6", "bwv254", "bwv267", "bwv281",
    "bwv10.7", "bwv11.6", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6", "bwv108.6",
    "bwv110.7",
]
# 0-based GM programs. Accompaniment: pitched, sustained or plucked, nothing voice-like
# (52 Choir Aahs, 53 Voice Oohs, 54 Synth Voice, 85 Lead 6 "voice", 91 Pad 4 "choir" excluded).
ACCOMP_PROGRAMS = [0, 1, 4, 6, 11, 16, 19, 21, 24, 25, 32, 33, 40, 41, 42, 43, 46, 48, 49,
                   56, 57, 58, 60, 61, 65, 66, 68, 70, 71, 73, 74]
# violin, trumpet, alto sax, oboe, clarinet, flute, vibraphone, piano
LEAD_PROGRAMS = [40, 56, 65, 68, 71, 73, 11, 0]
VOICE_PROGRAM = 53  # Voice Oohs
VOICE_LIKE = {52, 53, 54, 85, 91}
assert not VOICE_LIKE & set(ACCOMP_PROGRAMS) and not VOICE_LIKE & set(LEAD_PROGRAMS)

GM_NAMES = {0: "Acoustic Grand Piano", 1: "Bright Acoustic Piano", 4: "Electric Piano 1",
            6: "Harpsichord", 11: "Vibraphone", 16: "Drawbar Organ", 19: "Church Organ",
            21: "Accordion", 24: "Acoustic Guitar (nylon)", 25: "Acoustic Guitar (steel)",
            32: "Acoustic Bass", 33: "Electric Bass (finger)", 40: "Violin", 41: "Viola",
            42: "Cello", 43: "Contrabass", 46: "Orchestral Harp", 48: "String Ensemble 1",
            49: "String Ensemble 2", 53: "Voice Oohs", 56: "Trumpet", 57: "Trombone", 58: "Tuba",
            60: "French Horn", 61: "Brass Section", 65: "Alto Sax", 66: "Tenor Sax", 68: "Oboe",
            70: "Bassoon", 71: "Clarinet", 73: "Flute", 74: "Recorder"}

# Track plan: (split, kind). "sung": soprano phrases voiced or not; "instrumental": never voiced.
PLAN = [("train", "sung"), ("train", "sung"), ("train", "sung"), ("train", "instrumental"),
        ("train", "sung"), ("train", "sung"), ("valid", "sung"), ("test", "sung")]


# ----------------------------------------------------------------------------------------------
# Labels from an isolated vocal stem
# ----------------------------------------------------------------------------------------------
def format_lab(segs: list[tuple[float, float, str]], duration: float) -> str:
    """Boundaries with 3 decimals (they are multiples of 10 ms); the file end with 6."""
    def fmt(x):
        return f"{duration:.6f}" if abs(x - duration) < 1e-9 else f"{x:.3f}"
    return "".join(f"{fmt(a)} {fmt(b)} {lab}\n" for a, b, lab in segs)


# ----------------------------------------------------------------------------------------------
# Score → notes → MIDI → fluidsynth
# ----------------------------------------------------------------------------------------------
def part_notes(part) -> list[tuple[float, float, int]]:
    """(onset quarters, duration quarters, midi pitch) of a part, ties merged."""
    out = []
    for n in part.stripTies().flatten().notes:
        for p in n.pitches:
            out.append((float(n.offset), float(n.quarterLength), int(p.midi)))
    return sorted(out)


def phrase_ends(part) -> list[float]:
    from music21 import expressions
    return sorted({float(n.offset + n.quarterLength) for n in part.stripTies().flatten().notes
                   if any(isinstance(e, expressions.Fermata) for e in n.expressions)})


def load_chorale(name: str):
    """(soprano, alto, tenor, bass note lists, phrase boundaries in quarters) or None."""
    from music21 import corpus
    score = corpus.parse(f"bach/{name}")
    if len(score.parts) != 4:
        return None
    voices = [part_notes(p) for p in score.parts]
    ends = phrase_ends(score.parts[0])
    total = float(score.highestTime)
    if len(ends) < 3:
        return None
    bounds = sorted({0.0, *ends, total})
    return voices, bounds


def render(midi: Path, wav: Path, n_samples: int) -> np.ndarray:
    """fluidsynth → float wav (no dither) → mono float64 of exactly n_samples."""
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-T", "wav", "-O", "float",
           "-o", "synth.cpu-cores=1", "-F", str(wav), SOUNDFONT, str(midi)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    y, sr = sf.read(wav, dtype="float64", always_2d=True)
    assert sr == SR, sr
    y = y.mean(axis=1)
    out = np.zeros(n_samples)
    out[:min(n_samples, len(y))] = y[:n_samples]
    return out


def select_window(bounds: list[float], bpm: float, rng: np.random.Generator,
                  min_s: float = 9.6, max_s: float = 11.8) -> tuple[float, float, list[float]]:
    """Consecutive phrases from a random phrase start, ≥ min_s of music (cut at max_s)."""
    spq = 60.0 / bpm
    starts = [i for i in range(len(bounds) - 1)
              if (bounds[-1] - bounds[i]) * spq >= min_s]
    i = int(rng.choice(starts)) if starts else 0
    j = i + 1
    while j < len(bounds) - 1 and (bounds[j] - bounds[i]) * spq < min_s:
        j += 1
    q0, q1 = bounds[i], min(bounds[j], bounds[i] + max_s / spq)
    inner = [b for b in bounds[i:j + 1] if q0 <= b <= q1]
    if inner[-1] < q1:
        inner.append(q1)
    return q0, q1, inner


def clip_notes(notes, q0, q1, shift=0):
    out = []
    for on, dur, p in notes:
        end = min(on + dur, q1)
        if on >= q0 and on < q1 and end > on:
            out.append((on - q0, end - on, p + shift))
    return out


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def make_track(name: str, kind: str, rng: np.random.Generator,
               tmp: Path) -> tuple[np.ndarray, list, dict]:
    loaded = load_chorale(name)
    assert loaded is not None, name
    (sop, alto, ten, bass), bounds = loaded
    bpm = float(rng.integers(70, 111))
    q0, q1, phrase_bounds = select_window(bounds, bpm, rng)
    # Transpose so the soprano sits in MIDI 60–76 where possible (Voice Oohs' natural range).
    win = [p for on, _, p in sop if q0 <= on < q1]
    lo, hi = min(win), max(win)
    shift = int(np.clip(int(rng.integers(-2, 3)), 60 - lo, 76 - hi)) if hi - lo <= 16 else 0
    voices = [clip_notes(v, q0, q1, shift) for v in (sop, alto, ten, bass)]
    spq = 60.0 / bpm
    n = int(round(((q1 - q0) * spq + TAIL_S) * SR))

    # Per phrase: voice / lead instrument / no melody.
    phrases = list(zip(phrase_bounds[:-1], phrase_bounds[1:]))
    if kind == "sung":
        roles = [str(rng.choice(["voice", "lead", "none"], p=[0.6, 0.3, 0.1])) for _ in phrases]
        if "voice" not in roles:
            roles[int(rng.integers(len(roles)))] = "voice"
        if len(roles) > 1 and all(r == "voice" for r in roles):
            roles[int(rng.integers(len(roles)))] = "lead"
    else:
        roles = [str(rng.choice(["lead", "none"], p=[0.85, 0.15])) for _ in phrases]
        if "lead" not in roles:
            roles[0] = "lead"
    voiced, lead = [], []
    for (a, b), role in zip(phrases, roles):
        seg = [nt for nt in voices[0] if a - q0 <= nt[0] < b - q0]
        (voiced if role == "voice" else lead if role == "lead" else []).extend(seg)

    accomp_prog = [int(p) for p in rng.choice(ACCOMP_PROGRAMS, size=3, replace=True)]
    lead_prog = int(rng.choice(LEAD_PROGRAMS))
    ratio_db = float(rng.uniform(-6.0, 6.0))
    vel = int(rng.integers(80, 110))

    stems = {}
    for stem_name, chans in (
            ("accomp", [(accomp_prog[0], voices[1]), (accomp_prog[1], voices[2]),
                        (accomp_prog[2], voices[3])]),
            ("voice", [(VOICE_PROGRAM, voiced)]),
            ("lead", [(lead_prog, lead)])):
        if not any(notes for _, notes in chans):
            stems[stem_name] = np.zeros(n)
            continue
        mid = tmp / f"{stem_name}.mid"
        write_midi(mid, bpm, [(prog, vel, notes) for prog, notes in chans])
        stems[stem_name] = render(mid, tmp / f"{stem_name}.wav", n)

    segs = labels_from_stem(stems["voice"], SR)
    # Melody stems are set ratio_db above/below the accompaniment, both measured where the melody
    # stem is active (so rests do not dilute its level).
    mix = stems["accomp"].copy()
    for stem_name in ("voice", "lead"):
        s = stems[stem_name]
        if not np.any(s):
            continue
        act = _active_mask(s)
        gain = rms(stems["accomp"][act]) / rms(s[act]) * 10 ** (ratio_db / 20)
        mix += gain * s
    mix *= PEAK / np.max(np.abs(mix))
    info = dict(chorale=name, bpm=bpm, quarters=(q0, q1), transpose=shift,
                accomp=accomp_prog, lead=lead_prog, roles=roles, ratio_db=ratio_db,
                duration=n / SR)
    return mix, segs, info


def _active_mask(s: np.ndarray) -> np.ndarray:
    hop = SR // 100
    k = len(s) // hop
    lev = 10 * np.log10(np.mean(s[:k * hop].reshape(k, hop) ** 2, axis=1) + 1e-20)
    act = np.repeat(lev > np.percentile(lev, 95) - 30, hop)
    return np.concatenate([act, np.zeros(len(s) - k * hop, bool)])


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------------------------
def build(out: Path, seed: int) -> None:
    for tool in (SOUNDFONT,):
        if not os.path.exists(tool):
            sys.exit(f"missing {tool} (Debian package timgm6mb-soundfont)")
    rng = np.random.default_rng(seed)
    names = [str(c) for c in rng.permutation(CHORALES)]
    chosen = []
    for c in names:
        if len(chosen) == len(PLAN):
            break
        if load_chorale(c) is not None:
            chosen.append(c)
    assert len(chosen) == len(PLAN)

    from tf_svdx.io import atomic_path
    with atomic_path(out, directory=True) as root, tempfile.TemporaryDirectory() as tmpd:
        root.chmod(0o755)  # mkdtemp makes it 0700
        for sub in ("audio", "labels", "filelists"):
            (root / sub).mkdir()
        lists = {"train": [], "valid": [], "test": []}
        rows = []
        for k, ((split, kind), chorale) in enumerate(zip(PLAN, chosen), start=1):
            stem = f"chorale_{k:02d}"
            track_rng = np.random.default_rng([seed, k])
            mix, segs, info = make_track(chorale, kind, track_rng, Path(tmpd))
            pcm = to_pcm16(mix)
            sf.write(root / "audio" / f"{stem}.flac", pcm, SR, format="FLAC", subtype="PCM_16")
            (root / "labels" / f"{stem}.lab").write_text(format_lab(segs, len(pcm) / SR))
            lists[split].append(f"{stem}.flac")
            sung = sum(b - a for a, b, lab in segs if lab == "sing")
            rows.append((stem, split, kind, info, sung))
            print(f"{stem}: {chorale} {kind} {info['duration']:.2f}s sung {sung:.2f}s "
                  f"roles={info['roles']}", file=sys.stderr)
        for split, files in lists.items():
            (root / "filelists" / split).write_text("".join(f + "\n" for f in files))
        (root / "ATTRIBUTION.md").write_text(attribution(rows, seed))


def attribution(rows, seed) -> str:
    import music21
    lines = f"""\
# tiny_corpus — a synthetic labelled test fixture (NOT real singing)

Made by `tools/make_tiny_corpus.py --seed {seed}` (deterministic: the same seed gives
byte-identical FLAC files). Jamendo layout: `audio/*.flac` (22,050 Hz mono, 16-bit),
`labels/*.lab` (`start end sing|nosing`, seconds), `filelists/{{train,valid,test}}`.

## Sources and licences
- Scores: four-part Bach chorales from the music21 {music21.__version__} corpus
  (`music21.corpus.parse('bach/bwv…')`). The music is public domain; music21 is
  BSD-3-Clause and its corpus encodings are public domain or distributed by permission
  (see music21's README, "License Coverage").
- Sounds: the TimGM6mb General MIDI soundfont (Debian package `timgm6mb-soundfont`,
  /usr/share/sounds/sf2/TimGM6mb.sf2, © 2004 Tim Brechbill, 2010 David Bolton, GPL-2),
  rendered with FluidSynth (LGPL-2.1). The rendered audio is derived from the soundfont:
  treat it as GPL-2.
- Toolchain of this build: {toolchain()}.
  Byte-identity holds for the same toolchain; another FluidSynth or soundfont version
  renders slightly different audio.

## How it was made
- A window of consecutive phrases (fermata to fermata) of each chorale, 70–110 bpm,
  soprano transposed towards MIDI 60–76, cut to at most 11.8 s of music plus a 0.8 s tail.
- Alto, tenor, bass: random General MIDI programs, never a voice-like one (52 Choir Aahs,
  53 Voice Oohs, 54 Synth Voice, 85 Lead 6 voice, 91 Pad 4 choir).
- Soprano, phrase by phrase: "voice" = GM 53 Voice Oohs (sampled human voices; a STAND-IN
  for singing in this fixture only — there are no lyrics), "lead" = a lead instrument
  (the hard negative: melody without voice), or "none".
- Labels from the isolated voice stem: 10 ms frames active above (95th-percentile frame
  level − 30 dB), gaps < 0.3 s merged, segments < 0.2 s dropped, written as complementary
  sing/nosing segments covering 0 → the file end.
- Mix: each melody stem at a random −6…+6 dB relative to the accompaniment (measured
  where the stem is active), peak-normalised to 0.9, 16-bit FLAC.

## Tracks
| file | split | kind | chorale | bpm | transpose | accompaniment (A,T,B) | lead | \
soprano phrases | melody dB | seconds | sung s |
|---|---|---|---|---|---|---|---|---|---|---|---|""".splitlines()
    for stem, split, kind, info, sung in rows:
        acc = ", ".join(f"{p} {GM_NAMES.get(p, '')}".strip() for p in info["accomp"])
        lead = f"{info['lead']} {GM_NAMES.get(info['lead'], '')}".strip()
        lines.append(
            f"| {stem}.flac | {split} | {kind} | {info['chorale']} | {info['bpm']:.0f} | "
            f"{info['transpose']:+d} | {acc} | {lead} | {' '.join(info['roles'])} | "
            f"{info['ratio_db']:+.1f} | {info['duration']:.3f} | {sung:.2f} |")
    return "\n".join(lines) + "\n"


def toolchain() -> str:
    import music21
    out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
    fs = next((ln.split()[-1] for ln in out.splitlines() if "version" in ln.lower()), "?")
    return (f"FluidSynth {fs}, music21 {music21.__version__}, soundfile {sf.__version__} "
            f"(libsndfile {sf.__libsndfile_version__}), numpy {np.__version__}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/tiny_corpus", type=Path)
    ap.add_argument("--seed", default=0, type=int)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    build(args.out, args.seed)
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            print(hashlib.sha256(p.read_bytes()).hexdigest()[:16], p.relative_to(args.out))


if __name__ == "__main__":
    main()
