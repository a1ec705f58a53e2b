"""Real recordings from Debian packages: instrumental game music (all nosing) and speech.

Excluded music tracks (never used), with the reason:
- stingers and loops shorter than 90 s (too short for a 150–210 s excerpt);
- tracks that may contain choir-like pads, which would be singing-like sound labelled nosing.
  Flagged by (a) a screening classifier trained here on FluidR3 chorale accompaniment with and
  without a choir layer (GM 52–54, 91) and applied to 1-s windows of every track (excluded when
  ≥ 60 % of the windows looked choir-like; a weak screen, about 78 % accurate on its own
  training data), or (b) a title suggesting choral writing. Nobody listened to every track:
  the list is a best effort, kept here and in every corpus's ATTRIBUTION.md.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import soundfile as sf

from tf_svdx.data.democorpus.deps import Requirement

MIN_RECORDING_S = 90.0


@dataclasses.dataclass(frozen=True)
class MusicPackage:
    key: str
    package: str  # Debian package
    folder: str
    licence: str
    credit: str
    excluded: dict[str, str]  # file name → reason (choir-like pads; short ones are found)

    def requirement(self) -> Requirement:
        return Requirement("path", self.folder, self.package,
                           purpose=f"the real instrumental recordings ({self.key})")


_CHOIR_SCREEN = "choir-like pads (screening classifier)"
_CHOIR_TITLE = "choir-like pads possible (title)"
MUSIC = {
    "wesnoth": MusicPackage(
        "wesnoth", "wesnoth-1.16-music", "/usr/share/games/wesnoth/1.16/data/core/music",
        "GPL-2+", "The Battle for Wesnoth project's composers (see the package's copyright file)",
        {"elf-land.ogg": _CHOIR_SCREEN, "love_theme.ogg": _CHOIR_SCREEN,
         "frantic-old.ogg": _CHOIR_SCREEN, "revelation.ogg": _CHOIR_SCREEN,
         "battle-epic.ogg": _CHOIR_SCREEN, "underground.ogg": _CHOIR_SCREEN,
         "suspense.ogg": _CHOIR_SCREEN,
         "frantic.ogg": _CHOIR_SCREEN, "loyalists.ogg": _CHOIR_SCREEN,
         "legends_of_the_north.ogg": _CHOIR_SCREEN, "the_king_is_dead.ogg": _CHOIR_SCREEN,
         "return_to_wesnoth.ogg": _CHOIR_SCREEN, "the_deep_path.ogg": _CHOIR_SCREEN,
         "knalgan_theme.ogg": _CHOIR_SCREEN, "heroes_rite.ogg": _CHOIR_SCREEN,
         "northern_mountains.ogg": _CHOIR_SCREEN, "siege_of_laurelmor.ogg": _CHOIR_SCREEN,
         "nunc_dimittis.ogg": _CHOIR_TITLE, "weight_of_revenge.ogg": _CHOIR_TITLE}),
    "hedgewars": MusicPackage(
        "hedgewars", "hedgewars-data", "/usr/share/games/hedgewars/Data/Music",
        "GPL-2", "The Hedgewars project's composers (see Data/Music/credits.txt)",
        {"Nature.ogg": _CHOIR_SCREEN, "Beach.ogg": _CHOIR_SCREEN, "Castle.ogg": _CHOIR_SCREEN,
         "Jungle.ogg": _CHOIR_SCREEN, "Freeway.ogg": _CHOIR_SCREEN, "Art.ogg": _CHOIR_SCREEN,
         "pirate.ogg": _CHOIR_SCREEN, "Olympics.ogg": _CHOIR_SCREEN}),
}

SPEECH = MusicPackage("ktuberling", "ktuberling-data", "/usr/share/ktuberling/sounds",
                      "GPL-2+", "KTuberling's spoken words (KDE; see the package's copyright file)",
                      {})


@functools.lru_cache(maxsize=None)
def music_files(key: str) -> tuple[tuple[str, float], ...]:
    """(recording id "key/file.ogg", seconds) of the usable tracks of one package, sorted."""
    package = MUSIC[key]
    out = []
    for path in sorted(Path(package.folder).glob("*.ogg")):
        seconds = sf.info(str(path)).duration
        if path.name not in package.excluded and seconds >= MIN_RECORDING_S:
            out.append((f"{key}/{path.name}", seconds))
    return tuple(out)


def excluded_files(key: str) -> dict[str, str]:
    """Every file of the package that is not used, with the reason."""
    package = MUSIC[key]
    out = dict(package.excluded)
    for path in sorted(Path(package.folder).glob("*.ogg")):
        if path.name not in out and sf.info(str(path)).duration < MIN_RECORDING_S:
            out[path.name] = f"shorter than {MIN_RECORDING_S:.0f} s"
    return dict(sorted(out.items()))


def recording_path(recording: str) -> Path:
    key, name = recording.split("/", 1)
    return Path(MUSIC[key].folder) / name


def read(path: Path, start_s: float = 0.0, seconds: float | None = None
         ) -> tuple[np.ndarray, int]:
    """Decode (the whole file, then cut: Vorbis seeking need not be sample-exact) → mono."""
    y, sr = sf.read(str(path), dtype="float64", always_2d=True)
    y = y.mean(axis=1)
    a = int(round(start_s * sr))
    b = len(y) if seconds is None else a + int(round(seconds * sr))
    return y[a:b], sr


@functools.lru_cache(maxsize=1)
def speech_files() -> tuple[str, ...]:
    """Spoken-word clips (paths relative to the package folder), sorted."""
    root = Path(SPEECH.folder)
    return tuple(str(p.relative_to(root)) for p in sorted(root.glob("*/*.ogg")))
