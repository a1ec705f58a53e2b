"""The singers: Sinsy (HMM singing synthesis), Festival's singing mode, espeak-ng + PSOLA.

Each singer sings a `Run` (consecutive sung phrases of the soprano line, in quarters at a tempo)
and returns a mono stem at the corpus rate whose time 0 is the run's first note. Every voice has
a safe MIDI range (the planner transposes the chorale into it) and sings the soprano line
`octave` octaves from where it is written (male voices an octave down).

- Sinsy (PyPI pysinsy 0.0.5): a female voice (NIT SONG070 F001, real singing, CC-BY-3.0) singing
  Japanese kana, with its own vibrato; per track a slightly different all-pass constant (timbre).
  Quirks handled (DATA.md): the score starts with a one-bar rest, so the output time axis is the
  score's; melodies stay in MIDI 60–76; loud bursts are limited.
- Festival (Debian festival + festvox-kallpc16k): the male kal diphone voice in singing mode,
  English monosyllables, exact note timing; vibrato is imposed afterwards by PSOLA.
- espeak-ng (Debian espeak-ng) + Praat PSOLA (PyPI praat-parselmouth): one spoken English
  monosyllable per note, set to the note's pitch with vibrato and stretched to its length;
  female or male espeak variants.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from tf_svdx.data.democorpus.chorales import Note
from tf_svdx.data.democorpus.deps import Requirement
from tf_svdx.data.democorpus.signal import (SAMPLE_RATE, active_frames, conform, fit_length,
                                            frame_edges, limit_bursts, place)
from tf_svdx.errors import MissingDependencyError

TAIL_S = 1.0  # a run's stem extends this far past its last note (release, breath)

KANA = ("か き く け こ さ し す せ そ た て と な に ぬ ね の は ひ ふ へ ほ ま み む め も "
        "や ゆ よ ら り る れ ろ わ あ い う え お").split()
WORDS = ("la lo love day go so me you light home sea sky night more now free high low rain "
         "sun moon star dream heart stay fly bright stone gold song").split()


@dataclasses.dataclass(frozen=True)
class Run:
    notes: tuple[Note, ...]  # (onset, duration, MIDI) in quarters; the first onset is 0
    bpm: float

    @property
    def seconds(self) -> float:
        return max(on + d for on, d, _ in self.notes) * 60.0 / self.bpm

    def notes_s(self) -> list[Note]:
        spq = 60.0 / self.bpm
        return [(on * spq, d * spq, p) for on, d, p in self.notes]


@dataclasses.dataclass(frozen=True)
class Voice:
    singer: str  # a key of SINGERS
    variant: str
    low: int  # safe MIDI range of the sung pitches
    high: int
    octave: int  # sings the soprano line this many octaves up (−1: an octave down)


@dataclasses.dataclass(frozen=True)
class Vibrato:
    rate_hz: float
    depth_cents: float
    delay_s: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Vibrato:
        return cls(round(float(rng.uniform(4.8, 6.5)), 3), round(float(rng.uniform(15, 50)), 2),
                   round(float(rng.uniform(0.1, 0.3)), 3))


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def pitch_contour(notes_s: list[Note], vib: Vibrato, step: float = 0.005,
                  glide: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(times, Hz) of each note's pitch with vibrato; `glide` s of linear portamento between
    notes (Praat interpolates between the points)."""
    times, hz = [], []
    for on, dur, pitch in notes_s:
        t = np.arange(on + min(glide, dur / 4), on + dur - min(glide, dur / 4) + 1e-9, step)
        ramp = np.clip((t - on - vib.delay_s) / 0.15, 0.0, 1.0)
        cents = vib.depth_cents * ramp * np.sin(2 * np.pi * vib.rate_hz * (t - on))
        times.append(t)
        hz.append(midi_hz(pitch) * 2.0 ** (cents / 1200.0))
    return np.concatenate(times), np.concatenate(hz)


def psola(x: np.ndarray, sr: int, pitch: tuple[np.ndarray, np.ndarray],
          duration: list[tuple[float, float]] | None = None, *, seed: int) -> np.ndarray:
    """Praat overlap-add resynthesis of `x` with a new pitch contour (source times, Hz) and
    optionally a duration tier (source time, stretch factor).

    Praat draws random numbers in unvoiced stretches; `seed` makes the result reproducible.
    """
    import parselmouth
    from parselmouth.praat import call
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    sound = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=sr)
    manipulation = call(sound, "To Manipulation", 0.01, 60, 700)
    tier = call("Create PitchTier", "pitch", sound.xmin, sound.xmax)
    for t, f in zip(*pitch):
        call(tier, "Add point", float(t), float(f))
    call([tier, manipulation], "Replace pitch tier")
    if duration:
        dtier = call("Create DurationTier", "duration", sound.xmin, sound.xmax)
        for t, factor in duration:
            call(dtier, "Add point", float(t), float(factor))
        call([dtier, manipulation], "Replace duration tier")
    return call(manipulation, "Get resynthesis (overlap-add)").values[0].astype(np.float64)


