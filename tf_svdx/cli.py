"""The `svdx` command: `svdx <subcommand> [--config=configs/x.toml] [--config.a.b=value] ...`.

One short function per subcommand; the work lives in the package. Configuration is the typed
defaults of `tf_svdx.config`, then the TOML file, then `--config.key=value` overrides, then the
subcommand's shortcut flags (e.g. `--corpus`, `--out`).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

from tf_svdx import config as config_lib  # noqa: E402
from tf_svdx.errors import SvdxError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "TOML config file (see configs/); defaults otherwise.")
flags.DEFINE_string("corpus", None, "prepare: corpus folder (Jamendo layout or music folder) "
                    "or CSV manifest; shortcut for --config.prepare.corpus.")
flags.DEFINE_string("out", None, "The command's output folder (prepare: --config.prepare.out, "
                    "train-detector: --config.train_detector.out, make-corpus: "
                    "--config.make_corpus.out, report: the report folder, default "
                    "<explain.out>/../report).")
flags.DEFINE_bool("strict", None, "prepare: fail on the first bad file instead of skipping it.")
flags.DEFINE_string("prepared", None, "train-detector/train-gan/evaluate/explain: a `svdx "
                    "prepare` output folder; shortcut for --config.<command>.prepared.")
flags.DEFINE_string("detector", None, "evaluate/predict/explain/report: a `svdx train-detector` "
                    "run folder.")
flags.DEFINE_string("generator", None, "explain/report: a `svdx train-gan` run folder (the "
                    "prior).")
flags.DEFINE_bool("pitch_shift_average", False, "evaluate: average predictions over pitch "
                  "shifts of 0, ±10 and ±20% (otherwise evaluate.pitch_shifts of --config, or "
                  "of the run's own config).")
flags.DEFINE_bool("plot", False, "predict: also write a PNG of log-mel, probability, segments.")
flags.DEFINE_bool("from_scratch", False, "run: train the detector and the GAN with this config "
                  "instead of using the shipped runs (run.detector, run.generator).")
flags.DEFINE_string("stages", None, "run: comma-separated stages to run (default all: corpus, "
                    "prepare, detector, gan, explain, export, report).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_float("minutes", None, "make-corpus: minutes of audio; shortcut for "
                   "--config.make_corpus.minutes.")
flags.DEFINE_integer("seed", None, "make-corpus: corpus seed; shortcut for "
                     "--config.make_corpus.seed.")
flags.DEFINE_bool("stems", None, "make-corpus: also keep the vocal and accompaniment stems.")
flags.DEFINE_bool("speech", None, "make-corpus: also build the spoken-voice subset "
                  "(<out>/speech, labelled nosing).")

_OVERRIDE_PREFIX = "--config."


def _config(extra: dict[str, object] | None = None) -> config_lib.Config:
    overrides = list(_OVERRIDES)
    for key, value in (extra or {}).items():
        if value is not None:
            overrides.append(f"{key}={value}")
    return config_lib.load(FLAGS.config, overrides)


def cmd_prepare(argv):
    """Turn a corpus into TFRecord shards, standardisation statistics and a manifest."""
    from tf_svdx.data.prepare import prepare, summary_lines
    cfg = _config({"prepare.corpus": FLAGS.corpus, "prepare.out": FLAGS.out,
                   "prepare.strict": FLAGS.strict})
    manifest = prepare(cfg, progress=FLAGS.progress)
    print(f"prepared {cfg.prepare.corpus} → {cfg.prepare.out}")
    for line in summary_lines(manifest):
        print(line)


def cmd_train_detector(argv):
    """Train the singing-voice detector (custom tf.function loop; resumes from checkpoints)."""
    from tf_svdx.train.detector import train_detector
    cfg = _config({"train_detector.prepared": FLAGS.prepared, "train_detector.out": FLAGS.out})
    summary = train_detector(cfg, progress=FLAGS.progress)
    best = summary["best"]
    err = "-" if best["step"] is None else f"{100 * best['valid_error']:.2f}% at step {best['step']}"
    print(f"trained {summary['steps']} steps → {cfg.train_detector.out}; best valid error {err}")


def cmd_make_corpus(argv):
    """Build the offline demo corpus: chorales, synthesised singers, real recordings."""
    from tf_svdx.data.democorpus import build_corpus, report_lines
    cfg = _config({"make_corpus.out": FLAGS.out, "make_corpus.minutes": FLAGS.minutes,
                   "make_corpus.seed": FLAGS.seed, "make_corpus.stems": FLAGS.stems,
                   "make_corpus.speech": FLAGS.speech})
    report = build_corpus(cfg.make_corpus, progress=FLAGS.progress)
    print(f"corpus → {cfg.make_corpus.out}")
    for line in report_lines(report):
        print(line)
    if "speech" in report:
        print(f"speech subset → {cfg.make_corpus.out}/speech (labelled nosing; speech regions "
              f"in its meta.json)")
        for line in report_lines(report["speech"]):
            print(line)


def cmd_train_gan(argv):
    """Train the WGAN-GP log-mel prior (custom tf.function loop; resumes from checkpoints)."""
    from tf_svdx.train.wgan_gp import train_gan
    cfg = _config({"train_gan.prepared": FLAGS.prepared, "train_gan.out": FLAGS.out})
    summary = train_gan(cfg, progress=FLAGS.progress)
    print(f"trained the GAN for {summary['steps']} generator steps → {cfg.train_gan.out}")


def cmd_explain(argv):
    """Explain the detector: activation maximisation over a grid, Fréchet-scored and selected."""
    from tf_svdx.explain.job import explain
    cfg = _config({"explain.detector": FLAGS.detector, "explain.generator": FLAGS.generator,
                   "explain.prepared": FLAGS.prepared, "explain.out": FLAGS.out})
    doc = explain(cfg, progress=FLAGS.progress)
    for direction, entry in doc["selected"].items():
        print(f"{direction}: selected lr {entry['lr']:g}, λ {entry['lambda']:g}, "
              f"{entry['iterations']} iterations (FID {entry['fid_1d']:.3g}; median "
              f"{doc['median'][direction]['fid_1d']:.3g}, worst "
              f"{doc['worst'][direction]['fid_1d']:.3g}); mean activation "
              f"{entry['activation_mean']:+.2f}")
    print(f"wrote {cfg.explain.out}/results.json, results.csv, explanations/, tb/")


def cmd_export(argv):
    """Export SavedModels for TF-Serving (versioned, atomic) and saved_models/models.config."""
    from tf_svdx.export import export
    cfg = _config({"explain.detector": FLAGS.detector, "explain.generator": FLAGS.generator,
                   "explain.prepared": FLAGS.prepared, "export.out": FLAGS.out})
    for name, folder in export(cfg, progress=FLAGS.progress).items():
        print(f"{name}: {folder}")
    print(f"models.config: {cfg.export.out}/models.config")


def cmd_report(argv):
    """Write a static HTML report: detector metrics, ranked explanations, audio, exports, GAN."""
    from pathlib import Path
    from tf_svdx.report.html import write_report
    cfg = _config({"explain.detector": FLAGS.detector, "explain.generator": FLAGS.generator})
    ex = cfg.explain
    if not ex.detector:
        raise SvdxError("report: explain.detector is not set (--detector or the config)")
    out = Path(FLAGS.out) if FLAGS.out else Path(ex.out).parent / "report"
    index = write_report(out, detector_run=ex.detector, explain_out=ex.out,
                         saved_models=cfg.export.out, gan_run=ex.generator or None, config=cfg)
    print(index)


def cmd_run(argv):
    """Run the whole pipeline (corpus → … → report); up-to-date stages are skipped."""
    from tf_svdx.run import STAGES, run
    cfg = _config()
    stages = tuple(s.strip() for s in FLAGS.stages.split(",")) if FLAGS.stages else STAGES
    run(cfg, from_scratch=FLAGS.from_scratch, stages=stages, progress=FLAGS.progress)


PITCH_SHIFTS = (0.0, -0.1, 0.1, -0.2, 0.2)  # --pitch_shift_average (SPEC §3)


def cmd_evaluate(argv):
    """Evaluate a trained detector: tuned threshold on valid, metrics on test (JSON + console)."""
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector, evaluate
    from tf_svdx.io import write_json
    det = TrainedDetector.load(_required("detector"))
    prepared = Prepared(FLAGS.prepared or det.config.train_detector.prepared)
    cfg = _config() if FLAGS.config else det.config
    shifts = PITCH_SHIFTS if FLAGS.pitch_shift_average else cfg.evaluate.pitch_shifts
    result = evaluate(det, prepared, shifts)
    write_json(det.folder / "evaluation.json", result)
    t = result["test"]
    print(f"threshold {result['threshold']:.3f} (tuned on valid: error "
          f"{100 * result['valid']['error']:.2f}%)")
    print(f"test: error {100 * t['error']:.2f}%  precision {t['precision']:.3f}  recall "
          f"{t['recall']:.3f}  specificity {t['specificity']:.3f}  F1 {t['f1']:.3f}  AUROC "
          f"{t['auroc']:.3f}  ({t['frames']} frames) → {det.folder / 'evaluation.json'}")


def cmd_predict(argv):
    """Write vocal segments (.lab, optional --plot PNG) for each AUDIO file given."""
    from pathlib import Path
    from tf_svdx.evaluation import TrainedDetector
    from tf_svdx.predict import predict_files
    if not argv:
        raise SvdxError("predict: give one or more audio files")
    det = TrainedDetector.load(_required("detector"))
    failed = predict_files(det, argv, Path(FLAGS.out) if FLAGS.out else None,
                           with_plot=FLAGS.plot)
    if failed and len(failed) == len(argv):
        raise SvdxError(f"no input could be read (first: {failed[0][1]})")


def _required(flag: str) -> str:
    value = getattr(FLAGS, flag)
    if not value:
        raise SvdxError(f"--{flag} is required")
    return value


def cmd_config(argv):
    """Print the effective configuration (defaults + file + overrides) as JSON."""
    import json
    print(json.dumps(_config().to_dict(), indent=2))


COMMANDS = {
    "run": cmd_run,
    "make-corpus": cmd_make_corpus,
    "prepare": cmd_prepare,
    "train-detector": cmd_train_detector,
    "train-gan": cmd_train_gan,
    "evaluate": cmd_evaluate,
    "explain": cmd_explain,
    "export": cmd_export,
    "report": cmd_report,
    "predict": cmd_predict,
    "config": cmd_config,
}
TAKES_FILES = {"predict"}
_OVERRIDES: list[str] = []


def _usage() -> str:
    lines = ["usage: svdx <command> [flags]   (svdx --helpfull for every flag)", "commands:"]
    for name, fn in COMMANDS.items():
        lines.append(f"  {name:<14} {fn.__doc__.splitlines()[0]}")
    return "\n".join(lines)


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint saver logs at INFO through absl
    if len(argv) < 2 or argv[1] not in COMMANDS:
        given = f"unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
        print(given + _usage(), file=sys.stderr)
        return 2
    if len(argv) > 2 and argv[1] not in TAKES_FILES:
        print(f"svdx: error: unexpected arguments {argv[2:]}", file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[1]](argv[2:])
    except SvdxError as e:
        print(f"svdx: error: {e}", file=sys.stderr)
        return 2
    return 0


def run():
    """Console-script entry point: split off `--config.key=value` overrides, then absl."""
    argv = []
    for arg in sys.argv:
        if arg.startswith(_OVERRIDE_PREFIX):
            _OVERRIDES.append(arg[len(_OVERRIDE_PREFIX):])
        else:
            argv.append(arg)
    app.run(lambda a: sys.exit(main(a)), argv=argv)


if __name__ == "__main__":
    run()
