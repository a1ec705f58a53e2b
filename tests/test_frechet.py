"""Fréchet distance: against a SciPy reference (N > d) and by properties (TF-GAN style)."""

import numpy as np
import pytest
import scipy.linalg

from tf_svdx.explain import frechet_distance


def scipy_reference(a, b):
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb)
    return float(np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * np.real(root)))


def test_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(0.5, 1.3, size=(300, 16))
    assert frechet_distance(a, b) == pytest.approx(scipy_reference(a, b), rel=1e-6)


def test_properties():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.arange(8.0)
    assert frechet_distance(a, a + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-9)
    x, y = rng.normal(2, 3, 1000), rng.normal(-1, 0.5, 800)  # 1-D: (μ1−μ2)² + (σ1−σ2)²
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)
    assert isinstance(frechet_distance(x, y), float)


def test_too_few_samples_refuses_or_falls_back():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(50, 64))
    with pytest.raises(ValueError, match="10 samples for 64 dimensions"):
        frechet_distance(a, b)
    assert frechet_distance(a, b, diagonal_fallback=True) > 0
