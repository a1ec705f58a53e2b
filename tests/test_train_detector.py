"""The detector's custom training loop: outputs, TensorBoard, SIGKILL-safe resume, mirroring."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from h5weights import h5_weights

REPO = Path(__file__).parents[1]
TINY = ["detector.width=0.125", "pipeline.batch_size=8", "train_detector.eval_every=10",
        "train_detector.checkpoint_every=5", "train_detector.image_every=10"]


def _svdx(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tf_svdx.cli", *args, "--noprogress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def _train(prepared, out, steps, *extra, **kw):
    return _svdx("train-detector", f"--prepared={prepared}", f"--out={out}",
                 *[f"--config.{o}" for o in TINY + [f"train_detector.steps={steps}", *extra]],
                 **kw)


_weights = h5_weights


def test_short_run_writes_everything(tiny_prepared, tmp_path):
    proc = _train(tiny_prepared, tmp_path / "run", 20)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "trained 20 steps" in stdout and "best valid error" in stdout
    run = tmp_path / "run"
    for name in ("best.weights.h5", "final.weights.h5", "summary.json", "run.json", "best.json"):
        assert (run / name).exists(), name
    record = json.loads((run / "run.json").read_text())
    manifest = json.loads((Path(tiny_prepared) / "manifest.json").read_text())
    assert record["data_fingerprint"] == manifest["data_fingerprint"]
    assert record["config"]["detector"]["width"] == 0.125
    best = json.loads((run / "best.json").read_text())
    assert best["step"] in (10, 20) and 0 <= best["valid_error"] <= 1

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"train/loss", "train/learning_rate", "valid/error", "valid/excerpts"} <= tags
    losses = [float(np.asarray(e.tensor_proto.float_val or [0])[0])
              for e in events.Tensors("train/loss")]
    assert all(np.isfinite(losses))


@pytest.mark.slow
def test_sigkill_resume_matches_uninterrupted_run(tiny_prepared, tmp_path):
    steps = 30
    ref = _train(tiny_prepared, tmp_path / "ref", steps)
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err

    proc = _train(tiny_prepared, tmp_path / "killed", steps)
    ckpt = tmp_path / "killed" / "ckpt"
    deadline = time.time() + 300
    while time.time() < deadline:
        state = ckpt / "checkpoint"
        if state.exists() and "ckpt-10" in state.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final.weights.h5").exists()
    resumed = _train(tiny_prepared, tmp_path / "killed", steps)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a, b = _weights(tmp_path / "ref/final.weights.h5"), _weights(tmp_path / "killed/final.weights.h5")
    assert [n for n, _ in a] == [n for n, _ in b] and len(a) >= 9
    for (name, u), (_, v) in zip(a, b):
        np.testing.assert_array_equal(u, v, err_msg=name)


def test_refuses_to_resume_another_config(tiny_prepared, tmp_path):
    proc = _train(tiny_prepared, tmp_path / "run", 5)
    assert proc.wait(timeout=600) == 0
    proc = _train(tiny_prepared, tmp_path / "run", 5, "train_detector.momentum=0.5")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "holds a run of another config" in err


MIRRORED = """
import sys, numpy as np
from tf_svdx import config as config_lib
from tf_svdx.train.detector import train_detector
from tf_svdx.train.loop import make_strategy
make_strategy("default", logical_cpus=2)
prepared, out = sys.argv[1], sys.argv[2]
base = ["detector.width=0.125", "detector.dropout=0", "pipeline.batch_size=8",
        "train_detector.steps=6", "train_detector.eval_every=100", "train_detector.image_every=100",
        f"train_detector.prepared={prepared}"]
import keras
weights = {}
for strategy in ("default", "mirrored"):
    cfg = config_lib.load(None, base + [f"train_detector.strategy={strategy}",
                                        f"train_detector.out={out}/{strategy}"])
    train_detector(cfg, progress=False)
    from tf_svdx.models import build_detector
    m = build_detector(cfg.detector)
    m.load_weights(f"{out}/{strategy}/final.weights.h5")
    weights[strategy] = m.get_weights()
diff = max(float(np.abs(a - b).max()) for a, b in zip(weights["default"], weights["mirrored"]))
moved = max(float(np.abs(a).max()) for a in weights["default"])
print("MAXDIFF", diff, moved)
"""


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tiny_prepared, tmp_path):
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tiny_prepared), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MAXDIFF")][0]
    diff, moved = map(float, line.split()[1:])
    assert diff < 1e-4 and moved > 0, line


@pytest.mark.slow
def test_short_training_run_is_well_above_chance(tiny_prepared, tmp_path):
    """150 updates of a quarter-width detector on the built-in corpus already separate sung from
    unsung frames on the held-out tracks (chance: AUROC 0.5)."""
    from tf_svdx import config as config_lib
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector, evaluate
    from tf_svdx.train.detector import train_detector
    cfg = config_lib.load(None, [f"train_detector.prepared={tiny_prepared}",
                                 f"train_detector.out={tmp_path}", "detector.width=0.25",
                                 "pipeline.batch_size=16", "train_detector.steps=150",
                                 "train_detector.eval_every=50", "train_detector.lr_decay_every=50"])
    train_detector(cfg, progress=False)
    result = evaluate(TrainedDetector.load(tmp_path), Prepared(tiny_prepared))
    print(result["valid"], result["test"])
    assert result["valid"]["auroc"] > 0.8 and result["test"]["auroc"] > 0.75


def _free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_strategy_two_local_workers_match_one_device(tiny_prepared, tmp_path):
    """Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy from TF_CONFIG) train the
    same model as one device; only the chief writes the run folder."""
    import os
    common = ["detector.dropout=0", "train_detector.steps=6", "train_detector.eval_every=100",
              "train_detector.checkpoint_every=3"]
    ref = _train(tiny_prepared, tmp_path / "one", 6, *common)
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}))
        procs.append(_train(tiny_prepared, tmp_path / "mw", 6, *common,
                            "train_detector.strategy=multiworker", env=env))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    one, two = _weights(tmp_path / "one/final.weights.h5"), _weights(tmp_path / "mw/final.weights.h5")
    for (name, u), (_, v) in zip(one, two):
        np.testing.assert_allclose(u, v, atol=1e-4, err_msg=name)
    assert sorted(p.name for p in (tmp_path / "mw" / "ckpt").glob("ckpt-*.index")) == \
        ["ckpt-3.index", "ckpt-6.index"]
