"""`svdx run`: the whole pipeline, stage by stage, each skipped when its outputs are up to date.

    corpus → prepare → detector → gan → explain → export → report

A stage is up to date when its outputs exist and record the fingerprint of the config sections
(and the input fingerprints) that produce them; otherwise it runs, and every stage resumes from
what a killed run left (corpus tracks, prepare shards, training checkpoints, explanation chunks),
so an interrupted `svdx run` run again carries on. By default the detector and the generator are
the shipped run folders in `saved_models/runs/` (`run.detector`, `run.generator`): they are
checked against the prepared data's fingerprint and used as they are; `--from_scratch` trains
both with this config instead.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from tf_svdx.config import Config
from tf_svdx.errors import ConfigError

STAGES = ("corpus", "prepare", "detector", "gan", "explain", "export", "report")


def _read(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


def explain_key(config: Config, identity: dict) -> str:
    """What makes an explanation run's outputs valid: its section, the seed and the models."""
    return f"{config.fingerprint('seed', 'explain', ignore={'explain': ('out',)})}-" \
        f"{identity.get('detector')}-{identity.get('generator')}"


def resolve(config: Config, from_scratch: bool) -> Config:
    """The config the stages run with: the shipped detector/generator unless from scratch."""
    ex, r = config.explain, config.run
    if from_scratch or not r.detector:
        ex = dataclasses.replace(ex, detector=config.train_detector.out)
    else:
        ex = dataclasses.replace(ex, detector=r.detector)
    if from_scratch or not r.generator:
        ex = dataclasses.replace(ex, generator=config.train_gan.out)
    else:
        ex = dataclasses.replace(ex, generator=r.generator)
    return dataclasses.replace(config, explain=ex)


