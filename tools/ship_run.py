"""Copy a trained run folder into `saved_models/runs/` as a small shipped run (no checkpoints,
no images or audio): what `svdx run` uses by default instead of training.

    tools/ship_run.py detector work/demo/detector saved_models/runs/detector
    tools/ship_run.py gan      work/demo/gan      saved_models/runs/gan

A detector keeps run.json, best.weights.h5 (else final), standardisation.npz, summary.json,
best.json and evaluation.json. A GAN keeps run.json and writes generator.weights.h5 and
critic.weights.h5 from its final weights or, for a run still training, from its latest
checkpoint; summary.json then records that checkpoint's step. Its training curves (Wasserstein
estimate, gradient penalty, losses, detector-fc8 Fréchet distance) go to a scalar-only `tb/`
that the report and TensorBoard read. Everything is written into a
temporary folder that replaces the destination only when complete.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

DETECTOR_FILES = ("run.json", "standardisation.npz", "summary.json", "best.json",
                  "evaluation.json")


def ship_detector(src: Path, tmp: Path) -> None:
    for name in DETECTOR_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, tmp / name)
    weights = src / "best.weights.h5"
    shutil.copy2(weights if weights.exists() else src / "final.weights.h5",
                 tmp / "best.weights.h5")


def ship_gan(src: Path, tmp: Path) -> None:
    import tensorflow as tf

    from tf_svdx import config as config_lib
    from tf_svdx.io import write_json
    from tf_svdx.models import build_critic, build_generator
    from tf_svdx.train.loop import save_weights_atomically
    record = json.loads((src / "run.json").read_text(encoding="utf-8"))
    cfg = config_lib.from_dict(record["config"])
    shutil.copy2(src / "run.json", tmp / "run.json")
    if (src / "generator.weights.h5").exists():
        for name in ("generator.weights.h5", "critic.weights.h5", "summary.json"):
            shutil.copy2(src / name, tmp / name)
        steps = json.loads((src / "summary.json").read_text())["steps"]
        ship_curves(src / "tb", tmp / "tb", steps)
        return
    latest = tf.train.latest_checkpoint(str(src / "ckpt"))
    if latest is None:
        raise SystemExit(f"{src}: no final weights and no checkpoint")
    generator = build_generator(cfg.gan, cfg.frontend)
    critic = build_critic(cfg.gan, cfg.frontend)
    tf.train.Checkpoint(generator=generator, critic=critic).restore(latest).expect_partial()
    save_weights_atomically(generator, tmp / "generator.weights.h5")
    save_weights_atomically(critic, tmp / "critic.weights.h5")
    step = int(latest.rsplit("-", 1)[1])
    write_json(tmp / "summary.json", {
        "steps": step, "from_checkpoint": Path(latest).name, "planned_steps":
        cfg.train_gan.steps, "config_fingerprint": record.get("config_fingerprint"),
        "data_fingerprint": record.get("data_fingerprint")})
    ship_curves(src / "tb", tmp / "tb", step)


CURVE_TAGS = ("gan/wasserstein", "gan/gradient_penalty", "gan/critic_loss", "gan/generator_loss",
              "gan/frechet_fc8")


def ship_curves(src_tb: Path, dst_tb: Path, last_step: int) -> None:
    """The run's training curves as a small scalar-only TensorBoard log (no images or audio), up
    to the shipped step; where a resumed run logged a step twice, its latest value is kept."""
    import tensorflow as tf

    from tf_svdx.report.tensorboard import read_scalars
    if not src_tb.is_dir():
        return
    with tf.summary.create_file_writer(str(dst_tb)).as_default():
        for tag, points in read_scalars(src_tb, CURVE_TAGS).items():
            for step, value in points:
                if step <= last_step:
                    tf.summary.scalar(tag, value, step=step)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("detector", "gan"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, src, dst = argv[1], Path(argv[2]), Path(argv[3])
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (ship_detector if kind == "detector" else ship_gan)(src, tmp)
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    for path in sorted(dst.iterdir()):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
