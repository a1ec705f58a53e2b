"""Train the WGAN-GP prior on a GPU that has JAX but no TensorFlow (the lent device machine).

The generator and critic are the package's own backend-neutral Keras 3 models
(`tf_svdx.models.build_generator/build_critic`), run under Keras' JAX backend with the same
losses, gradient penalty (α per example, ε inside the root, λ from config), n_critic, batch and
Keras Adam settings as `svdx train-gan` (tf_svdx/train/wgan_gp.py). Only the random streams
differ (jax.random instead of TF's stateless ops), so a run here is reproducible from its seed
but not bit-identical to a TF run. Three steps:

    # here (TensorFlow venv): the training split's raw log-mel as one small file
    .venv/bin/python tools/gan_jax.py export-data --config=configs/demo.toml --out=.gpudata
    # on the GPU machine (Keras + JAX): train for a wall-clock budget, snapshots every K updates
    KERAS_BACKEND=jax python3 tools/gan_jax.py train --config=configs/demo.toml \
        --data=.gpudata/gan_train.npz --detector=saved_models/runs/detector --out=$OUT
    # here again: Fréchet curve with tf_svdx.explain.frechet_distance, TensorBoard events and a
    # run folder that `svdx run` / tools/ship_run.py understand
    .venv/bin/python tools/gan_jax.py import --config=configs/demo.toml --trained=DIR \
        --out=work/demo/gan_gpu

Training data: every frame of the split's tracks (with the pipeline's floor padding between
tracks) quantised to uint16 between its min and max (step < 2e-4 in log magnitude), and the
excerpt centres `svdx train-gan` draws from, so excerpts are the same population.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _config(path):
    from tf_svdx import config as config_lib
    return config_lib.load(path)


# --------------------------------------------------------------------------------- export-data
def export_data(args) -> int:
    from tf_svdx.data.pipeline import ExcerptSource, Prepared
    from tf_svdx.io import atomic_path

    cfg = _config(args.config)
    prepared = Prepared(cfg.train_gan.prepared)
    split = cfg.train_gan.split or ("train" if "train" in prepared.splits else "unlabelled")
    fe = prepared.frontend
    pad = max(cfg.augment.source_frames, fe.excerpt_frames) // 2 + 1  # as training_excerpts
    source = ExcerptSource(prepared.tracks(split), fe, pad, linear=False, labelled_only=False)
    lo, hi = float(source.log_mel.min()), float(source.log_mel.max())
    q = np.round((source.log_mel - lo) / (hi - lo) * 65535).astype(np.uint16)
    out = Path(args.out) / "gan_train.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, q=q, lo=lo, hi=hi, centres=source.centres.astype(np.int32),
                                data_fingerprint=prepared.manifest["data_fingerprint"],
                                split=split, excerpt_frames=fe.excerpt_frames)
    err = np.abs(lo + q.astype(np.float64) * (hi - lo) / 65535 - source.log_mel).max()
    print(f"{out}: {len(source.log_mel)} frames, {len(source.centres)} centres, "
          f"{out.stat().st_size / 2**20:.1f} MiB, max quantisation error {err:.2e}")
    return 0


# --------------------------------------------------------------------------------------- train
def train(args) -> int:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp
    import keras

    from tf_svdx.config import FrontEnd
    from tf_svdx.models import build_critic, build_detector, build_generator, feature_model

    cfg = _config(args.config)
    opts = cfg.train_gan
    fe = FrontEnd()
    blob = np.load(args.data)
    lo, hi = float(blob["lo"]), float(blob["hi"])
    data = jnp.asarray(lo + blob["q"].astype(np.float32) * np.float32((hi - lo) / 65535))
    centres = jnp.asarray(blob["centres"])
    frames = int(blob["excerpt_frames"])
    offsets = jnp.arange(frames) - frames // 2
    batch, n_critic, lam = opts.batch_size, opts.n_critic, opts.gp_weight
    print(f"devices: {jax.devices()}; data {data.shape}, {len(centres)} centres; "
          f"batch {batch}, n_critic {n_critic}, λ {lam}, Adam {opts.adam()}", flush=True)

    keras.utils.set_random_seed(cfg.seed)
    generator = build_generator(cfg.gan, fe)
    critic = build_critic(cfg.gan, fe)
    lr, b1g, b1d, b2 = opts.adam()
    opt_g = keras.optimizers.Adam(lr, beta_1=b1g, beta_2=b2)
    opt_d = keras.optimizers.Adam(lr, beta_1=b1d, beta_2=b2)
    opt_g.build(generator.trainable_variables)
    opt_d.build(critic.trainable_variables)
    for model in (generator, critic):
        assert not model.non_trainable_variables, model.name

    def g_apply(gtv, z):
        return generator.stateless_call(gtv, [], z, training=True)[0]

    def c_apply(ctv, x):
        return critic.stateless_call(ctv, [], x, training=True)[0]

    def real_batch(key, n):
        c = centres[jax.random.randint(key, (n,), 0, len(centres))]
        return jnp.transpose(data[c[:, None] + offsets], (0, 2, 1))[..., None]

    def critic_objective(ctv, x, fake, alpha):
        d_real, d_fake = c_apply(ctv, x), c_apply(ctv, fake)
        x_hat = x + alpha[:, None, None, None] * (fake - x)
        grads = jax.grad(lambda xh: jnp.sum(c_apply(ctv, xh)))(x_hat)
        norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)) + 1e-10)
        gp = jnp.mean(jnp.square(norms - 1.0))
        w = jnp.mean(d_real) - jnp.mean(d_fake)
        return -w + lam * gp, (w, gp)

    def update(state, key):
        gtv, ctv, og, od = state
        keys = jax.random.split(key, 3 * n_critic + 1)
        for k in range(n_critic):
            x = real_batch(keys[3 * k], batch)
            fake = g_apply(gtv, jax.random.normal(keys[3 * k + 1], (batch, cfg.gan.latent_dim)))
            alpha = jax.random.uniform(keys[3 * k + 2], (batch,))
            (d_loss, (w, gp)), grads = jax.value_and_grad(critic_objective, has_aux=True)(
                ctv, x, fake, alpha)
            ctv, od = opt_d.stateless_apply(od, grads, ctv)
        z = jax.random.normal(keys[-1], (batch, cfg.gan.latent_dim))
        g_loss, grads = jax.value_and_grad(
            lambda g: -jnp.mean(c_apply(ctv, g_apply(g, z))))(gtv)
        gtv, og = opt_g.stateless_apply(og, grads, gtv)
        return (gtv, ctv, og, od), jnp.stack([d_loss, w, gp, g_loss])

    base = jax.random.key(cfg.seed)
    chunk = args.chunk

    @jax.jit
    def run_chunk(state, first):
        keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(first + jnp.arange(chunk))
        return jax.lax.scan(update, state, keys)

    # The Fréchet monitor's detector (fc8, inference mode) and its fixed real/generated inputs.
    det_run = Path(args.detector)
    det_cfg = json.loads((det_run / "run.json").read_text())["config"]["detector"]
    from tf_svdx.config import Detector
    detector = build_detector(Detector(**det_cfg), fe)
    detector.load_weights(str(det_run / "best.weights.h5"))
    fc8 = feature_model(detector, ["fc8"])
    stats = np.load(det_run / "standardisation.npz")
    mean = jnp.asarray(stats["mean"])[None, :, None, None]
    std = jnp.asarray(stats["std"])[None, :, None, None]
    fc8_tv = [v.value for v in fc8.trainable_variables]
    fc8_ntv = [v.value for v in fc8.non_trainable_variables]

    @jax.jit
    def activations(x):
        return fc8.stateless_call(fc8_tv, fc8_ntv, (x - mean) / std, training=False)[0]["fc8"]

    n_fid = args.fid_samples
    real_x = real_batch(jax.random.key(cfg.seed + 1), n_fid)
    real_acts = np.concatenate([np.asarray(activations(real_x[i:i + 512]))
                                for i in range(0, n_fid, 512)])
    fid_z = jax.random.normal(jax.random.key(cfg.seed + 2), (n_fid, cfg.gan.latent_dim))
    fixed_z = jax.random.normal(jax.random.key(cfg.seed + 3), (8, cfg.gan.latent_dim))
    gen_eval = jax.jit(lambda gtv, z: generator.stateless_call(gtv, [], z, training=False)[0])

    state = ([v.value for v in generator.trainable_variables],
             [v.value for v in critic.trainable_variables],
             [v.value for v in opt_g.variables], [v.value for v in opt_d.variables])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = {"steps": [], "acts": [], "samples": [], "metrics": []}
    best = (np.inf, 0, None)

    def snapshot(step):
        nonlocal best
        gtv = state[0]
        acts = np.concatenate([np.asarray(activations(gen_eval(gtv, fid_z[i:i + 512])))
                               for i in range(0, n_fid, 512)])
        history["steps"].append(step)
        history["acts"].append(acts)
        history["samples"].append(np.asarray(gen_eval(gtv, fixed_z)))
        fid = _frechet(acts, real_acts)  # to pick the best snapshot; `import` recomputes it
        if fid < best[0]:
            best = (fid, step, jax.tree_util.tree_map(np.asarray, (state[0], state[1])))
        return fid

    print(f"initial fc8 Fréchet {snapshot(0):.3f}", flush=True)
    step, t_start, t_compile = 0, time.perf_counter(), None
    while step + chunk <= args.max_steps:
        t0 = time.perf_counter()
        state, metrics = run_chunk(state, jnp.int32(step))
        metrics = np.asarray(metrics)
        step += chunk
        if t_compile is None:
            t_compile = time.perf_counter() - t0
            t_train = time.perf_counter()
        if not np.all(np.isfinite(metrics)):
            raise FloatingPointError(f"non-finite loss in updates {step - chunk}..{step}")
        history["metrics"].append(metrics)
        if step % args.snapshot_every == 0:
            elapsed = time.perf_counter() - t_train
            fid = snapshot(step)
            rate = (step - chunk) / max(elapsed, 1e-9)
            print(f"step {step}: W {metrics[:, 1].mean():.3f} GP {metrics[:, 2].mean():.4f} "
                  f"fc8 Fréchet {fid:.3f}; {rate:.1f} generator updates/s", flush=True)
        if time.perf_counter() - t_start > args.seconds:
            break
    if step % args.snapshot_every:
        snapshot(step)
    train_s = time.perf_counter() - t_train

    def save(tvs, names):
        for model, values, name in zip((generator, critic), tvs, names):
            for var, value in zip(model.trainable_variables, values):
                var.assign(value)
            model.save_weights(str(out / name))

    save((state[0], state[1]), ("generator.weights.h5", "critic.weights.h5"))
    save(best[2], ("generator_best.weights.h5", "critic_best.weights.h5"))
    np.savez_compressed(out / "history.npz", steps=np.array(history["steps"]),
                        acts=np.stack(history["acts"]), samples=np.stack(history["samples"]).astype(np.float16),
                        real_acts=real_acts, metrics=np.concatenate(history["metrics"]),
                        fixed_z=np.asarray(fixed_z))
    info = {"steps": step, "best_step": best[1], "best_frechet_on_device": best[0],
            "compile_s": t_compile, "train_s": train_s,
            "updates_per_s": (step - chunk) / train_s, "device": str(jax.devices()[0]),
            "jax": jax.__version__, "keras": keras.__version__, "chunk": chunk,
            "snapshot_every": args.snapshot_every, "fid_samples": n_fid,
            "data_fingerprint": str(blob["data_fingerprint"]), "split": str(blob["split"])}
    (out / "train_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    return 0


def _frechet(a, b):
    """Fréchet distance of two [N, d] samples (symmetric-root form; used only on the GPU machine,
    which has no TensorFlow to import tf_svdx.explain.frechet_distance from)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ cb @ root_a)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb)
                 - 2 * np.sum(np.sqrt(np.clip(cross, 0, None))))