class Singer:
    name: str
    title: str  # for ATTRIBUTION.md
    sources: tuple[str, ...]  # source ids (see attribution.SOURCES)

    def voices(self) -> list[Voice]:
        raise NotImplementedError

    def requirements(self) -> list[Requirement]:
        raise NotImplementedError

    def settings(self, voice: Voice, rng: np.random.Generator) -> dict:
        """Per-track performance settings (drawn once per track, stored in meta.json)."""
        return {"vibrato": dataclasses.asdict(Vibrato.draw(rng))}

    def sing(self, run: Run, voice: Voice, settings: dict, rng: np.random.Generator,
             workdir: Path) -> np.ndarray:
        """The run sung, conformed, run.seconds + TAIL_S long, bursts limited."""
        raise NotImplementedError


class Sinsy(Singer):
    name = "sinsy"
    title = "Sinsy HMM singing synthesis, voice NIT SONG070 F001 (female, Japanese)"
    sources = ("pysinsy", "nitech_jp_song070_f001")
    DIVISIONS = 24  # per quarter: sixteenths, triplets and thirty-seconds are whole numbers

    def voices(self):
        return [Voice(self.name, "nitech_jp_song070_f001", 60, 76, 0)]

    def requirements(self):
        return [Requirement("python", "pysinsy", "pysinsy==0.0.5", via="pip",
                            purpose="the Sinsy singer; it compiles with g++"),
                Requirement("python", "pkg_resources", "setuptools<81", via="pip",
                            purpose="import pysinsy")]

    def settings(self, voice, rng):
        return {"alpha": round(float(rng.uniform(0.54, 0.57)), 4)}  # timbre (all-pass constant)

    def sing(self, run, voice, settings, rng, workdir):
        xml = workdir / "sinsy.xml"
        lyrics = [str(rng.choice(KANA)) for _ in run.notes]
        xml.write_text(self.musicxml(run, lyrics), encoding="utf-8")
        wav, sr = _sinsy_synthesize(str(xml), settings["alpha"])
        start = int(round(4 * 60.0 / run.bpm * sr))  # after the one-bar (4/4) rest
        y = conform(np.asarray(wav, dtype=np.float64)[start:] / 32768.0, sr)
        return limit_bursts(fit_length(y, _run_samples(run)), SAMPLE_RATE)

    @classmethod
    def musicxml(cls, run: Run, lyrics: list[str]) -> str:
        """A one-part 4/4 MusicXML score: a bar of rest, then the run (ties across bars)."""
        div = cls.DIVISIONS
        events = []  # (start, length, pitch or None, lyric) in divisions, from the second bar
        t = 0
        for (on, dur, pitch), lyric in zip(run.notes, lyrics):
            start, length = int(round(on * div)), int(round(dur * div))
            if start > t:
                events.append((t, start - t, None, None))
            if start < t:  # overlapping notes (rare in a soprano line): shorten to fit
                length -= t - start
                start = t
            if length > 0:
                events.append((start, length, pitch, lyric))
                t = start + length
        bar = 4 * div
        # Rest to the end of the bar, then a bar of rest: Sinsy wants to end on a rest.
        events.append((t, bar - t % bar + bar, None, None))
        measures = [[f'<note><rest/><duration>{bar}</duration></note>']]
        for start, length, pitch, lyric in events:
            first = True
            while length > 0:
                index = start // bar + 1
                piece = min(length, bar - start % bar)
                while len(measures) <= index:
                    measures.append([])
                last = piece == length
                measures[index].append(_xml_note(piece, pitch, lyric if first else None,
                                                 tie_start=not last and pitch is not None,
                                                 tie_stop=not first and pitch is not None))
                start, length, first = start + piece, length - piece, False
        body = []
        for number, notes in enumerate(measures, 1):
            head = ""
            if number == 1:
                head = (f"<attributes><divisions>{div}</divisions><time><beats>4</beats>"
                        f"<beat-type>4</beat-type></time></attributes>"
                        f'<direction placement="above"><sound tempo="{run.bpm:g}"/></direction>')
            body.append(f'<measure number="{number}">{head}{"".join(notes)}</measure>')
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.0">'
                '<part-list><score-part id="P1"><part-name>S</part-name></score-part>'
                f'</part-list><part id="P1">{"".join(body)}</part></score-partwise>\n')


