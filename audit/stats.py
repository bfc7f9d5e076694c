"""Per-group statistics with honest uncertainty, in the spirit of Fairlearn's ``MetricFrame``.

The statistics themselves come from well-kept libraries: ``scipy.stats.bootstrap`` (percentile method, seeded),
``scipy.stats.binomtest(...).proportion_ci(method="wilson")``, ``scipy.stats.permutation_test``,
``scipy.stats.fisher_exact`` / ``ttest_ind`` and statsmodels' ``multipletests`` (Holm, Bonferroni).

- Means and medians get seeded **percentile**-bootstrap confidence intervals (not scipy's default BCa: the
  percentile interval is what the reports have always used, and it is defined for any sample size).
- Rates (failure at the match threshold, rank-1 re-identification) get **Wilson** intervals: a bootstrap
  interval collapses to zero width at 0 % or 100 %, which small groups hit often.
- Every group is compared with a reference group (default: the largest) by ratio and difference.
- A difference is only called significant after a Holm (or Bonferroni) correction over all the comparisons
  in a report; groups under a minimum size are flagged, never hidden.
- The match threshold is calibrated on the impostor distribution (distances between clean images of
  *different* faces) at a fixed false-match rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["GroupStats", "Threshold", "adjust_pvalues", "bootstrap_ci", "calibrate_threshold", "group_metrics",
           "impostor_distances", "permutation_pvalue", "proportion_pvalue", "wilson_interval"]

_BOOT_CHUNK = 4_000_000  # resampled values held in memory at once (scipy's ``batch``)


def bootstrap_ci(values: Sequence[float], stat: str = "mean", n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean or median (``scipy.stats.bootstrap``).

    The resamples are drawn from ``np.random.default_rng(seed)``: same seed, same interval.

    Args:
        values: the sample (NaNs are dropped).
        stat: ``"mean"`` or ``"median"``.
        n_boot: bootstrap resamples.
        seed: seed of the resampling generator (same seed, same interval).
        level: coverage, e.g. 0.95.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for an empty sample.
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:  # scipy needs two observations; every resample of one value is that value
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean if stat == "mean" else np.median, n_resamples=n_boot,
                          batch=max(1, _BOOT_CHUNK // x.size), vectorized=True, confidence_level=level,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (nonzero width even at 0 % and 100 %).

    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``n == 0``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def proportion_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test that two proportions are equal (exact, fine for small groups)."""
    if min(n1, n2) == 0:
        return float("nan")
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def permutation_pvalue(a: Sequence[float], b: Sequence[float], n_perm: int = 10_000, seed: int = 0,
                       max_exact_n: int = 5_000) -> float:
    """Two-sided test of equal means: permutation test, or Welch's t-test for large samples.

    ``scipy.stats.permutation_test`` on the statistic ``|mean(a) - mean(b)|`` (one-sided ``"greater"`` on the
    absolute difference is the two-sided test), ``n_perm`` random splits drawn from
    ``np.random.default_rng(seed)``. When every split of the pooled values can be enumerated within ``n_perm``
    (tiny groups), scipy computes the exact p-value instead.

    The Monte-Carlo p-value is ``(count + 1) / (n_perm + 1)``, never exactly 0, so ``n_perm`` bounds the
    smallest p-value: with Holm over ``m`` comparisons it must exceed ``m / alpha`` for anything to be able
    to reach significance (the default 10 000 allows ~500 comparisons at 0.05). Above ``max_exact_n`` pooled
    values Welch's t-test is used (the central limit theorem holds and permuting would be slow).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    if a.size + b.size > max_exact_n:
        if a.size < 2 or b.size < 2:
            return float("nan")
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    if min(a.size, b.size) == 1:
        return _single_value_pvalue(a, b)
    res = stats.permutation_test((a, b), _abs_mean_difference, permutation_type="independent", vectorized=True,
                                 n_resamples=n_perm, batch=max(1, _BOOT_CHUNK // (a.size + b.size)),
                                 alternative="greater", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def _abs_mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(a.mean(axis=axis) - b.mean(axis=axis))


def _single_value_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Exact permutation p-value when one sample has a single value (``scipy.stats.permutation_test`` needs two).

    The split is then just which pooled value stands alone: all ``n`` of them are enumerated, as scipy does
    itself whenever the splits number at most ``n_resamples`` (here ``n <= max_exact_n`` always holds).
    """
    one, rest = (a, b) if a.size == 1 else (b, a)
    pooled = np.concatenate([one, rest])
    alone = np.abs(pooled - (pooled.sum() - pooled) / (pooled.size - 1))
    observed = abs(float(one[0]) - float(rest.mean()))
    return float(np.mean(alone >= observed - abs(observed) * 100 * np.finfo(float).eps))


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Family-wise error control: Holm step-down or Bonferroni adjusted p-values (NaNs pass through).

    statsmodels' ``multipletests`` over the non-NaN p-values.
    """
    if method not in ("holm", "bonferroni"):
        raise ValueError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return out
    out[valid] = multipletests(p[valid], method=method)[1]
    return out


@dataclass(frozen=True)
class GroupStats:
    """Statistics of one group (see :func:`group_metrics`)."""

    group: str
    n: int
    n_valid: int
    mean: float
    mean_lo: float
    mean_hi: float
    median: float
    median_lo: float
    median_hi: float
    failures: int
    fail_rate: float
    fail_lo: float
    fail_hi: float
    small: bool
    is_reference: bool
    mean_ratio: float
    mean_diff: float
    fail_ratio: float
    fail_diff: float
    p_mean: float
    p_fail: float


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b not in (0, 0.0) and not np.isnan(b) else float("nan")


def group_metrics(values: Sequence[float], failures: Sequence[bool], groups: Sequence[str], *,
                  reference: str | None = None, min_n: int = 30, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95, n_perm: int = 10_000) -> list[GroupStats]:
    """MetricFrame-style per-group summary of one metric and one failure indicator.

    Args:
        values: per-item metric (e.g. similarity restored→clean); NaN where it could not be measured.
        failures: per-item failure flag (e.g. no match at the threshold, or no face found).
        groups: per-item group name.
        reference: group to compare against; default the largest group (ties: alphabetical first).
        min_n: groups with fewer items are flagged ``small``.
        n_boot: bootstrap resamples for the mean/median intervals.
        seed: seed for bootstrap and permutation tests.
        level: confidence level.
        n_perm: permutations for the mean test (see :func:`permutation_pvalue`).

    Returns:
        One :class:`GroupStats` per group, sorted by name. ``p_mean`` / ``p_fail`` are *unadjusted*
        p-values against the reference (NaN for the reference itself); adjust them with
        :func:`adjust_pvalues` over the whole report before calling anything significant.
    """
    v = np.asarray(values, dtype=float)
    f = np.asarray(failures, dtype=bool)
    g = np.asarray([str(x) for x in groups])
    if not (v.shape == f.shape == g.shape):
        raise ValueError(f"values, failures and groups must have equal length, got {v.size}, {f.size}, {g.size}")
    names, counts = np.unique(g, return_counts=True)
    if names.size == 0:
        return []
    if reference is None:
        reference = str(names[np.lexsort((names, -counts))[0]])
    elif reference not in names:
        raise ValueError(f"reference group {reference!r} is not among the groups {names.tolist()}")
    ref_mask = g == reference
    ref_v, ref_f = v[ref_mask], f[ref_mask]
    ref_mean = float(np.nanmean(ref_v)) if (~np.isnan(ref_v)).any() else float("nan")
    ref_rate = float(ref_f.mean())
    out = []
    for i, name in enumerate(names):
        mask = g == name
        x, fx = v[mask], f[mask]
        valid = x[~np.isnan(x)]
        mean = float(valid.mean()) if valid.size else float("nan")
        median = float(np.median(valid)) if valid.size else float("nan")
        mlo, mhi = bootstrap_ci(valid, "mean", n_boot, seed + i, level)
        dlo, dhi = bootstrap_ci(valid, "median", n_boot, seed + i, level)
        k, n = int(fx.sum()), int(mask.sum())
        flo, fhi = wilson_interval(k, n, level)
        rate = k / n
        is_ref = name == reference
        out.append(GroupStats(
            group=str(name), n=n, n_valid=int(valid.size), mean=mean, mean_lo=mlo, mean_hi=mhi, median=median,
            median_lo=dlo, median_hi=dhi, failures=k, fail_rate=rate, fail_lo=flo, fail_hi=fhi, small=n < min_n,
            is_reference=bool(is_ref), mean_ratio=_ratio(mean, ref_mean), mean_diff=mean - ref_mean,
            fail_ratio=_ratio(rate, ref_rate), fail_diff=rate - ref_rate,
            p_mean=float("nan") if is_ref else permutation_pvalue(valid, ref_v, n_perm, seed + i),
            p_fail=float("nan") if is_ref else proportion_pvalue(k, n, int(ref_f.sum()), int(ref_f.size)),
        ))
    return out


def impostor_distances(embeddings: np.ndarray, max_pairs: int = 2_000_000, seed: int = 0,
                       identities: Sequence[str] | None = None) -> np.ndarray:
    """L2 distances between pairs of faces of *different* people (a seeded sample beyond ``max_pairs``).

    Args:
        embeddings: ``N x D`` clean embeddings.
        identities: who each face is (``None``: every face is a different person, as in the built-in set).
    """
    i, j = _pairs(len(embeddings), max_pairs, seed)
    if identities is not None:
        ident = np.asarray(identities, dtype=object)
        keep = ident[i] != ident[j]
        i, j = i[keep], j[keep]
    e = np.asarray(embeddings, dtype=float)
    return np.linalg.norm(e[i] - e[j], axis=1)


def genuine_distances(embeddings: np.ndarray, identities: Sequence[str]) -> np.ndarray:
    """L2 distances between all pairs of different photos of the *same* person."""
    ident = np.asarray(identities, dtype=object)
    i, j = _pairs(len(embeddings), 10**12, 0)
    keep = ident[i] == ident[j]
    e = np.asarray(embeddings, dtype=float)
    return np.linalg.norm(e[i[keep]] - e[j[keep]], axis=1)


def _pairs(n: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError(f"need at least 2 faces to calibrate a threshold, got {n}")
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    keep = i != j
    return i[keep], j[keep]


@dataclass(frozen=True)
class Threshold:
    """The match threshold on L2 distance, and where it comes from.

    Attributes:
        distance: faces match when their L2 distance is ``<= distance``.
        fmr_target: the false-match rate asked for.
        fmr_observed: the fraction of impostor pairs that match at ``distance`` (NaN without pairs).
        n_impostor_pairs: impostor pairs (different people) available.
        impostor_median: median impostor distance (context for the threshold).
        source: ``"calibrated at FMR ... on N impostor pairs"`` or, with too few pairs, the published
            threshold used instead.
        note: why calibration was not possible, when it was not ('' otherwise).
        n_genuine_pairs: same-person pairs (only with an identity column).
        fnmr: false non-match rate of the genuine pairs at ``distance`` (NaN without them).
        fnmr_ci: its 95% Wilson interval.
    """

    distance: float
    fmr_target: float
    fmr_observed: float
    n_impostor_pairs: int
    impostor_median: float
    source: str = ""
    note: str = ""
    n_genuine_pairs: int = 0
    fnmr: float = math.nan
    fnmr_ci: tuple[float, float] = (math.nan, math.nan)


def min_impostor_pairs(fmr: float) -> int:
    """Impostor pairs needed to calibrate ``fmr`` (10 expected false matches: ``ceil(10 / fmr)``)."""
    return math.ceil(10 / fmr - 1e-9)


def calibrate_threshold(embeddings: np.ndarray, fmr: float = 0.01, seed: int = 0,
                        identities: Sequence[str] | None = None,
                        fallback: tuple[float, str] | None = None) -> Threshold:
    """Distance at which ``fmr`` of different-person pairs would (falsely) match.

    Args:
        embeddings: ``N x D`` clean embeddings.
        fmr: target false-match rate.
        seed: pair sampling seed (large sets).
        identities: who each face is; impostor pairs are then only pairs of different people, and the
            same-person pairs give the false non-match rate (FNMR) at the threshold.
        fallback: ``(distance, source)`` used when there are fewer than :func:`min_impostor_pairs` impostor
            pairs (the embedder's published threshold); without one, the thin calibration is used and
            ``note`` says so.
    """
    if not 0 < fmr < 1:
        raise ValueError(f"fmr must be in (0, 1), got {fmr}")
    d = impostor_distances(embeddings, seed=seed, identities=identities)
    needed = min_impostor_pairs(fmr)
    note = ""
    if d.size < needed:
        note = (f"only {d.size} impostor pairs (different people): calibrating a false-match rate of {fmr:g} needs "
                f"at least {needed} (10/FMR)")
    if d.size and (not note or fallback is None):
        t = float(np.quantile(d, fmr, method="lower"))
        source = f"calibrated at FMR {fmr:g} on {d.size} impostor pairs of this data"
        if note:
            note += "; the thin calibration was used anyway (no published threshold to fall back on)"
    elif fallback is not None:
        t, source = float(fallback[0]), f"published threshold used instead: {fallback[1]}"
        note += f"; used {t:g} instead ({fallback[1]})"
    else:
        raise ValueError("no impostor pairs (every face is the same person) and no published threshold: "
                         "add faces of other people")
    observed = float((d <= t).mean()) if d.size else math.nan
    out = Threshold(t, fmr, observed, int(d.size), float(np.median(d)) if d.size else math.nan, source, note)
    if identities is not None:
        g = genuine_distances(embeddings, identities)
        if g.size:
            misses = int((g > t).sum())
            out = replace(out, n_genuine_pairs=int(g.size), fnmr=misses / g.size,
                          fnmr_ci=tuple(float(v) for v in wilson_interval(misses, int(g.size))))
    return out
