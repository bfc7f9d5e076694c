"""The statistics on scipy.stats / statsmodels give today's numbers.

The expected values below were recorded from the hand-written implementations this module replaced (commit
0f1233f, ``audit/metrics.py``) on seeded inputs: the percentile bootstrap and the Monte-Carlo permutation test
draw the same resamples from the same seeded generator, so they agree to the last bit; the Wilson interval and
Holm/Bonferroni agree to floating-point rounding.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from audit.stats import adjust_pvalues, bootstrap_ci, group_metrics, permutation_pvalue, wilson_interval

NAN = math.nan
TOL = {"rel": 1e-12, "abs": 1e-15}

BOOT = {
    (1, 'mean', 1000, 0, 0.95): (0.5502930202357655, 0.5502930202357655),
    (2, 'median', 1000, 1, 0.95): (0.6392071224775667, 0.6461422432392776),
    (17, 'mean', 1000, 2, 0.95): (0.5372694253284257, 0.9416120744142327),
    (17, 'median', 500, 3, 0.9): (0.3987785617320914, 0.7108472263778742),
    (200, 'mean', 1000, 4, 0.95): (0.57368557893095, 0.6960216917955798),
    (5000, 'mean', 1000, 5, 0.95): (0.5940758398578951, 0.6172056163217653),
    (5000, 'median', 300, 6, 0.99): (0.4852445200819442, 0.5163414332675247),
}
WILSON = {
    (0, 1): (0.0, 0.7934506856227626),
    (1, 1): (0.20654931437723745, 1.0),
    (0, 3): (5.551115123125783e-17, 0.5614970317550454),
    (1, 3): (0.06149194472039621, 0.7923403991979522),
    (2, 7): (0.08221892400405678, 0.6410655481673808),
    (5, 10): (0.236593090512564, 0.7634069094874361),
    (0, 30): (0.0, 0.11351339317396876),
    (30, 30): (0.8864866068260312, 0.9999999999999999),
    (13, 200): (0.03837635464915299, 0.10801907929906895),
    (199, 200): (0.9722262956021069, 0.9991168312843989),
}
PERM = {
    (12, 40, 0.0, 0): 0.9358064193580642,
    (25, 60, 0.2, 1): 0.0044995500449955,
    (40, 40, 0.5, 2): 9.999000099990002e-05,
    (200, 300, 0.05, 3): 0.0357964203579642,
    (3000, 2500, 0.02, 4): 0.009677618268826514,
}
HOLM = [0.05, NAN, 0.12, 0.12, 0.5, 0.012, 0.12]
BONF = [0.06, NAN, 0.24, 0.18, 1.0, 0.012, 0.24]
GROUPS = [
    ('a', 40, 38, 0.4488178170146172, 0.3543584870383721, 0.5330787949279993, 0.43505765912505967,
     0.3069932187363213, 0.5097070013510565, 6, 0.15, 0.07061187717320358, 0.2907232436648971, False, True, 1.0,
     0.0, 1.0, 0.0, NAN, NAN),
    ('b', 25, 24, 0.596481783866003, 0.4667058912666529, 0.7313814018324583, 0.4995204886255107, 0.349456965167864,
     0.7371592915887478, 7, 0.28, 0.14283853850956563, 0.47576605190361576, False, False, 1.3290064726788167,
     0.14766396685138583, 1.866666666666667, 0.13000000000000003, 0.06869313068693131, 0.22073660869109096),
    ('c', 12, 12, 0.5995904667892252, 0.40884064295152783, 0.786341716289175, 0.5788658363458901,
     0.26165903547421027, 0.9561149232515674, 0, 0.0, 2.7755575615628914e-17, 0.24249400665524085, True, False,
     1.335932853061619, 0.15077264977460803, 0.0, -0.15, 0.141985801419858, 0.31587188066716054),
]


def sample(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 0.3, n)


@pytest.mark.parametrize("args", list(BOOT))
def test_bootstrap_matches_the_hand_written_percentile_bootstrap(args):
    n, stat, n_boot, seed, level = args
    assert bootstrap_ci(sample(n, seed), stat, n_boot, seed, level) == pytest.approx(BOOT[args], **TOL)


@pytest.mark.parametrize("k, n", list(WILSON))
def test_wilson_matches_the_textbook_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(WILSON[(k, n)], **TOL)
    z, p = 1.959963984540054, k / n  # Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx(((centre - half) / (1 + z * z / n),
                                                   (centre + half) / (1 + z * z / n)), abs=1e-12)


@pytest.mark.parametrize("args", list(PERM))
def test_permutation_pvalue_matches_the_hand_written_monte_carlo_test(args):
    na, nb, shift, seed = args
    a, b = sample(na, 100 + seed), sample(nb, 200 + seed) + shift
    assert permutation_pvalue(a, b, 10000, seed) == pytest.approx(PERM[args], **TOL)


def test_holm_and_bonferroni_match():
    p = [0.01, NAN, 0.04, 0.03, 0.5, 0.002, 0.04]
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), HOLM, rtol=1e-12)
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), BONF, rtol=1e-12)


def test_group_metrics_match():
    v = sample(77, 9)
    v[[3, 10, 50]] = np.nan
    g = np.array(["a"] * 40 + ["b"] * 25 + ["c"] * 12)
    f = np.random.default_rng(10).random(77) < np.where(g == "b", 0.4, 0.15)
    got = group_metrics(v, f, g, n_boot=400, seed=3, min_n=20)
    assert len(got) == len(GROUPS)
    for stats, expected in zip(got, GROUPS, strict=True):
        values = tuple(stats.__dict__.values())
        assert values[0] == expected[0] and values[1:3] == expected[1:3]
        np.testing.assert_allclose(np.array(values[3:], float), np.array(expected[3:], float), rtol=1e-12,
                                   atol=1e-15, err_msg=f"group {expected[0]}")


def test_tiny_groups_get_the_exact_permutation_pvalue():
    """Where every split can be enumerated within n_perm, scipy enumerates them (the hand-written test sampled
    10 000 random splits instead, so its value differed from this one by Monte-Carlo error only)."""
    a, b = sample(3, 1), sample(5, 2) + 0.4
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    splits = list(itertools.combinations(range(8), 3))  # 56 splits
    extreme = sum(abs(pooled[list(s)].mean() - np.delete(pooled, s).mean()) >= observed - 1e-12 for s in splits)
    assert permutation_pvalue(a, b, n_perm=10_000, seed=0) == pytest.approx(extreme / len(splits), rel=1e-12)
    assert permutation_pvalue(a, b, n_perm=10_000, seed=0) == permutation_pvalue(a, b, n_perm=10_000, seed=9)


@pytest.mark.parametrize("n_rest", [1, 6])
def test_a_single_value_gets_the_exact_permutation_pvalue(n_rest):
    one, rest = sample(1, 3), sample(n_rest, 4)
    pooled = np.concatenate([one, rest])
    observed = abs(one[0] - rest.mean())
    extreme = sum(abs(pooled[j] - np.delete(pooled, j).mean()) >= observed - 1e-12 for j in range(pooled.size))
    assert permutation_pvalue(one, rest) == pytest.approx(extreme / pooled.size, rel=1e-12)
    assert permutation_pvalue(rest, one) == permutation_pvalue(one, rest)
