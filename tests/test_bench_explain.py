"""tools/bench_explain.py's FLOP accounting and per-layer profile (the numbers the README's
fraction-of-a-matmul claims rest on); no timing is asserted."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_explain",
                                                  REPO / "tools" / "bench_explain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_match_the_hand_count_at_full_size(bench):
    from tf_svdx.config import Detector, Gan
    from tf_svdx.models import build_detector, build_generator
    gen, det = build_generator(Gan(width=1.0)), build_detector(Detector(width=1.0))
    assert bench.forward_flops(gen) == 70_942_720
    assert bench.forward_flops(det) == 485_232_512
    assert bench.layer_flops(det.get_layer("conv1")) == 2 * 78 * 113 * 9 * 1 * 64
    assert bench.layer_flops(det.get_layer("pool1")) == 0


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_layer_profile_covers_every_layer_of_the_models_the_engine_runs(bench, precision):
    from tf_svdx.config import Detector, Gan
    from tf_svdx.explain.engine import Explainer
    from tf_svdx.models import build_detector, build_generator
    gen, det = build_generator(Gan(width=0.125)), build_detector(Detector(width=0.125))
    ex = Explainer(det, np.zeros(80), np.ones(80), gen, precision=precision)
    profile = bench.layer_profile(ex, rows=2, repeats=1)
    names = [name for name, _, _ in profile]
    assert names[:2] == ["dense", "reshape"] and "conv1" in names and names[-1] == "fc9"
    assert len(names) == len(set(names)) == len(list(bench.leaf_layers(gen))) + len(
        list(bench.leaf_layers(det)))
    assert sum(f for _, _, f in profile) == bench.forward_flops(gen) + bench.forward_flops(det)
    assert all(s > 0 for _, s, _ in profile)
