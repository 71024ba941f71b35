"""The drift statistics, pure numpy: PSI, a Kolmogorov-Smirnov statistic against a profile's
quantile grid, and the Jensen-Shannon distance.

Bins are right-closed: with internal edges ``e_1 < … < e_{B-1}``, bin ``k`` holds the
values in ``(e_k, e_{k+1}]`` and the outer bins reach to ±infinity, so every value has a
bin and the profile and the live window count ties the same way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Proportions are floored at this before PSI's log ratio: an empty bin would otherwise make
#: PSI infinite. A decile bin that empties completely then adds 0.1·ln(0.1/1e-4) ≈ 0.69,
#: far over any bound, and the floor moves a populated bin's term by under 1e-4.
PSI_EPSILON = 1e-4


def bin_index(edges: FloatArray, values: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
    """The bin of each value: the number of edges strictly below it (right-closed bins)."""
    return np.searchsorted(edges, values, side="left")


def bin_counts(edges: FloatArray, values: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """How many values fall in each of the ``len(edges) + 1`` bins."""
    return np.bincount(bin_index(edges, values), minlength=len(edges) + 1).astype(np.int64)


def psi(reference: npt.ArrayLike, actual: npt.ArrayLike, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index ``Σ (a - r)·ln(a / r)`` of two distributions over the same
    bins (counts or proportions; each is normalised). Symmetric, 0 for identical ones."""
    ref = _normalise(reference)
    act = _normalise(actual)
    if ref.shape != act.shape:
        raise ValueError(f"psi: {ref.shape[0]} reference bins against {act.shape[0]} actual")
    ref = np.maximum(ref, epsilon)
    act = np.maximum(act, epsilon)
    return float(np.sum((act - ref) * np.log(act / ref)))


def ks_from_cdf(points: FloatArray, reference_cdf: FloatArray, window: FloatArray) -> float:
    """Kolmogorov-Smirnov statistic of a live sample against a profile that keeps only its
    empirical CDF at quantile ``points``.

    Both CDFs are compared at those points only, where the reference is known exactly, so the
    result is a lower bound of the two-sample statistic against the full training data; it
    falls short by at most the largest probability mass (reference or live) between two
    neighbouring points, about ``1/Q`` for ``Q`` quantiles of a continuous feature.
    """
    if window.size == 0:
        raise ValueError("ks_from_cdf: the window is empty")
    ordered = np.sort(window)
    live = np.searchsorted(ordered, points, side="right") / ordered.size
    return float(np.max(np.abs(live - reference_cdf)))


def js_distance(reference: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 for identical
    distributions, 1 for disjoint ones. Inputs are counts or proportions."""
    p = _normalise(reference)
    q = _normalise(actual)
    if p.shape != q.shape:
        raise ValueError(f"js_distance: {p.shape[0]} reference categories against {q.shape[0]}")
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _kl(p: FloatArray, m: FloatArray) -> float:
    mask = p > 0  # 0·log 0 = 0; m > 0 wherever p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))


def _normalise(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("a distribution must be a non-empty 1-D array")
    if np.any(array < 0) or not np.all(np.isfinite(array)):
        raise ValueError("a distribution must be finite and non-negative")
    total = array.sum()
    if total <= 0:
        raise ValueError("a distribution must not be all zeros")
    normalised: FloatArray = array / total
    return normalised
