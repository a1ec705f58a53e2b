"""The grid (chunks, resume), the science's sanity on tiny models, and `svdx explain` end to end."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_explain_engine import amplified_generator

from tf_svdx import config as config_lib
from tf_svdx.data.pipeline import Prepared
from tf_svdx.errors import ConfigError
from tf_svdx.evaluation import TrainedDetector
from tf_svdx.explain import Explainer, frechet_1d, scan_reference
from tf_svdx.explain import grid as grid_lib

REPO = Path(__file__).parents[1]
SMALL = ["explain.learning_rates=0.1,0.01", "explain.lambdas=0.01", "explain.iterations=2,5",
         "explain.seeds=3", "explain.chunk_rows=4", "explain.reference_n=6",
         "explain.reference_hop=25", "explain.show=2"]


@pytest.fixture(scope="module")
def det(tiny_detector_run):
    return TrainedDetector.load(tiny_detector_run)


def test_grid_rows_settings_and_config_checks():
    opts = config_lib.load(None, SMALL).explain
    rows = grid_lib.rows(opts)
    assert len(rows) == 2 * 2 * 1 * 3 and rows[0] == grid_lib.Row("maximise", 0.1, 0.01, 0)
    names = [s.name for s in grid_lib.settings(opts)]
    assert len(names) == 8 and "minimise-lr0.01-lambda0.01-it5" in names
    paper = config_lib.load(REPO / "configs" / "paper.toml").explain
    assert len(grid_lib.settings(paper)) == 54 and len(grid_lib.rows(paper)) == 900
    for bad, match in (("explain.directions=maximise,up", "unknown direction"),
                       ("explain.seeds=1", "at least 2"), ("explain.iterations=5,5", "repeated"),
                       ("explain.learning_rates=0", "> 0"),
                       ("explain.precision=float16", "not float32 or bfloat16")):
        with pytest.raises(ConfigError, match=match):
            grid_lib.check_grid(config_lib.load(None, [bad]).explain)


def test_grid_resumes_chunk_by_chunk(det, tmp_path, monkeypatch):
    opts = config_lib.load(None, SMALL).explain
    ex = Explainer(det.model, det.standardiser.mean, det.standardiser.std, amplified_generator())
    first = grid_lib.run_grid(ex, opts, tmp_path, identity={"m": 1}, base_seed=0, progress=False)
    chunks = sorted((tmp_path / "chunks").glob("*.npz"))
    assert len(chunks) == 3  # 12 rows in chunks of 4
    assert first.arrays["log_mel"].shape == (2, 12, 80, 115)
    assert first.arrays["trajectory_activation"].shape == (6, 12)
    chunks[1].unlink()  # as if killed while the second chunk ran
    calls = []
    real = grid_lib._run_chunk
    monkeypatch.setattr(grid_lib, "_run_chunk", lambda *a: calls.append(1) or real(*a))
    again = grid_lib.run_grid(ex, opts, tmp_path, identity={"m": 1}, base_seed=0, progress=False)
    assert len(calls) == 1
    for key, value in first.arrays.items():
        np.testing.assert_allclose(again.arrays[key], value, atol=1e-6, err_msg=key)
    # another model identity never reuses the chunks
    grid_lib.run_grid(ex, opts, tmp_path, identity={"m": 2}, base_seed=0, progress=False)
    assert len(calls) == 4
    picked = first.select(grid_lib.Setting("minimise", 0.01, 0.01, 2))
    assert picked["log_mel"].shape == (3, 80, 115) and list(picked["seeds"]) == [0, 1, 2]
    assert picked["trajectory_activation"].shape == (3, 3)


def test_extreme_setting_runs_off_and_scores_worse(det, tiny_prepared):
    """SPEC §6's finding in miniature: a moderate setting stays within the real activations'
    range and scores a low FID; a high learning rate without penalty for many steps runs off and
    scores far worse, in both directions."""
    ex = Explainer(det.model, det.standardiser.mean, det.standardiser.std, amplified_generator())
    ref = scan_reference(det, Prepared(tiny_prepared), n=20, hop=10)
    z0 = ex.initial(range(20), base_seed=2)
    for direction, sign in (("maximise", 1.0), ("minimise", -1.0)):
        real, _ = ref.for_direction(direction)
        fids, acts = {}, {}
        for name, (lr, lam, steps) in {"moderate": (0.01, 0.1, 30),
                                       "extreme": (1.0, 0.0, 300)}.items():
            out = ex.run(z0, tf.fill([20], sign), tf.fill([20], lr), tf.fill([20], lam),
                         tf.constant([steps]))
            acts[name] = out["activation"].numpy()[0]
            fids[name] = frechet_1d(acts[name], real)
        assert fids["extreme"] > 10 * fids["moderate"], fids
        outside = (acts["extreme"] > ref.top_target.max()) if sign > 0 else \
            (acts["extreme"] < ref.bottom_target.min())
        assert outside.all(), (acts["extreme"], ref.top_target.max(), ref.bottom_target.min())


def test_explain_job_writes_every_output(tiny_detector_run, tiny_gan_run, tiny_prepared,
                                         tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tf_svdx.explain.job import explain
    out = tmp_path / "explain"
    cfg = config_lib.load(None, SMALL + [f"explain.detector={tiny_detector_run}",
                                         f"explain.generator={tiny_gan_run}",
                                         f"explain.prepared={tiny_prepared}",
                                         f"explain.out={out}"])
    doc = explain(cfg, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["schema"] == 1 and len(saved["settings"]) == 8
    for entry in saved["settings"]:
        assert entry["direction"] in ("maximise", "minimise")
        assert {"lr", "lambda", "iterations", "fid_1d", "fid_layer", "kid_layer",
                "rank"} <= set(entry)
        assert np.isfinite(entry["fid_1d"])
    for direction in ("maximise", "minimise"):
        own = [e for e in saved["settings"] if e["direction"] == direction]
        best = min(own, key=lambda e: e["fid_1d"])
        sel = saved["selected"][direction]
        assert sel["fid_1d"] == best["fid_1d"] and sel["rank"] == 1
        assert saved["worst"][direction]["fid_1d"] == max(e["fid_1d"] for e in own)
        for role in ("selected", "median", "worst"):
            assert (out / saved[role][direction]["png"]).stat().st_size > 1000
            wavs = saved[role][direction]["wav"]
            assert len(wavs) == 2
            for w in wavs:
                audio, rate = tf.audio.decode_wav(tf.io.read_file(str(out / w)))
                assert rate == 22050 and audio.shape[0] > 20000
    with np.load(out / "explanations" / "activations.npz") as acts:
        assert acts["real/all"].shape == (saved["reference"]["scanned"],)
        assert np.isclose(acts["real/top"][0], acts["real/all"].max(), atol=1e-5)
        assert np.isclose(acts["real/bottom"][0], acts["real/all"].min(), atol=1e-5)
        assert acts["minimise/selected/activation"].shape == (3,)
        it = saved["selected"]["minimise"]["iterations"]
        assert acts["minimise/selected/trajectory"].shape == (it + 1, 3)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and float(table[0]["fid_1d"]) == saved["settings"][0]["fid_1d"]
    assert saved["generator"]["weights"] == "generator.weights.h5"
    assert saved["config_fingerprint"] == cfg.fingerprint()
    runs = sorted(p.name for p in (out / "tb" / "hparams").iterdir() if p.is_dir())
    assert len(runs) == 8
    events = EventAccumulator(str(out / "tb" / "hparams" / runs[0]))
    events.Reload()
    assert "fid_1d" in events.Tags()["tensors"]
    events = EventAccumulator(str(out / "tb" / "explanations"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"maximise/selected", "minimise/worst"} <= set(events.Tags()["tensors"])
    # a second run resumes from the chunks and the cached reference and agrees
    again = explain(cfg, progress=False)
    assert [e["fid_1d"] for e in again["settings"]] == [e["fid_1d"] for e in doc["settings"]]


def test_cli_explain_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tf_svdx.cli", "explain", "--noprogress",
                           f"--out={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "svdx: error: explain.detector: required (a run or prepared folder)"


def test_input_space_baseline_is_ranked_by_the_same_scoring(tiny_detector_run, tiny_prepared,
                                                             tmp_path):
    """Montavon's input-space AM through `svdx explain`: no generator needed, same outputs."""
    from tf_svdx.explain.job import explain
    cfg = config_lib.load(None, SMALL + ["explain.space=input", "explain.input_init_scale=0.5",
                                         f"explain.detector={tiny_detector_run}",
                                         f"explain.prepared={tiny_prepared}",
                                         f"explain.out={tmp_path}", "explain.show=1"])
    doc = explain(cfg, progress=False)
    assert doc["space"] == "input" and doc["generator"] is None
    assert len(doc["settings"]) == 8 and set(doc["selected"]) == {"maximise", "minimise"}
    assert all(np.isfinite(e["fid_1d"]) for e in doc["settings"])
    # (the tiny detector's logit moves less than the 0.1 best-keeping margin in 5 steps, so
    # compare where the optimisation ended, not the kept best)
    end = {(e["direction"], e["lr"], e["iterations"]): e["final_activation"]["mean"]
           for e in doc["settings"]}
    for lr in (0.1, 0.01):
        assert end["maximise", lr, 5] > end["maximise", lr, 2] > end["minimise", lr, 2] > \
            end["minimise", lr, 5]
