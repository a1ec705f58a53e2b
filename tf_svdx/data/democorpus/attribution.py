"""ATTRIBUTION.md of a built corpus: every source package, its licence, and what was used."""

from __future__ import annotations

from tf_svdx.data.democorpus import recordings

# Source id → (what it contributed, where it comes from, licence).
SOURCES = {
    "music21-corpus": ("four-part Bach chorales (scores)", "PyPI music21 (its bundled corpus)",
                       "the music is public domain; music21 is BSD-3-Clause, its corpus "
                       "encodings public domain or distributed by permission"),
    "fluidsynth": ("software synthesizer that rendered the instruments", "Debian fluidsynth",
                   "LGPL-2.1+"),
    "fluid-soundfont-gm": ("sampled instruments (FluidR3_GM.sf2, by Frank Wen and others)",
                           "Debian fluid-soundfont-gm", "MIT"),
    "pysinsy": ("Sinsy HMM singing-voice synthesizer (Nagoya Institute of Technology)",
                "PyPI pysinsy 0.0.5", "pysinsy MIT; Sinsy and its dictionary BSD-3-Clause"),
    "nitech_jp_song070_f001": ("the Sinsy voice: HMMs trained on real female singing "
                               "(NIT SONG070 F001, HTS Working Group)",
                               "bundled with PyPI pysinsy", "CC-BY-3.0"),
    "festival": ("Festival speech synthesis system, singing mode (CSTR, University of "
                 "Edinburgh)", "Debian festival", "Festival licence (BSD-like, keep notices)"),
    "festvox-kallpc16k": ("the kal diphone voice (male, US English)",
                          "Debian festvox-kallpc16k", "Festival licence (BSD-like)"),
    "espeak-ng": ("espeak-ng speech synthesizer (English voices)", "Debian espeak-ng",
                  "GPL-3+"),
    "praat-parselmouth": ("Praat's PSOLA (pitch and duration manipulation)",
                          "PyPI praat-parselmouth 0.4.7", "GPL-3+"),
}
for _package in (*recordings.MUSIC.values(), recordings.SPEECH):
    SOURCES[_package.package] = (_package.credit, f"Debian {_package.package}", _package.licence)


def attribution(title: str, records: dict[str, dict], command: str,
                excluded: dict[str, dict[str, str]]) -> str:
    """The ATTRIBUTION.md text for a corpus made of `records` (track name → metadata)."""
    used = sorted({s for r in records.values() for s in r["sources"]},
                  key=list(SOURCES).index)
    lines = [f"# {title}", "", f"Built by `{command}`. Everything in it is synthesised or "
             "excerpted offline from the packages below; the audio is a derived work of each "
             "source it lists in meta.json, under that source's licence.", "",
             "## Sources and licences", "", "| source | what | from | licence |",
             "|---|---|---|---|"]
    for s in used:
        what, where, licence = SOURCES[s]
        n = sum(s in r["sources"] for r in records.values())
        lines.append(f"| {s} ({n} tracks) | {what} | {where} | {licence} |")
    recs = sorted({r["recording"] for r in records.values() if r.get("recording")})
    if recs:
        lines += ["", "## Recordings excerpted", ""] + [f"- {r}" for r in recs]
    if excluded:
        lines += ["", "## Recordings never used", ""]
        for key, files in excluded.items():
            lines += [f"- {key}/{name}: {why}" for name, why in files.items()]
    lines += ["", "Per-track sources, settings and licences-relevant details: meta.json."]
    return "\n".join(lines) + "\n"
