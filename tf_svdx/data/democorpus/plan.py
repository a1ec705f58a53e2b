"""The corpus plan: which tracks, of what kind, singer, chorale or recording, in which split.

Everything random is drawn here from the corpus seed, or later from each track's own seed, so
the same seed and options give the same corpus whatever the number of processes and the order
in which they finish. Splits are by track, and also by chorale and by recording: a chorale (or
a recording) used in one split is never used in another.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_svdx.config import MakeCorpus
from tf_svdx.data.democorpus import chorales, recordings
from tf_svdx.data.democorpus.singers import SINGERS, Voice
from tf_svdx.errors import ConfigError

SPLITS = ("train", "valid", "test")
MAX_SHIFT = 7  # semitones the chorale may be transposed
SINGER_PATTERN = ("sinsy", "espeak", "sinsy", "festival")  # Sinsy sings half of the songs


@dataclasses.dataclass(frozen=True)
class TrackPlan:
    name: str  # file stem
    kind: str  # "song" | "recording" | "speech"
    split: str
    seconds: float  # target length (songs end on a phrase boundary near it)
    seed: int  # the track's own random stream
    singer: str = ""
    voice: str = ""  # the singer's voice variant
    chorale: str = ""
    recording: str = ""  # "package/file.ogg"

    def voice_spec(self) -> Voice:
        return next(v for v in SINGERS[self.singer].voices() if v.variant == self.voice)


def parse_list(text: str, valid, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in valid]
    if unknown:
        raise ConfigError(f"make_corpus.{what}: unknown {', '.join(map(repr, unknown))} "
                          f"(valid: {', '.join(valid)})")
    return items


def validate(opts: MakeCorpus) -> None:
    if not opts.minutes > 0:
        raise ConfigError(f"make_corpus.minutes must be > 0, got {opts.minutes}")
    if not 0 < opts.min_track_s <= opts.max_track_s:
        raise ConfigError(f"make_corpus: need 0 < min_track_s ≤ max_track_s, got "
                          f"{opts.min_track_s}, {opts.max_track_s}")
    if not 0 <= opts.recording_fraction < 1:
        raise ConfigError(f"make_corpus.recording_fraction must be in [0, 1), got "
                          f"{opts.recording_fraction}")
    if not (0 <= opts.valid_fraction and 0 <= opts.test_fraction
            and opts.valid_fraction + opts.test_fraction < 1):
        raise ConfigError("make_corpus: valid_fraction and test_fraction must be ≥ 0 and sum "
                          "to less than 1")
    if not parse_list(opts.singers, SINGERS, "singers"):
        raise ConfigError("make_corpus.singers: give at least one singer")
    parse_list(opts.recordings, recordings.MUSIC, "recordings")


def shifts(voice: Voice, low: int, high: int) -> list[int]:
    """Transpositions (semitones) that put a soprano line [low, high] into the voice's range."""
    octave = 12 * voice.octave
    return [s for s in range(-MAX_SHIFT, MAX_SHIFT + 1)
            if low + s + octave >= voice.low and high + s + octave <= voice.high]


def assign_splits(n: int, fractions: tuple[float, float, float]) -> list[str]:
    """A split per position, spread evenly (largest deficit first), each split non-empty when
    there are at least three positions and its fraction is positive."""
    counts = [0, 0, 0]
    out = []
    minimum = [1 if (n >= 3 and f > 0) else 0 for f in fractions]
    for i in range(n):
        left = n - i
        # Reserve positions for splits that still need their minimum.
        need = [k for k in range(3) if counts[k] < minimum[k]]
        if len(need) >= left:
            k = need[0]
        else:
            k = int(np.argmax([fractions[j] * (i + 1) - counts[j] for j in range(3)]))
        counts[k] += 1
        out.append(SPLITS[k])
    return out


def _durations(rng, total_s: float, lo: float, hi: float) -> list[float]:
    out = []
    while sum(out) < total_s - lo / 2:
        out.append(float(rng.uniform(lo, hi)))
    return out or [float(lo)]


