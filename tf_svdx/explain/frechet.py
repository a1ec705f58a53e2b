"""Distances between two sets of activations, used to judge explanations (SPEC §6).

Fréchet distance between Gaussians fitted to the sets (Heusel et al. 2017):
FD = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), in float64 with unbiased covariances. The cross term
uses only symmetric square roots, Tr((Σ1Σ2)^½) = Tr((A Σ2 A)^½) with A = Σ1^½, each by an
eigendecomposition with negative round-off eigenvalues clipped to 0, so no complex numbers can
arise and singular covariances (a dead or constant unit) still give a finite, correct value.
For d = 1 this is (μ1 − μ2)² + (σ1 − σ2)², the paper's 1-D distance (`frechet_1d`).

With N ≤ d samples a covariance is singular by construction, and the full distance is
meaningless: `frechet_distance` refuses, `frechet_report` falls back to the per-unit (diagonal)
distance and flags it, and `kernel_inception_distance` (Bińkowski et al. 2018) is the unbiased
small-sample alternative.
"""

from __future__ import annotations

import numpy as np


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _check_finite(a: np.ndarray, b: np.ndarray) -> None:
    """NaN/Inf would silently propagate through eigh into a NaN distance (or raise deep inside
    LAPACK); say plainly which side is broken instead."""
    bad = [f"{name} has {int(np.size(x) - np.count_nonzero(np.isfinite(x)))} non-finite values"
           for name, x in (("a", a), ("b", b)) if not np.all(np.isfinite(x))]
    if bad:
        raise ValueError(f"activations contain NaN/Inf: {', '.join(bad)}")


def _as_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as float64 [N, d] / [M, d] (a 1-D array is d = 1), validated once for every
    distance here so they all refuse the same bad inputs with the same messages."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [N, d] and [M, d] activations, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("need at least two samples on each side")
    _check_finite(a, b)
    return a, b


def _diagonal(a: np.ndarray, b: np.ndarray) -> float:
    """Σ over units of the 1-D distance: the Fréchet distance if the units were independent."""
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    return float(mean_term + np.sum((a.std(0, ddof=1) - b.std(0, ddof=1)) ** 2))


def _full(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    ca = np.cov(a, rowvar=False, ddof=1).reshape(d, d)
    cb = np.cov(b, rowvar=False, ddof=1).reshape(d, d)
    root_a = _sqrtm_psd(ca)
    cross = np.trace(_sqrtm_psd(root_a @ cb @ root_a))
    return max(mean_term + float(np.trace(ca) + np.trace(cb) - 2 * cross), 0.0)


def frechet_distance(a, b, *, diagonal_fallback: bool = False) -> float:
    """Fréchet distance between activations a [N, d] and b [M, d] (a 1-D array means d = 1).

    Covariances of d dimensions need more than d samples: with N ≤ d (or M ≤ d) this raises
    ValueError, unless `diagonal_fallback`, which then uses only the per-unit variances (and says
    so by returning a value the caller must flag; `frechet_report` does the flagging).
    NaN or Inf anywhere raises ValueError."""
    a, b = _as_pair(a, b)
    d = a.shape[1]
    if min(len(a), len(b)) <= d:
        if not diagonal_fallback:
            raise ValueError(f"{min(len(a), len(b))} samples for {d} dimensions: the covariance "
                             f"is singular; use more samples, a smaller layer, or "
                             f"diagonal_fallback=True (flagged)")
        return _diagonal(a, b)
    return _full(a, b)


def frechet_report(a, b) -> dict:
    """The Fréchet distance with what it is based on, for reports and selection tables:
    {"value", "diagonal_only", "n" (fewer samples of the two sides), "d"}.

    Uses the full distance when n > d, otherwise the diagonal fallback with diagonal_only True,
    so a caller never has to guess whether a value is comparable to the full one."""
    a, b = _as_pair(a, b)
    n, d = min(len(a), len(b)), a.shape[1]
    diagonal = n <= d
    value = _diagonal(a, b) if diagonal else _full(a, b)
    return {"value": value, "diagonal_only": diagonal, "n": n, "d": d}


def frechet_1d(a, b) -> float:
    """The paper's 1-D distance (μ1 − μ2)² + (σ1 − σ2)², unbiased (ddof=1) standard deviations.

    The closed form of `frechet_distance` for one unit (e.g. the fc9 logit), written out so the
    selection criterion of SPEC §6 can be read and checked at a glance. Accepts [N] or [N, 1]."""
    a, b = _as_pair(a, b)
    if a.shape[1] != 1:
        raise ValueError(f"frechet_1d needs 1-D activations, got {a.shape[1]} dimensions")
    a, b = a[:, 0], b[:, 0]
    return float((a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2)


def _kernel_sum(x: np.ndarray, y: np.ndarray, gamma: float, coef0: float, degree: int,
                block: int = 2048) -> float:
    """Σ_ij (γ x_i·y_j + c0)^degree over row blocks, so memory stays O(block · M), not O(N · M)."""
    total = 0.0
    for start in range(0, len(x), block):
        total += float(np.sum((gamma * (x[start:start + block] @ y.T) + coef0) ** degree))
    return total


def kernel_inception_distance(a, b, *, degree: int = 3, gamma: float | None = None,
                              coef0: float = 1) -> float:
    """Unbiased MMD² between a [N, d] and b [M, d] with the polynomial kernel
    k(x, y) = (γ x·y + c0)^degree, γ = 1/d by default (KID, Bińkowski et al. 2018).

    Unlike the Fréchet distance it has no bias that depends on the sample size and needs no
    covariance, so it stays usable when N ≤ d. Unbiased means it can be slightly negative for
    two samples of the same distribution. float64; same input validation as `frechet_distance`.
    """
    a, b = _as_pair(a, b)
    if degree < 1 or int(degree) != degree:
        raise ValueError(f"degree must be a positive integer, got {degree}")
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)
    m, n = len(a), len(b)

    def within(x: np.ndarray) -> float:
        """Mean of k(x_i, x_j) over i ≠ j: the full sum minus the diagonal."""
        diag = float(np.sum((gamma * np.einsum("ij,ij->i", x, x) + coef0) ** degree))
        return (_kernel_sum(x, x, gamma, coef0, degree) - diag) / (len(x) * (len(x) - 1))

    cross = _kernel_sum(a, b, gamma, coef0, degree) / (m * n)
    return float(within(a) + within(b) - 2 * cross)
