"""Fréchet distance between Gaussians fitted to two sets of activations (SPEC §6, Heusel et al.).

FD = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), in float64 with unbiased covariances. The cross term
uses only symmetric square roots, Tr((Σ1Σ2)^½) = Tr((A Σ2 A)^½) with A = Σ1^½, each by an
eigendecomposition with negative round-off eigenvalues clipped to 0, so no complex numbers can
arise. For d = 1 this is (μ1 − μ2)² + (σ1 − σ2)², the paper's 1-D distance.
"""

from __future__ import annotations

import numpy as np


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a, b, *, diagonal_fallback: bool = False) -> float:
    """Fréchet distance between activations a [N, d] and b [M, d] (a 1-D array means d = 1).

    Covariances of d dimensions need more than d samples: with N ≤ d (or M ≤ d) this raises
    ValueError, unless `diagonal_fallback`, which then uses only the per-unit variances (and says
    so by returning a value the caller must flag; see `frechet_distance_report`)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [N, d] and [M, d] activations, got {a.shape} and {b.shape}")
    d = a.shape[1]
    if min(len(a), len(b)) < 2:
        raise ValueError("need at least two samples on each side")
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    if min(len(a), len(b)) <= d:
        if not diagonal_fallback:
            raise ValueError(f"{min(len(a), len(b))} samples for {d} dimensions: the covariance "
                             f"is singular; use more samples, a smaller layer, or "
                             f"diagonal_fallback=True (flagged)")
        sa, sb = a.std(0, ddof=1), b.std(0, ddof=1)
        return mean_term + float(np.sum((sa - sb) ** 2))
    ca, cb = np.cov(a, rowvar=False, ddof=1).reshape(d, d), np.cov(b, rowvar=False,
                                                                 ddof=1).reshape(d, d)
    root_a = _sqrtm_psd(ca)
    cross = np.trace(_sqrtm_psd(root_a @ cb @ root_a))
    return max(mean_term + float(np.trace(ca) + np.trace(cb) - 2 * cross), 0.0)