def make_plan(opts: MakeCorpus) -> list[TrackPlan]:
    """The main corpus: songs (chorales, sung or played) and real instrumental recordings."""
    validate(opts)
    rng = np.random.default_rng([opts.seed, 0])
    fractions = (1.0 - opts.valid_fraction - opts.test_fraction, opts.valid_fraction,
                 opts.test_fraction)
    lengths = _durations(rng, opts.minutes * 60.0, opts.min_track_s, opts.max_track_s)
    n = len(lengths)
    packages = parse_list(opts.recordings, recordings.MUSIC, "recordings")
    n_rec = int(round(n * opts.recording_fraction)) if packages else 0
    if opts.recording_fraction > 0 and packages and n >= 3:
        n_rec = max(n_rec, 1)
    kinds = ["recording"] * n_rec + ["song"] * (n - n_rec)
    kinds = [str(k) for k in rng.permutation(kinds)]

    enabled = parse_list(opts.singers, SINGERS, "singers")
    pattern = [s for s in SINGER_PATTERN if s in enabled] or enabled
    songs = [i for i, k in enumerate(kinds) if k == "song"]
    singers = {i: pattern[j % len(pattern)] for j, i in enumerate(songs)}

    # Splits: stratified by kind and singer, so that each split gets some of each.
    order = sorted(range(n), key=lambda i: (kinds[i], singers.get(i, ""), i))
    splits = {}
    groups: dict[tuple, list[int]] = {}
    for i in order:
        groups.setdefault((kinds[i], singers.get(i, "")), []).append(i)
    counts = dict.fromkeys(SPLITS, 0)
    for members in groups.values():
        if len(members) >= 3:  # every split gets some of this group
            chosen = assign_splits(len(members), fractions)
        else:  # too few: continue the overall proportions
            chosen = []
            for _ in members:
                done = sum(counts.values()) + 1
                chosen.append(max(SPLITS, key=lambda s: fractions[SPLITS.index(s)] * done
                                  - counts[s]))
                counts[chosen[-1]] += 1
            counts = {s: counts[s] - chosen.count(s) for s in SPLITS}
        for i, split in zip(members, chosen):
            splits[i] = split
            counts[split] += 1

    # Chorales and recordings: disjoint pools per split.
    table = chorales.usable()
    chorale_pool, names = _chorale_pools(opts.seed, fractions)
    recs = [r for key in packages for r in recordings.music_files(key)]
    rec_ids = [str(r) for r in rng.permutation([r for r, _ in recs])]
    rec_seconds = dict(recs)
    rec_pool = dict(zip(SPLITS, _partition(rec_ids, fractions)))
    used: dict[str, int] = {s: 0 for s in SPLITS}
    used_rec: dict[str, int] = {s: 0 for s in SPLITS}

    plans = []
    for i in range(n):
        split, seconds = splits[i], lengths[i]
        seed = int(rng.integers(2 ** 63))
        if kinds[i] == "song":
            singer = SINGERS[singers[i]]
            voice = singer.voices()[int(rng.integers(len(singer.voices())))]
            pool = chorale_pool[split] or names
            for _ in range(len(pool)):
                chorale = pool[used[split] % len(pool)]
                used[split] += 1
                if shifts(voice, *table[chorale]):
                    break
            else:
                raise ConfigError(f"no chorale fits the range of voice {voice.variant}")
            plans.append(TrackPlan(f"song_{i + 1:03d}", "song", split, round(seconds, 3), seed,
                                   singer.name, voice.variant, chorale))
        else:
            pool = rec_pool[split] or rec_ids
            if not pool:
                raise ConfigError("make_corpus.recordings: no usable recording")
            recording = pool[used_rec[split] % len(pool)]
            used_rec[split] += 1
            seconds = min(seconds, rec_seconds[recording] - 1.0)
            plans.append(TrackPlan(f"recording_{i + 1:03d}", "recording", split,
                                   round(seconds, 3), seed, recording=recording))
    return plans


def make_speech_plan(opts: MakeCorpus) -> list[TrackPlan]:
    """The spoken-voice subset: speech over chorale accompaniment (or alone)."""
    validate(opts)
    rng = np.random.default_rng([opts.seed, 1])
    fractions = (1.0 - opts.valid_fraction - opts.test_fraction, opts.valid_fraction,
                 opts.test_fraction)
    lengths = _durations(rng, opts.minutes * 60.0 * opts.speech_fraction, opts.min_track_s,
                         opts.max_track_s)
    while len(lengths) < 3:
        lengths.append(float(rng.uniform(opts.min_track_s, opts.max_track_s)))
    pool, names = _chorale_pools(opts.seed, fractions)
    plans = []
    for i, (split, seconds) in enumerate(zip(assign_splits(len(lengths), fractions), lengths)):
        # From the end of the split's pool: the songs take theirs from the start.
        chorale = pool[split][-1 - i % len(pool[split])] if pool[split] else names[-1 - i]
        plans.append(TrackPlan(f"speech_{i + 1:03d}", "speech", split, round(seconds, 3),
                               int(rng.integers(2 ** 63)), chorale=chorale))
    return plans


def _chorale_pools(seed: int, fractions) -> tuple[dict[str, list[str]], list[str]]:
    """Chorales per split (shared by the songs and the speech subset), and all of them."""
    names = [str(c) for c in np.random.default_rng([seed, 2]).permutation(
        sorted(chorales.usable()))]
    return dict(zip(SPLITS, _partition(names, fractions))), names


def _partition(items: list[str], fractions) -> list[list[str]]:
    """Consecutive slices of `items` in proportion to `fractions`, each non-empty if possible."""
    n = len(items)
    counts = [int(round(n * f)) for f in fractions]
    for k in range(3):
        if counts[k] == 0 and fractions[k] > 0 and n >= 3:
            counts[k] = 1
    counts[0] = n - counts[1] - counts[2]
    bounds = np.cumsum([0] + counts)
    return [items[bounds[k]:bounds[k + 1]] for k in range(3)]
