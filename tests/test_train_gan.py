"""WGAN-GP training loop: it learns, monitors, never NaNs, resumes exactly, and mirrors."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from h5weights import h5_weights

REPO = Path(__file__).parents[1]
TINY = ["gan.width=0.125", "train_gan.batch_size=8", "train_gan.scalars_every=5",
        "train_gan.image_every=10", "train_gan.checkpoint_every=5", "train_gan.n_critic=2"]


def _train(prepared, out, steps, *extra, **kw):
    args = [f"--config.{o}" for o in TINY + [f"train_gan.steps={steps}", *extra]]
    return subprocess.Popen([sys.executable, "-m", "tf_svdx.cli", "train-gan",
                             f"--prepared={prepared}", f"--out={out}", *args, "--noprogress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def _scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import tensorflow as tf
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return events, [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]


_weights = h5_weights


def test_short_run_lowers_the_critic_loss_and_logs_images_and_audio(tiny_prepared, tmp_path):
    proc = _train(tiny_prepared, tmp_path / "gan", 30, "train_gan.preset=wgan-gp")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    events, loss = _scalars(tmp_path / "gan" / "tb", "gan/critic_loss")
    assert len(loss) == 6 and all(np.isfinite(loss))
    assert loss[-1] < loss[0] - 0.5, loss
    tags = set(events.Tags()["tensors"])
    assert {"gan/wasserstein", "gan/gradient_penalty", "gan/generator_loss",
            "gan/seconds_per_step", "gan/fixed_z", "gan/fixed_z_audio"} <= tags
    for name in ("generator.weights.h5", "critic.weights.h5", "summary.json", "run.json"):
        assert (tmp_path / "gan" / name).exists()

    # Shipping it (tools/ship_run.py) keeps the weights and a scalar-only copy of the curves.
    shipped = tmp_path / "shipped"
    out = subprocess.run([sys.executable, "tools/ship_run.py", "gan", str(tmp_path / "gan"),
                          str(shipped)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    shipped_events, shipped_loss = _scalars(shipped / "tb", "gan/critic_loss")
    assert shipped_loss == loss
    assert not {"gan/fixed_z", "gan/fixed_z_audio"} & set(shipped_events.Tags()["tensors"])
    for (_, a), (_, b) in zip(_weights(tmp_path / "gan" / "generator.weights.h5"),
                              _weights(shipped / "generator.weights.h5")):
        np.testing.assert_array_equal(a, b)


def test_no_nan_at_a_high_learning_rate(tiny_prepared, tmp_path):
    """The ε inside the gradient-norm square root keeps a saturated critic's gradients finite."""
    proc = _train(tiny_prepared, tmp_path / "gan", 40, "train_gan.learning_rate=0.05",
                  "train_gan.beta1_generator=0", "train_gan.beta1_critic=0")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    for _, w in _weights(tmp_path / "gan" / "critic.weights.h5"):
        assert np.all(np.isfinite(w))


@pytest.mark.slow
def test_sigkill_resume_matches_uninterrupted_run(tiny_prepared, tmp_path):
    # Equal up to float rounding: the penalty's gradient-of-gradient convolutions are not
    # bitwise deterministic on CPU even with op determinism on (seen: 3.7e-9 in one weight).
    # A resume that drew other z, α or data would differ by ~1e-4 at this learning rate.
    ref = _train(tiny_prepared, tmp_path / "ref", 20, "train_gan.preset=wgan-gp")
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]
    proc = _train(tiny_prepared, tmp_path / "killed", 20, "train_gan.preset=wgan-gp")
    state = tmp_path / "killed" / "ckpt" / "checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and not (state.exists() and "ckpt-10" in state.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "generator.weights.h5").exists()
    resumed = _train(tiny_prepared, tmp_path / "killed", 20, "train_gan.preset=wgan-gp")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    for name in ("generator.weights.h5", "critic.weights.h5"):
        a, b = _weights(tmp_path / "ref" / name), _weights(tmp_path / "killed" / name)
        assert len(a) == len(b) >= 6
        for (n, u), (_, v) in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-7, err_msg=f"{name} {n}")


