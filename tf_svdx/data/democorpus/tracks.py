"""One track from its plan: the mix, the vocal and accompaniment stems, labels and metadata.

A song is a Bach chorale, transposed into its singer's safe range, at 70–110 bpm, repeated
(from phrase to phrase) to about the planned length. Each repetition is sung with probability
0.8; inside a sung repetition each fermata-delimited phrase is sung (0.8), played by a lead
instrument (0.15, the hard negative) or left out (0.05); an unsung repetition has the melody
on lead instruments (0.8) or not at all. Alto, tenor and bass are always played, on three
random non-voice GM programs. The vocal stem gets a small synthetic room and is mixed at a
random vocal-to-accompaniment ratio (−6…+6 dB, measured where the voice is active); the lead
instrument has its own random ratio from the same range, so loudness is no cue. The mix peaks
at a random −12…−1 dBFS. Labels come from the isolated vocal stem (`labels_from_stem`).

A recording is an excerpt of a real instrumental track (all nosing). A speech track (the
`--speech` subset) is spoken words over chorale accompaniment, or alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from tf_svdx.data.democorpus import instruments, recordings
from tf_svdx.data.democorpus.chorales import Note, load_chorale
from tf_svdx.data.democorpus.labels import labels_from_stem
from tf_svdx.data.democorpus.plan import TrackPlan, shifts
from tf_svdx.data.democorpus.signal import (LENGTH_QUANTUM, SAMPLE_RATE, active_samples,
                                            conform, fit_length, highpass, place, reverb,
                                            rms)
from tf_svdx.data.democorpus.singers import SINGERS, TAIL_S, Run
from tf_svdx.data.lab import Segment

RATIO_DB = (-6.0, 6.0)
PEAK_DBFS = (-12.0, -1.0)
P_SUNG_REPETITION = 0.8
SUNG_REPETITION_ROLES = (("voice", 0.8), ("lead", 0.15), ("none", 0.05))
UNSUNG_REPETITION_ROLES = (("lead", 0.8), ("none", 0.2))


@dataclasses.dataclass
class TrackAudio:
    mix: np.ndarray
    vocal: np.ndarray  # the sung (or, for speech tracks, spoken) stem, as mixed
    accompaniment: np.ndarray  # everything else, as mixed; mix = vocal + accompaniment
    segments: list[Segment]
    meta: dict


def make_track(plan: TrackPlan, soundfont: str, workdir: Path) -> TrackAudio:
    rng = np.random.default_rng(plan.seed)
    if plan.kind == "song":
        return _song(plan, soundfont, workdir, rng)
    if plan.kind == "recording":
        return _recording(plan, rng)
    return _speech(plan, soundfont, workdir, rng)


def _n_samples(seconds: float) -> int:
    return int(np.ceil(seconds * SAMPLE_RATE / LENGTH_QUANTUM)) * LENGTH_QUANTUM


def _choose(rng, options) -> str:
    names, p = zip(*options)
    return str(rng.choice(names, p=p))


@dataclasses.dataclass
class _Arrangement:
    bpm: int
    shift: int
    phrases: list[tuple[int, float, float, float]]  # (repetition, q0, q1, offset in the track)
    quarters: float


def _arrange(chorale, plan: TrackPlan, rng, shift_choices: list[int]) -> _Arrangement:
    """Tempo, transposition and the phrases (cycling through repetitions) near the length."""
    bpm = int(rng.integers(70, 111))
    shift = int(rng.choice(shift_choices))
    spq = 60.0 / bpm
    bounds = chorale.bounds
    n_phr = len(bounds) - 1
    first = 0 if chorale.quarters * spq <= plan.seconds else int(rng.integers(n_phr))
    phrases, offset, k = [], 0.0, first
    target_q = plan.seconds / spq
    while True:
        q0, q1 = bounds[k % n_phr], bounds[k % n_phr + 1]
        if phrases and abs(offset + (q1 - q0) - target_q) >= abs(offset - target_q):
            break
        phrases.append((k // n_phr, q0, q1, offset))
        offset += q1 - q0
        k += 1
    return _Arrangement(bpm, shift, phrases, offset)


def _notes(voice_notes, q0: float, q1: float, offset: float, shift: int) -> list[Note]:
    return [(offset + on - q0, min(on + d, q1) - on, p + shift)
            for on, d, p in voice_notes if q0 <= on < q1]


def _accompaniment(chorale, arr: _Arrangement, rng, soundfont, workdir, melody_roles,
                   lead_octave: int) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """(accompaniment stem, lead stem, programs, n_samples): alto/tenor/bass and the lead."""
    n = _n_samples(arr.quarters * 60.0 / arr.bpm + TAIL_S + 0.5)
    programs = [int(p) for p in rng.choice(instruments.ACCOMPANIMENT, size=3)]
    velocity = int(rng.integers(70, 101))
    parts = [[], [], []]
    for _, q0, q1, off in arr.phrases:
        for v in range(3):
            parts[v] += _notes(chorale.voices[v + 1], q0, q1, off, arr.shift)
    accompaniment = instruments.render([(programs[v], velocity, parts[v]) for v in range(3)],
                                       arr.bpm, n, soundfont, workdir, "accompaniment")
    pool = instruments.LEAD_HIGH if lead_octave == 0 else instruments.LEAD_LOW
    n_reps = max(rep for rep, *_ in arr.phrases) + 1
    lead_programs = [int(p) for p in rng.choice(pool, size=n_reps)]
    lead_velocity = int(rng.integers(80, 111))
    channels: dict[int, list[Note]] = {}
    for (rep, q0, q1, off), role in zip(arr.phrases, melody_roles):
        if role == "lead":
            channels.setdefault(lead_programs[rep], []).extend(
                _notes(chorale.voices[0], q0, q1, off, arr.shift + 12 * lead_octave))
    lead = instruments.render([(p, lead_velocity, notes) for p, notes in channels.items()],
                              arr.bpm, n, soundfont, workdir, "lead")
    used_leads = sorted(channels)
    return accompaniment, lead, {
        "accompaniment": [instruments.program_name(p) for p in programs],
        "lead": [instruments.program_name(p) for p in used_leads]}, n


def _ratio_gain(stem: np.ndarray, reference: np.ndarray, ratio_db: float) -> float:
    """Gain that puts `stem` ratio_db above `reference`, both measured where `stem` sounds."""
    mask = active_samples(stem, SAMPLE_RATE)
    if not mask.any():
        return 0.0
    return rms(reference[mask]) / max(rms(stem[mask]), 1e-12) * 10 ** (ratio_db / 20.0)


def _finish(vocal, accompaniment, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mix = vocal + accompaniment
    peak_db = float(rng.uniform(*PEAK_DBFS))
    gain = 10 ** (peak_db / 20.0) / max(np.max(np.abs(mix)), 1e-12)
    return mix * gain, vocal * gain, accompaniment * gain, round(peak_db, 2)


def _song(plan: TrackPlan, soundfont: str, workdir: Path, rng) -> TrackAudio:
    chorale = load_chorale(plan.chorale)
    if chorale is None:
        raise RuntimeError(f"chorale {plan.chorale} is not usable with this music21")
    singer, voice = SINGERS[plan.singer], plan.voice_spec()
    arr = _arrange(chorale, plan, rng, shifts(voice, *chorale.soprano_range))
    sung_reps = {}
    roles = []
    for rep, *_ in arr.phrases:
        if rep not in sung_reps:
            sung_reps[rep] = bool(rng.random() < P_SUNG_REPETITION)
        roles.append(_choose(rng, SUNG_REPETITION_ROLES if sung_reps[rep]
                             else UNSUNG_REPETITION_ROLES))
    if "voice" not in roles:
        roles[int(rng.integers(len(roles)))] = "voice"
    accompaniment, lead, programs, n = _accompaniment(chorale, arr, rng, soundfont, workdir,
                                                      roles, voice.octave)

    settings = singer.settings(voice, rng)
    vocal = np.zeros(n)
    spq = 60.0 / arr.bpm
    for run_phrases in _runs(arr.phrases, roles):
        notes = [nt for _, q0, q1, off in run_phrases
                 for nt in _notes(chorale.voices[0], q0, q1, off, arr.shift + 12 * voice.octave)]
        if not notes:
            continue
        start = notes[0][0]
        run = Run(tuple((on - start, d, p) for on, d, p in notes), arr.bpm)
        place(vocal, singer.sing(run, voice, settings, rng, workdir),
              int(round(start * spq * SAMPLE_RATE)))
    vocal, room = reverb(highpass(vocal, SAMPLE_RATE), SAMPLE_RATE, rng)

    ratio_db = float(rng.uniform(*RATIO_DB))
    lead_ratio_db = float(rng.uniform(*RATIO_DB))
    vocal *= _ratio_gain(vocal, accompaniment, ratio_db)
    backing = accompaniment + lead * _ratio_gain(lead, accompaniment, lead_ratio_db)
    mix, vocal, backing, peak_db = _finish(vocal, backing, rng)
    segments = labels_from_stem(vocal, SAMPLE_RATE)
    meta = {
        "chorale": f"bach/{plan.chorale}",
        "transposition": arr.shift,
        "tempo_bpm": arr.bpm,
        "programs": programs,
        "singer": plan.singer,
        "voice": plan.voice,
        "singer_octave": voice.octave,
        "singer_settings": settings,
        "room": room,
        "vocal_to_accompaniment_db": round(ratio_db, 2),
        "lead_to_accompaniment_db": round(lead_ratio_db, 2),
        "phrases": [{"repetition": rep, "quarters": [q0, q1], "melody": role}
                    for (rep, q0, q1, _), role in zip(arr.phrases, roles)],
        "peak_dbfs": peak_db,
        "sources": ["music21-corpus", "fluidsynth", "fluid-soundfont-gm", *singer.sources],
    }
    return TrackAudio(mix, vocal, backing, segments, meta)


def _runs(phrases, roles):
    """Consecutive sung phrases, grouped: each group is sung in one go."""
    run = []
    for phrase, role in zip(phrases, roles):
        if role == "voice":
            run.append(phrase)
        elif run:
            yield run
            run = []
    if run:
        yield run


def _recording(plan: TrackPlan, rng) -> TrackAudio:
    path = recordings.recording_path(plan.recording)
    total = sf.info(str(path)).duration
    start = float(rng.uniform(0.0, max(0.0, total - plan.seconds - 0.5)))
    y, sr = recordings.read(path, start, plan.seconds)
    n = _n_samples(plan.seconds) - LENGTH_QUANTUM
    y = fit_length(conform(y, sr), n)
    fade = int(0.5 * SAMPLE_RATE)
    y[:fade] *= np.linspace(0.0, 1.0, fade)
    y[n - fade:] *= np.linspace(1.0, 0.0, fade)
    mix, vocal, backing, peak_db = _finish(np.zeros(n), y, rng)
    package = recordings.MUSIC[plan.recording.split("/")[0]]
    meta = {"recording": plan.recording, "package": package.package,
            "excerpt_s": [round(start, 3), round(start + n / SAMPLE_RATE, 3)],
            "peak_dbfs": peak_db, "sources": [package.package]}
    return TrackAudio(mix, vocal, backing, labels_from_stem(vocal, SAMPLE_RATE), meta)


def _speech(plan: TrackPlan, soundfont: str, workdir: Path, rng) -> TrackAudio:
    """Spoken words (KTuberling, many languages) with pauses, over accompaniment (70 %) or
    alone. Labelled nosing throughout (the Jamendo labels mark singing only); the speech
    regions, found in the speech stem by the singing-label rule, go into the metadata."""
    with_music = bool(rng.random() < 0.7)
    sources = [recordings.SPEECH.package]
    programs: dict = {}
    if with_music:
        chorale = load_chorale(plan.chorale)
        arr = _arrange(chorale, plan, rng, list(range(-3, 4)))
        roles = [_choose(rng, UNSUNG_REPETITION_ROLES) for _ in arr.phrases]
        accompaniment, lead, programs, n = _accompaniment(chorale, arr, rng, soundfont,
                                                          workdir, roles, 0)
        backing = accompaniment + lead * _ratio_gain(lead, accompaniment,
                                                     float(rng.uniform(*RATIO_DB)))
        sources += ["music21-corpus", "fluidsynth", "fluid-soundfont-gm"]
    else:
        n = _n_samples(plan.seconds)
        backing = np.zeros(n)
    files = recordings.speech_files()
    language = str(rng.choice(sorted({f.split("/")[0] for f in files})))
    clips = [f for f in files if f.startswith(language + "/")]
    speech = np.zeros(n)
    t = float(rng.uniform(0.3, 1.5))
    used = []
    while t < n / SAMPLE_RATE - 1.0:
        clip = clips[int(rng.integers(len(clips)))]
        y, sr = recordings.read(Path(recordings.SPEECH.folder) / clip)
        y = conform(y, sr)
        y /= max(rms(y[active_samples(y, SAMPLE_RATE)]), 1e-9)
        if t * SAMPLE_RATE + len(y) > n - SAMPLE_RATE // 2:
            break
        place(speech, y, int(t * SAMPLE_RATE))
        used.append(clip)
        t += len(y) / SAMPLE_RATE + float(rng.uniform(0.1, 1.2))
    ratio_db = float(rng.uniform(*RATIO_DB))
    if with_music:
        speech *= _ratio_gain(speech, backing, ratio_db)
    mix, speech, backing, peak_db = _finish(speech, backing, rng)
    spoken = labels_from_stem(speech, SAMPLE_RATE)
    meta = {"language": language, "clips": used, "with_music": with_music,
            "programs": programs, "speech_to_accompaniment_db": round(ratio_db, 2)
            if with_music else None,
            "speech_segments": [[s.start, s.end] for s in spoken if s.label == "sing"],
            "peak_dbfs": peak_db, "sources": sources}
    return TrackAudio(mix, speech, backing, [Segment(0.0, n / SAMPLE_RATE, "nosing")], meta)