_STEPS = (("C", 0), ("C", 1), ("D", 0), ("D", 1), ("E", 0), ("F", 0), ("F", 1), ("G", 0),
          ("G", 1), ("A", 0), ("A", 1), ("B", 0))


def _xml_note(length: int, pitch: int | None, lyric: str | None, tie_start: bool,
              tie_stop: bool) -> str:
    if pitch is None:
        return f"<note><rest/><duration>{length}</duration></note>"
    step, alter = _STEPS[pitch % 12]
    ties = (('<tie type="stop"/>' if tie_stop else "") + ('<tie type="start"/>' if tie_start
                                                          else ""))
    tied = (('<tied type="stop"/>' if tie_stop else "") + ('<tied type="start"/>' if tie_start
                                                           else ""))
    return ("<note><pitch>"
            f"<step>{step}</step>{f'<alter>{alter}</alter>' if alter else ''}"
            f"<octave>{pitch // 12 - 1}</octave></pitch><duration>{length}</duration>{ties}"
            + (f"<notations>{tied}</notations>" if tied else "")
            + (f"<lyric><text>{lyric}</text></lyric>" if lyric else "") + "</note>")


_SINSY = None  # one engine per process (loading the voice takes a while)


def _sinsy_synthesize(xml: str, alpha: float):
    global _SINSY
    if _SINSY is None:
        try:
            import pysinsy
            from pysinsy.sinsy import Sinsy as Engine
        except ImportError as e:
            raise MissingDependencyError(f"cannot import pysinsy ({e}): install the Python "
                                         f"package pysinsy==0.0.5 (needs setuptools<81)") from None
        engine = Engine()
        engine.setLanguages("j", pysinsy.get_default_dic_dir())
        if not engine.loadVoices(pysinsy.get_default_htsvoice()):
            raise RuntimeError("Sinsy could not load its voice")
        _SINSY = engine
    _SINSY.setAlpha(alpha)  # Sinsy's output was checked identical across repeated calls
    if not _SINSY.loadScoreFromMusicXML(xml):
        raise RuntimeError(f"Sinsy could not read {xml}")
    try:
        wav, sr = _SINSY.synthesize()
    finally:
        _SINSY.clearScore()
    return wav, sr