MIRRORED = """
import dataclasses, sys, numpy as np, tensorflow as tf, keras
from tf_svdx import config as config_lib
from tf_svdx.data.pipeline import Prepared, training_excerpts
from tf_svdx.models import build_critic, build_generator
from tf_svdx.train.loop import distributed_iterator, make_strategy, seed_everything
from tf_svdx.train.wgan_gp import make_gan_step, train_gan
# One op at a time: the step's math is what is checked here, not TF's scheduling (see below).
tf.config.threading.set_inter_op_parallelism_threads(1)
make_strategy("default", logical_cpus=2)
prepared, out = sys.argv[1], sys.argv[2]
base = ["gan.width=0.125", "train_gan.batch_size=8", "train_gan.steps=4", "train_gan.n_critic=2",
        "train_gan.preset=wgan-gp", "train_gan.image_every=100",
        f"train_gan.prepared={prepared}"]
result = {}
for strategy_name in ("default", "mirrored"):
    cfg = config_lib.load(None, base + [f"train_gan.strategy={strategy_name}",
                                        f"train_gan.out={out}/{strategy_name}"])
    # 1. The step itself with plain SGD, whose update is linear in the gradient.
    strategy = make_strategy(strategy_name)
    seed_everything(cfg.seed)
    with strategy.scope():
        g, c = build_generator(cfg.gan), build_critic(cfg.gan)
        opt_g, opt_d = keras.optimizers.SGD(1e-3), keras.optimizers.SGD(1e-3)
        opt_g.build(g.trainable_variables), opt_d.build(c.trainable_variables)
    init = [w.numpy() for w in g.weights + c.weights]
    opts = cfg.train_gan
    data_cfg = dataclasses.replace(cfg, pipeline=dataclasses.replace(
        cfg.pipeline, batch_size=opts.batch_size))
    dataset = training_excerpts(Prepared(prepared), data_cfg, "train", augment=False,
                                standardise=False, labelled_only=False)
    iterator = distributed_iterator(strategy, dataset.map(lambda x, y: x))
    step = make_gan_step(g, c, opt_g, opt_d, strategy, global_batch=opts.batch_size,
                         n_critic=opts.n_critic, gp_weight=opts.gp_weight,
                         latent_dim=cfg.gan.latent_dim, seed=cfg.seed)
    metrics = [step(iterator, tf.constant(i, tf.int64)) for i in range(3)]
    result[strategy_name] = {
        "sgd_weights": [w.numpy() for w in g.weights + c.weights], "sgd_init": init,
        "sgd_metrics": [[float(m[k]) for k in sorted(m)] for m in metrics]}
    # 2. The whole `svdx train-gan` loop with the configured Adam.
    train_gan(cfg, progress=False)
    g = build_generator(cfg.gan)
    g.load_weights(f"{out}/{strategy_name}/generator.weights.h5")
    result[strategy_name]["adam_weights"] = g.get_weights()
def maxdiff(u, v):
    return max(float(np.abs(p - q).max()) for p, q in zip(u, v))
a, b = result["default"], result["mirrored"]
print("SGD", maxdiff(a["sgd_weights"], b["sgd_weights"]), maxdiff(a["sgd_weights"], a["sgd_init"]),
      max(abs(u - v) for p, q in zip(a["sgd_metrics"], b["sgd_metrics"]) for u, v in zip(p, q)))
print("ADAM", maxdiff(a["adam_weights"], b["adam_weights"]),
      maxdiff(a["adam_weights"], a["sgd_init"]))
"""


