"""The detector-fc8 Fréchet distance of generator weights, on more samples than the training
monitor uses (its 256 per side make the curve noisy): one line per weights file or checkpoint.

    tools/gan_frechet.py --config=configs/demo.toml [--samples=2048] \
        saved_models/runs/gan/generator.weights.h5 work/demo/gan/ckpt/ckpt-5000 ...

Real excerpts come from the config's `train_gan.prepared` split and the detector from
`train_gan.detector`, drawn and standardised exactly as the training monitor does
(tf_svdx.train.wgan_gp._FidMonitor); generated excerpts come from one fixed set of z. So the
numbers compare the weights with each other, and with the monitor's at the same sample size."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--json", help="also write [{label, step, frechet_fc8, samples}] here")
    parser.add_argument("--steps", help="comma-separated generator steps of the weights (for "
                        "--json; default: from a checkpoint's name, 0 for init)")
    parser.add_argument("weights", nargs="+", help="generator .weights.h5, checkpoint prefix, "
                        "or `init` (the untrained generator as `svdx train-gan` builds it)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tf_svdx import config as config_lib
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.models import build_generator
    from tf_svdx.train.wgan_gp import _FidMonitor

    cfg = config_lib.load(args.config)
    opts = dataclasses.replace(cfg.train_gan, fid_samples=args.samples)
    prepared = Prepared(opts.prepared)
    split = opts.split or ("train" if "train" in prepared.splits else "unlabelled")
    data_cfg = dataclasses.replace(cfg, pipeline=dataclasses.replace(
        cfg.pipeline, batch_size=opts.batch_size))
    monitor = _FidMonitor(opts, prepared, data_cfg, split, cfg)
    generator = build_generator(cfg.gan, prepared.frontend)
    steps = [int(s) for s in args.steps.split(",")] if args.steps else [
        0 if w == "init" else int(w.rsplit("-", 1)[1]) if "ckpt-" in w else None
        for w in args.weights]
    if len(steps) != len(args.weights):
        parser.error(f"--steps has {len(steps)} values for {len(args.weights)} weights")
    rows = []
    for path, step in zip(args.weights, steps):
        if path == "init":
            from tf_svdx.train.loop import seed_everything
            seed_everything(cfg.seed)
            generator = build_generator(cfg.gan, prepared.frontend)
        elif path.endswith(".weights.h5"):
            generator.load_weights(path)
        else:
            tf.train.Checkpoint(generator=generator).restore(path).expect_partial()
        value = monitor(generator)
        rows.append({"label": path, "step": step, "frechet_fc8": value, "samples": args.samples})
        print(f"{path}: fc8 Fréchet distance {value:.3f} "
              f"({args.samples} generated vs {args.samples} real)", flush=True)
    if args.json:
        from tf_svdx.io import write_json
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
