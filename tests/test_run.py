"""`svdx run` end to end on the tiny config (what CI runs), then again: every stage skipped."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def _tiny_config(tmp: Path) -> Path:
    """configs/tiny.toml with every output under tmp."""
    text = (REPO / "configs" / "tiny.toml").read_text()
    text = text.replace('"work/tiny/', f'"{tmp}/').replace(
        '"tests/data/tiny_corpus"', f'"{REPO / "tests" / "data" / "tiny_corpus"}"')
    path = tmp / "tiny.toml"
    path.write_text(text)
    return path


def _run(config: Path, *args):
    proc = subprocess.run([sys.executable, "-m", "tf_svdx.cli", "run", f"--config={config}",
                           "--noprogress", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {line.split()[0]: line for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("corpus", "prepare", "detector", "gan",
                                                     "explain", "export", "report")}


def test_tiny_pipeline_runs_end_to_end_then_skips_everything(tmp_path):
    config = _tiny_config(tmp_path)
    first = _run(config, "--from_scratch")
    assert list(first) == ["corpus", "prepare", "detector", "gan", "explain", "export",
                           "report"]
    assert "trained" in first["detector"] and "trained" in first["gan"]
    assert "explained" in first["explain"] and "svd_fid v1" in first["export"]
    index = tmp_path / "report" / "index.html"
    assert index.exists() and "selected" in index.read_text()
    for name in ("svd_detector", "svd_generator", "svd_explainer", "svd_fid"):
        assert (tmp_path / "saved_models" / name / "1" / "saved_model.pb").exists()
    again = _run(config, "--from_scratch")
    for stage in ("detector", "gan", "explain", "export"):
        assert "up to date" in again[stage], again[stage]
    assert not (tmp_path / "saved_models" / "svd_detector" / "2").exists()
    # one stage alone, and a changed explain setting redoes explain and export only
    alone = _run(config, "--from_scratch", "--stages=explain,export",
                 "--config.explain.seeds=4")
    assert list(alone) == ["explain", "export"]
    assert "explained" in alone["explain"] and "svd_detector v2" in alone["export"]
    # test-time pitch-shift averaging from the config: the detector is re-evaluated, not retrained
    shifted = _run(config, "--from_scratch", "--stages=detector",
                   "--config.evaluate.pitch_shifts=0,-0.1,0.1")
    assert "up to date" in shifted["detector"]
    evaluation = json.loads((tmp_path / "detector" / "evaluation.json").read_text())
    assert evaluation["pitch_shifts"] == [0.0, -0.1, 0.1]


def test_shipped_runs_are_checked_against_the_data(tmp_path):
    config = _tiny_config(tmp_path)
    _run(config, "--stages=prepare")
    proc = subprocess.run([sys.executable, "-m", "tf_svdx.cli", "run", f"--config={config}",
                           "--noprogress", "--stages=detector",
                           f"--config.run.detector={tmp_path / 'nothing'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("svdx: error: ")
    assert "not a shipped detector run folder" in proc.stderr
