"""`svdx explain`: load the models, scan the real reference, run the grid, score, select, write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_svdx import config as config_lib
from tf_svdx.errors import ConfigError


def load_generator(folder: str | Path):
    """A `svdx train-gan` run folder → its generator (final weights, else the latest
    checkpoint, so a running GAN can be tried) and its run record."""
    import tensorflow as tf

    from tf_svdx.models import build_generator
    folder = Path(folder)
    record, cfg = config_lib.read_run(folder, "train-gan")
    generator = build_generator(cfg.gan, cfg.frontend)
    weights = folder / "generator.weights.h5"
    if weights.exists():
        generator.load_weights(weights)
        record["weights"] = weights.name
    else:
        latest = tf.train.latest_checkpoint(str(folder / "ckpt"))
        if latest is None:
            raise ConfigError(f"{folder}: neither generator.weights.h5 nor a checkpoint")
        tf.train.Checkpoint(generator=generator).restore(latest).expect_partial()
        record["weights"] = Path(latest).name
    return generator, record


def explain(config: config_lib.Config, *, progress: bool = True,
            run_key: str | None = None) -> dict:
    """`svdx explain`: run the grid, score, select, render; returns the results.json document.
    `run_key` (from `svdx run`) is stored in it, so the run can tell it is up to date."""
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector
    from tf_svdx.explain import outputs
    from tf_svdx.explain.engine import Explainer
    from tf_svdx.explain.grid import check_grid, run_grid
    from tf_svdx.explain.reference import model_fingerprint, scan_reference
    from tf_svdx.explain.select import LayerActivations, rank, score, setting_of

    opts = config.explain
    check_grid(opts)
    for key in ("detector", "prepared") + (("generator",) if opts.space == "latent" else ()):
        if not getattr(opts, key):
            raise ConfigError(f"explain.{key}: required (a run or prepared folder)")
    if opts.space not in ("latent", "input"):
        raise ConfigError(f"explain.space: {opts.space!r} is not latent or input")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    det = TrainedDetector.load(opts.detector)
    prepared = Prepared(opts.prepared)
    generator, gan_record = load_generator(opts.generator) if opts.space == "latent" else \
        (None, None)
    identity = {"detector": model_fingerprint(det.model),
                "standardisation": _array_hash(det.standardiser.mean, det.standardiser.std),
                "generator": model_fingerprint(generator) if generator is not None else None}

    reference = scan_reference(det, prepared, split=opts.reference_split, target=opts.layer,
                               unit=opts.unit, layer=opts.fid_layer, n=opts.reference_n,
                               hop=opts.reference_hop, cache_dir=out / "reference",
                               progress=progress)
    explainer = Explainer(det.model, det.standardiser.mean, det.standardiser.std, generator,
                          layer=opts.layer, unit=opts.unit, improvement=opts.improvement,
                          precision=opts.precision)
    result = run_grid(explainer, opts, out, identity=identity, base_seed=config.seed,
                      progress=progress)
    layer_fn = LayerActivations(det.model, det.standardiser.mean, det.standardiser.std,
                                opts.fid_layer)
    entries = score(result, opts, reference, layer_fn)
    ranking = rank(entries)

    fe = det.frontend
    rendered, roles = {}, {role: {} for role in outputs.ROLES}
    for direction, ranked in ranking.items():
        for role in outputs.ROLES:
            entry = ranked[role]
            rows = result.select(setting_of(entry))
            extra = outputs.render(out, role, entry, rows, opts.show, fe)
            rendered[(direction, role)] = (entry, rows, extra)
            roles[role][direction] = outputs.summary(entry, extra)
    document = {
        "schema": 1, "target": {"layer": opts.layer, "unit": opts.unit}, "space": opts.space,
        "settings": entries, **roles,
        "reference": {"split": opts.reference_split, "n": opts.reference_n,
                      "layer": opts.fid_layer, "scanned": int(reference.count),
                      "cache": reference.fingerprint},
        "config": config.to_dict(), "config_fingerprint": config.fingerprint(),
        "data_fingerprint": prepared.manifest.get("data_fingerprint"),
        "detector": {"folder": str(opts.detector), "fingerprint": identity["detector"],
                     "config_fingerprint": det.record.get("config_fingerprint")},
        "generator": None if generator is None else {
            "folder": str(opts.generator), "fingerprint": identity["generator"],
            "weights": gan_record["weights"],
            "config_fingerprint": gan_record.get("config_fingerprint")},
    }
    if run_key is not None:
        document["run_key"] = run_key
    outputs.write_activations(out / "explanations" / "activations.npz", reference, rendered)
    outputs.write_results(out, document, entries)
    outputs.tensorboard(out / "tb", entries, rendered, fe)
    return document


def _array_hash(*arrays) -> str:
    import hashlib
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:16]
