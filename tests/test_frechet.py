"""Fréchet distance and KID: against SciPy / naive references (N > d) and by properties."""

import numpy as np
import pytest
import scipy.linalg

from tf_svdx.explain.frechet import (frechet_1d, frechet_distance, frechet_report,
                                     kernel_inception_distance)


def scipy_reference(a, b):
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb)
    return float(np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * np.real(root)))


def naive_kid(a, b, degree=3, gamma=None, coef0=1.0):
    """Unbiased MMD² written as the double loops of its definition."""
    gamma = 1.0 / a.shape[1] if gamma is None else gamma

    def k(x, y):
        return (gamma * sum(xi * yi for xi, yi in zip(x, y)) + coef0) ** degree
    m, n = len(a), len(b)
    kxx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(0.5, 1.3, size=(300, 16))
    assert frechet_distance(a, b) == pytest.approx(scipy_reference(a, b), rel=1e-6)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_matches_scipy_reference_on_correlated_data(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 12))
    a = rng.normal(size=(200, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    b = rng.normal(size=(150, d)) @ rng.normal(size=(d, d))
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


def test_equal_covariances_leave_the_mean_term():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    b = a - a.mean(0) + np.array([1.0, -2.0, 0.5, 0.0, 3.0])  # same Σ, chosen μ
    expected = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_1d_closed_form():
    rng = np.random.default_rng(7)
    x, y = rng.normal(4, 2, 50), rng.normal(6, 0.7, 60)
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_1d(x, y) == pytest.approx(expected, rel=1e-12)
    assert frechet_1d(x, y) == pytest.approx(frechet_distance(x[:, None], y[:, None]), rel=1e-9)
    assert frechet_1d(x[:, None], y) == frechet_1d(x, y)
    assert isinstance(frechet_1d(x, y), float)
    with pytest.raises(ValueError, match="1-D"):
        frechet_1d(np.ones((5, 2)), np.ones((5, 2)))


def test_rises_monotonically_with_covariance_scale():
    rng = np.random.default_rng(8)
    mix = rng.normal(size=(6, 6))
    a = rng.normal(size=(400, 6)) @ mix
    x = rng.normal(size=(400, 6)) @ mix
    x -= x.mean(0)
    values = [frechet_distance(a, s * x) for s in (1.0, 1.5, 2.0, 3.0, 5.0)]
    assert all(lo < hi for lo, hi in zip(values, values[1:])), values


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_refused(bad):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    a[[1, 4, 7], [0, 1, 2]] = bad
    for fn in (frechet_distance, frechet_report, kernel_inception_distance):
        with pytest.raises(ValueError, match="NaN/Inf: a has 3 non-finite values"):
            fn(a, b)
    with pytest.raises(ValueError, match="b has 3 non-finite"):
        frechet_distance(b, a)
    with pytest.raises(ValueError, match="NaN/Inf"):
        frechet_1d(a[:, 0], b[:, 0])


def test_too_few_samples_refuses_or_falls_back():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(50, 64))
    with pytest.raises(ValueError, match="10 samples for 64 dimensions"):
        frechet_distance(a, b)
    assert frechet_distance(a, b, diagonal_fallback=True) > 0
    report = frechet_report(a, b)
    assert report == {"value": frechet_distance(a, b, diagonal_fallback=True),
                      "diagonal_only": True, "n": 10, "d": 64}
    with pytest.raises(ValueError, match="64 samples for 64"):
        frechet_distance(rng.normal(size=(64, 64)), rng.normal(size=(65, 64)))


def test_report_uses_the_full_distance_when_it_can():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(40, 8)), rng.normal(1, 2, size=(30, 8))
    report = frechet_report(a, b)
    assert report == {"value": frechet_distance(a, b), "diagonal_only": False, "n": 30, "d": 8}
    assert isinstance(report["value"], float)


def test_constant_unit_gives_finite_correct_value():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(0.3, 1.5, size=(150, 5)) @ rng.normal(size=(5, 5))
    a[:, 2] = 0.75  # a dead unit: Σ1 is singular
    value = frechet_distance(a, b)
    assert np.isfinite(value)
    rest = [0, 1, 3, 4]
    # its row/column of Σ1 is zero, so it decouples: (c − μ_b)² + (0 − σ_b)² for that unit
    expected = frechet_distance(a[:, rest], b[:, rest]) + frechet_1d(a[:, 2], b[:, 2])
    assert value == pytest.approx(expected, rel=1e-7)
    both = frechet_distance(a, np.where(np.arange(5) == 2, -1.0, b))  # constant on both sides
    assert both == pytest.approx(frechet_distance(a[:, rest], b[:, rest]) + 1.75 ** 2, rel=1e-7)


def test_kid_same_distribution_near_zero_shift_larger():
    rng = np.random.default_rng(12)
    mix = rng.normal(size=(8, 8)) / 3
    a = rng.normal(size=(300, 8)) @ mix
    b = rng.normal(size=(300, 8)) @ mix
    same = kernel_inception_distance(a, b)
    shifted = kernel_inception_distance(a, b + 1.0)
    assert abs(same) < 0.01 * shifted and abs(same) < 0.05
    assert kernel_inception_distance(a, b + 2.0) > shifted > 0
    assert isinstance(same, float)


def test_kid_matches_naive_double_loop():
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(12, 4)), rng.normal(0.5, 1.2, size=(9, 4))
    assert kernel_inception_distance(a, b) == pytest.approx(naive_kid(a, b), rel=1e-10, abs=1e-10)
    assert kernel_inception_distance(a, b, degree=2, gamma=0.3, coef0=0.5) == pytest.approx(
        naive_kid(a, b, 2, 0.3, 0.5), rel=1e-10, abs=1e-10)
    x, y = rng.normal(size=7), rng.normal(1, 1, size=8)  # d = 1, and N ≤ d is no problem
    assert kernel_inception_distance(x, y) == pytest.approx(
        naive_kid(x[:, None], y[:, None]), rel=1e-10, abs=1e-10)
    wide_a, wide_b = rng.normal(size=(5, 20)), rng.normal(size=(6, 20))
    assert kernel_inception_distance(wide_a, wide_b) == pytest.approx(
        naive_kid(wide_a, wide_b), rel=1e-10, abs=1e-10)


def test_kid_blocks_do_not_change_the_value(monkeypatch):
    import tf_svdx.explain.frechet as frechet
    rng = np.random.default_rng(14)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    whole = kernel_inception_distance(a, b)
    original = frechet._kernel_sum
    monkeypatch.setattr(frechet, "_kernel_sum",
                        lambda x, y, g, c, d: original(x, y, g, c, d, block=7))
    assert kernel_inception_distance(a, b) == pytest.approx(whole, rel=1e-12, abs=1e-14)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"need \[N, d\]"):
        frechet_distance(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="two samples"):
        kernel_inception_distance(np.ones((1, 2)), np.ones((5, 2)))