def run(config: Config, *, from_scratch: bool = False, stages=STAGES,
        progress: bool = True) -> dict:
    """Run the named stages in pipeline order; returns {stage: summary line}."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown {unknown} (valid: {', '.join(STAGES)})")
    config = resolve(config, from_scratch)
    trained = {"detector": from_scratch or not config.run.detector,
               "gan": from_scratch or not config.run.generator}
    lines = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.perf_counter()
        summary = _STAGE[stage](config, trained, progress)
        lines[stage] = f"{stage:<9} {summary} [{_minutes(time.perf_counter() - t0)}]"
        print(lines[stage], flush=True)
    return lines


def _corpus(config, trained, progress):
    from tf_svdx.data.democorpus import build_corpus
    opts = config.make_corpus
    if Path(config.prepare.corpus).resolve() != Path(opts.out).resolve():
        return f"skipped: prepare.corpus is {config.prepare.corpus}, not the built-in corpus"
    report = build_corpus(opts, progress=progress)
    return (f"{report.get('tracks', '?')} tracks, {report.get('minutes', 0):.1f} min of audio "
            f"→ {opts.out}")


def _prepare(config, trained, progress):
    from tf_svdx.data.prepare import prepare
    manifest = prepare(config, progress=progress)
    splits = manifest.get("splits", {})
    counts = ", ".join(f"{k} {v.get('tracks', 0)}" for k, v in splits.items())
    return f"{counts} tracks; data {manifest.get('data_fingerprint')} → {config.prepare.out}"


def _check_shipped(folder: str, prepared_folder: str, what: str) -> dict:
    record = _read(Path(folder) / "run.json")
    if record is None:
        raise ConfigError(f"{folder}: no run.json; not a shipped {what} run folder "
                          f"(use --from_scratch to train one)")
    manifest = _read(Path(prepared_folder) / "manifest.json") or {}
    if record.get("data_fingerprint") != manifest.get("data_fingerprint"):
        raise ConfigError(
            f"{folder}: the shipped {what} was trained on data {record.get('data_fingerprint')}, "
            f"but {prepared_folder} is {manifest.get('data_fingerprint')}; use --from_scratch")
    return record


def _finished(folder: Path, config: Config, steps: int, prepared: str, key_fn) -> bool:
    """A training run folder that reached `steps` with this config (its resume key) and data."""
    done, record = _read(folder / "summary.json"), _read(folder / "run.json")
    manifest = _read(Path(prepared) / "manifest.json") or {}
    return bool(done and record and done.get("steps") == steps and record.get("resume_key") ==
                key_fn(config, manifest.get("data_fingerprint")))


def _detector(config, trained, progress):
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector, evaluate
    from tf_svdx.io import write_json
    folder = Path(config.explain.detector)
    if not trained["detector"]:
        _check_shipped(str(folder), config.train_detector.prepared, "detector")
        summary = "shipped"
    else:
        from tf_svdx.train.detector import resume_key, train_detector
        if _finished(folder, config, config.train_detector.steps,
                     config.train_detector.prepared, resume_key):
            summary = "up to date"
        else:
            train_detector(config, progress=progress)
            summary = "trained"
    evaluation = _read(folder / "evaluation.json")
    shifts = [float(s) for s in config.evaluate.pitch_shifts]
    if evaluation is None or evaluation.get("pitch_shifts") != shifts:
        det = TrainedDetector.load(folder)
        evaluation = evaluate(det, Prepared(config.train_detector.prepared), tuple(shifts))
        write_json(folder / "evaluation.json", evaluation)
    t = evaluation["test"]
    return (f"{summary}: test error {100 * t['error']:.2f}%, AUROC {t['auroc']:.3f} "
            f"→ {folder}")


def _gan(config, trained, progress):
    folder = Path(config.explain.generator)
    if not trained["gan"]:
        record = _check_shipped(str(folder), config.train_gan.prepared, "generator")
        summary = _read(folder / "summary.json") or {}
        return f"shipped: {summary.get('steps', '?')} generator updates " \
            f"(config {record.get('config_fingerprint')}) → {folder}"
    from tf_svdx.train.wgan_gp import resume_key, train_gan
    if _finished(folder, config, config.train_gan.steps, config.train_gan.prepared, resume_key):
        return f"up to date: {config.train_gan.steps} generator updates → {folder}"
    summary = train_gan(config, progress=progress)
    return f"trained: {summary['steps']} generator updates → {folder}"


def _identity(config) -> dict:
    from tf_svdx.evaluation import TrainedDetector
    from tf_svdx.explain.job import load_generator
    from tf_svdx.explain.reference import model_fingerprint
    identity = {"detector": model_fingerprint(TrainedDetector.load(config.explain.detector).model)}
    if config.explain.space == "latent":
        identity["generator"] = model_fingerprint(load_generator(config.explain.generator)[0])
    return identity


def _explain(config, trained, progress):
    from tf_svdx.explain.job import explain
    out = Path(config.explain.out)
    key = explain_key(config, _identity(config))
    doc = _read(out / "results.json")
    if doc is None or doc.get("run_key") != key:
        doc = explain(config, progress=progress, run_key=key)
        state = "explained"
    else:
        state = "up to date"
    sel = doc["selected"]
    parts = [f"{d} lr {e['lr']:g} λ {e['lambda']:g} {e['iterations']} it (FID {e['fid_1d']:.3g})"
             for d, e in sel.items()]
    return f"{state}: {len(doc['settings'])} settings; selected " + "; ".join(parts)


def _export(config, trained, progress):
    from tf_svdx.export import export, latest_export_key
    key = f"{explain_key(config, _identity(config))}-{config.fingerprint('export')}"
    if all(latest_export_key(config.export.out, name) == key for name in config.export.models):
        return f"up to date → {config.export.out}"
    written = export(config, progress=progress, run_key=key)
    return f"{', '.join(f'{n} v{p.name}' for n, p in written.items())} → {config.export.out}"


def _report(config, trained, progress):
    from tf_svdx.report.html import write_report
    out = Path(config.run.report) if config.run.report else Path(config.explain.out).parent / \
        "report"
    index = write_report(out, detector_run=config.explain.detector,
                         explain_out=config.explain.out, saved_models=config.export.out,
                         gan_run=config.explain.generator or None, config=config)
    return f"→ {index}"


_STAGE = {"corpus": _corpus, "prepare": _prepare, "detector": _detector, "gan": _gan,
          "explain": _explain, "export": _export, "report": _report}
