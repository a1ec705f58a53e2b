"""The built-in demo corpus: a seeded, offline, labelled singing-voice corpus (DATA.md recipe).

    from tf_svdx.config import MakeCorpus
    from tf_svdx.data.democorpus import build_corpus
    report = build_corpus(MakeCorpus(out="work/demo_corpus", minutes=60, seed=0))

Modules, in pipeline order: `plan` (what to make) → `chorales`, `instruments`, `singers`,
`recordings` (the material) → `tracks` (one track: mix, stems, labels, metadata) → `labels`
(labels from the isolated vocal stem) → `build` (pool, resume, filelists, meta.json,
ATTRIBUTION.md, report). `signal` holds the one rate and band limit every source goes through.
No TensorFlow is imported.
"""

from tf_svdx.data.democorpus.build import build_corpus, report_lines, requirements
from tf_svdx.data.democorpus.labels import labels_from_stem
from tf_svdx.data.democorpus.plan import TrackPlan, make_plan, make_speech_plan

__all__ = ["TrackPlan", "build_corpus", "labels_from_stem", "make_plan", "make_speech_plan",
           "report_lines", "requirements"]