class Festival(Singer):
    name = "festival"
    title = "Festival singing mode, kal diphone voice (male, US English), PSOLA vibrato"
    sources = ("festival", "festvox-kallpc16k", "praat-parselmouth")
    VOICE_DIR = "/usr/share/festival/voices/english/kal_diphone"
    LEAD_IN_S = 0.5

    def voices(self):
        return [Voice(self.name, "kal_diphone", 45, 64, -1)]

    def requirements(self):
        return [Requirement("program", "text2wave", "festival", purpose="the Festival singer"),
                Requirement("path", self.VOICE_DIR, "festvox-kallpc16k",
                            purpose="the Festival singer's voice"),
                Requirement("python", "parselmouth", "praat-parselmouth==0.4.7", via="pip",
                            purpose="vibrato by PSOLA")]

    def sing(self, run, voice, settings, rng, workdir):
        notes = run.notes_s()
        parts, t = [], -self.LEAD_IN_S
        for on, dur, pitch in notes:
            if on > t + 1e-6:
                parts.append(f'<REST SECONDS="{on - t:.4f}"></REST>')
            word = str(rng.choice(WORDS))
            parts.append(f'<PITCH FREQ="{midi_hz(pitch):.2f}"><DURATION SECONDS="{dur:.4f}">'
                         f'{word}</DURATION></PITCH>')
            t = on + dur
        parts.append('<REST SECONDS="0.5"></REST>')
        xml, wav = workdir / "festival.xml", workdir / "festival.wav"
        xml.write_text('<?xml version="1.0"?>\n<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD '
                       'SINGING mark up//EN" "Singing.v0_1.dtd" []>\n<SINGING BPM="60">\n'
                       + "\n".join(parts) + "\n</SINGING>\n")
        result = subprocess.run(["text2wave", "-mode", "singing", "-eval", "(voice_kal_diphone)",
                                 str(xml), "-o", str(wav)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"Festival failed on {xml}: "
                               f"{result.stderr.decode(errors='replace').strip()[-300:]}")
        y, sr = sf.read(wav, dtype="float64")
        vib = Vibrato(**settings["vibrato"])
        times, hz = pitch_contour(notes, vib)
        y = psola(y, sr, (times + self.LEAD_IN_S, hz), seed=int(rng.integers(2**31)))
        y = conform(y[int(round(self.LEAD_IN_S * sr)):], sr)
        return limit_bursts(fit_length(y, _run_samples(run)), SAMPLE_RATE)


class Espeak(Singer):
    name = "espeak"
    title = "espeak-ng English voices, one word per note set to pitch by PSOLA (Praat)"
    sources = ("espeak-ng", "praat-parselmouth")
    FEMALE = ("f1", "f2", "f3", "f4", "f5")
    MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
    KEEP_S = 0.08  # the syllable's start (its consonant) is not stretched

    def voices(self):
        return ([Voice(self.name, f"en+{v}", 57, 76, 0) for v in self.FEMALE]
                + [Voice(self.name, f"en+{v}", 45, 64, -1) for v in self.MALE])

    def requirements(self):
        return [Requirement("program", "espeak-ng", "espeak-ng", purpose="the espeak singer"),
                Requirement("python", "parselmouth", "praat-parselmouth==0.4.7", via="pip",
                            purpose="the espeak singer (PSOLA)")]

    def settings(self, voice, rng):
        return {"vibrato": dataclasses.asdict(Vibrato.draw(rng)),
                "words": sorted(str(w) for w in rng.choice(WORDS, size=6, replace=False)),
                "speed_wpm": int(rng.integers(110, 160))}

    def sing(self, run, voice, settings, rng, workdir):
        bank = {w: self._speak(w, voice.variant, settings["speed_wpm"]) for w in settings["words"]}
        vib = Vibrato(**settings["vibrato"])
        out = np.zeros(int(round((run.seconds + TAIL_S) * 22050)))
        for on, dur, pitch in run.notes_s():
            x = bank[str(rng.choice(settings["words"]))]
            target = max(dur - min(0.05, 0.15 * dur), 0.06)
            y = self._note(x, 22050, target, pitch, vib, seed=int(rng.integers(2**31)))
            fade = min(len(y), int(0.01 * 22050))
            y[len(y) - fade:] *= np.linspace(1.0, 0.0, fade)
            place(out, y, int(round(on * 22050)))
        return limit_bursts(fit_length(conform(out, 22050), _run_samples(run)), SAMPLE_RATE)

    @staticmethod
    def _speak(word: str, variant: str, wpm: int) -> np.ndarray:
        try:
            wav = subprocess.run(["espeak-ng", "-v", variant, "-s", str(wpm), "--stdout", word],
                                 check=True, capture_output=True).stdout
        except FileNotFoundError:
            raise MissingDependencyError("espeak-ng not found: install the Debian package "
                                         "espeak-ng") from None
        x, sr = sf.read(io.BytesIO(wav), dtype="float64")
        if sr != 22050:
            x = conform(x, sr)
        act = np.flatnonzero(active_frames(x, 22050, rel_db=-40.0))
        edges = frame_edges(len(x), 22050)
        return x[edges[act[0]]:edges[act[-1] + 1]] if act.size else x

    def _note(self, x: np.ndarray, sr: int, target_s: float, pitch: int, vib: Vibrato, *,
              seed: int) -> np.ndarray:
        length = len(x) / sr
        keep = min(self.KEEP_S, 0.3 * length)
        if target_s <= length:
            factor, keep = target_s / length, 0.0
        else:
            factor = (target_s - keep) / (length - keep)
        # Pitch points dense in OUTPUT time, mapped back to source time.
        out_t = np.arange(0.0, target_s, 0.005)
        src_t = np.where(out_t <= keep, out_t, keep + (out_t - keep) / factor)
        ramp = np.clip((out_t - vib.delay_s) / 0.15, 0.0, 1.0)
        hz = midi_hz(pitch) * 2.0 ** (vib.depth_cents * ramp
                                      * np.sin(2 * np.pi * vib.rate_hz * out_t) / 1200.0)
        duration = ([(0.0, 1.0), (keep, 1.0), (keep + 1e-3, factor), (length, factor)]
                    if keep else [(0.0, factor), (length, factor)])
        y = psola(x, sr, (src_t, hz), duration, seed=seed)
        return fit_length(y, int(round(target_s * sr)))


def _run_samples(run: Run) -> int:
    return int(round((run.seconds + TAIL_S) * SAMPLE_RATE))


SINGERS: dict[str, Singer] = {s.name: s for s in (Sinsy(), Festival(), Espeak())}