# -------------------------------------------------------------------------------------- import
def import_run(args) -> int:
    import tensorflow as tf

    from tf_svdx.explain import frechet_distance
    from tf_svdx.io import write_json
    from tf_svdx.report.tensorboard import spectrogram_grid

    cfg = _config(args.config)
    src, out = Path(args.trained), Path(args.out)
    info = json.loads((src / "train_info.json").read_text())
    hist = np.load(src / "history.npz")
    pick = args.pick
    step = info["steps"] if pick == "final" else info["best_step"]
    suffix = "" if pick == "final" else "_best"
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, train_gan=dataclasses.replace(cfg.train_gan, steps=step))
    curve = []
    writer = tf.summary.create_file_writer(str(out / "tb"))
    metrics = hist["metrics"]
    every = cfg.train_gan.scalars_every
    with writer.as_default():
        for s in range(every, len(metrics) + 1, every):
            window = metrics[s - every:s]
            for i, name in enumerate(("critic_loss", "wasserstein", "gradient_penalty",
                                      "generator_loss")):
                tf.summary.scalar(f"gan/{name}", float(window[:, i].mean()), step=s)
        for s, acts, samples in zip(hist["steps"], hist["acts"], hist["samples"]):
            full = frechet_distance(acts, hist["real_acts"])
            small = frechet_distance(acts[:256], hist["real_acts"][:256])
            curve.append({"step": int(s), "frechet_fc8": full, "frechet_fc8_256": small})
            tf.summary.scalar("gan/frechet_fc8", small, step=int(s))
            tf.summary.scalar(f"gan/frechet_fc8_{len(acts)}", full, step=int(s))
            tf.summary.image("gan/fixed_z", spectrogram_grid(samples), step=int(s))
    writer.flush()
    # The weights mean the same under TensorFlow: the shipped generator reproduces the samples
    # the JAX run made from the same z at that step.
    from tf_svdx.models import build_generator
    generator = build_generator(cfg.gan)
    generator.load_weights(str(src / f"generator{suffix}.weights.h5"))
    at = list(hist["steps"]).index(step)
    gap = float(np.abs(generator(hist["fixed_z"], training=False).numpy()
                       - hist["samples"][at]).max())
    print(f"TensorFlow vs JAX generator on the fixed z: max |Δ| {gap:.2e}")
    if gap > 2e-2:  # the samples travel as float16
        raise SystemExit(f"{src}: the weights do not reproduce the JAX samples (max |Δ| {gap})")
    for name in ("generator", "critic"):
        data = (src / f"{name}{suffix}.weights.h5").read_bytes()
        tmp = out / f".{name}.weights.h5.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / f"{name}.weights.h5")
    record = {"config": cfg.to_dict(), "config_fingerprint": cfg.fingerprint(),
              "data_fingerprint": info["data_fingerprint"], "split": info["split"],
              "trainer": {"tool": "tools/gan_jax.py", **{k: info[k] for k in (
                  "device", "jax", "keras", "updates_per_s", "train_s", "compile_s")},
                  "trained_steps": info["steps"], "shipped_step": step}}
    from tf_svdx.train.wgan_gp import resume_key
    record["resume_key"] = resume_key(cfg, info["data_fingerprint"])
    write_json(out / "run.json", record)
    write_json(out / "frechet_curve.json", curve)
    write_json(out / "summary.json", {"steps": step, "config_fingerprint": cfg.fingerprint(),
                                      "data_fingerprint": info["data_fingerprint"],
                                      "frechet_fc8": next(c["frechet_fc8"] for c in curve
                                                          if c["step"] == step)})
    for c in curve:
        print(f"step {c['step']:>6}: fc8 Fréchet {c['frechet_fc8']:.3f} "
              f"(first 256: {c['frechet_fc8_256']:.3f})")
    print(f"{out}: {pick} weights at step {step}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export-data")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("train")
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--detector", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=420.0, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=10**6)
    p.add_argument("--chunk", type=int, default=100, help="generator updates per compiled call")
    p.add_argument("--snapshot-every", type=int, default=1000)
    p.add_argument("--fid-samples", type=int, default=2048)
    p = sub.add_parser("import")
    p.add_argument("--config", required=True)
    p.add_argument("--trained", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pick", choices=("final", "best"), default="final")
    args = parser.parse_args(argv)
    return {"export-data": export_data, "train": train, "import": import_run}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