def test_mirrored_on_two_logical_cpus_matches_one_device(tiny_prepared, tmp_path):
    """Per-replica penalties, global-batch scaling and replica-independent draws: two replicas
    train like one device, to float rounding, while training moved every weight tensor far more.

    First the GAN step alone with plain SGD (an update linear in the gradient, three steps, every
    logged metric too), then the whole `svdx train-gan` loop with its Adam.

    It runs with one inter-op thread. With TF's default concurrency, about one two-logical-CPU
    run in ten logged a Wasserstein estimate a few % off with the gradient penalty unchanged;
    turning grappler's dependency optimizer off (`make_strategy`) took that to 0 of 120 in a
    harness, but a clean-clone `make test` still hit it once, so the cause is not fully known."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tiny_prepared), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in proc.stdout.splitlines()
             if ln.startswith(("SGD ", "ADAM "))}
    diff, moved, metric_diff = map(float, lines["SGD"].split())
    assert diff < 1e-7 and moved > 1e-5 and metric_diff < 1e-5, lines["SGD"]
    diff, moved = map(float, lines["ADAM"].split())
    assert diff < 1e-5 and moved > 1e-4, lines["ADAM"]


def test_replicated_strategies_turn_off_grappler_dependency_optimizer():
    """The mitigation itself, checked directly: the mirrored test above runs with one inter-op
    thread and so no longer exercises it."""
    code = ("import tensorflow as tf\n"
            "from tf_svdx.train.loop import make_strategy\n"
            "make_strategy('default')\n"
            "print(tf.config.optimizer.get_experimental_options().get('dependency_optimization'))\n"
            "make_strategy('mirrored')\n"
            "print(tf.config.optimizer.get_experimental_options().get('dependency_optimization'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["None", "False"], proc.stdout


def test_frechet_monitor_with_a_trained_detector(tiny_prepared, tmp_path):
    from tf_svdx import config as config_lib
    from tf_svdx.train.detector import train_detector
    det = tmp_path / "detector"
    train_detector(config_lib.load(None, [
        f"train_detector.prepared={tiny_prepared}", f"train_detector.out={det}",
        "detector.width=0.125", "pipeline.batch_size=8", "train_detector.steps=5",
        "train_detector.eval_every=5"]), progress=False)
    proc = _train(tiny_prepared, tmp_path / "gan", 10, f"train_gan.detector={det}",
                  "train_gan.fid_every=5", "train_gan.fid_samples=32",
                  "train_gan.preset=wgan-gp")
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    _, fid = _scalars(tmp_path / "gan" / "tb", "gan/frechet_fc8")
    assert len(fid) == 2 and all(np.isfinite(fid)) and all(f > 0 for f in fid), fid


def test_gan_jax_export_data_is_the_training_population(tiny_prepared, tmp_path):
    """tools/gan_jax.py export-data packs exactly the frames and excerpt centres that
    `svdx train-gan` draws from, within the uint16 quantisation step."""
    from tf_svdx.config import Augment
    from tf_svdx.data.pipeline import ExcerptSource, Prepared
    config = tmp_path / "gan.toml"
    config.write_text(f'[train_gan]\nprepared = "{tiny_prepared}"\n')
    out = subprocess.run([sys.executable, "tools/gan_jax.py", "export-data", f"--config={config}",
                          f"--out={tmp_path}"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    blob = np.load(tmp_path / "gan_train.npz")
    prepared = Prepared(tiny_prepared)
    pad = max(Augment().source_frames, prepared.frontend.excerpt_frames) // 2 + 1
    source = ExcerptSource(prepared.tracks("train"), prepared.frontend, pad, linear=False,
                           labelled_only=False)
    lo, hi = float(blob["lo"]), float(blob["hi"])
    frames = lo + blob["q"].astype(np.float64) * (hi - lo) / 65535
    assert frames.shape == source.log_mel.shape
    assert np.abs(frames - source.log_mel).max() <= (hi - lo) / 65535
    np.testing.assert_array_equal(blob["centres"], source.centres)
    assert str(blob["split"]) == "train"
    assert str(blob["data_fingerprint"]) == prepared.manifest["data_fingerprint"]
