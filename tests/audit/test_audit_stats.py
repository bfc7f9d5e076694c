"""Known-answer tests of the audit's statistics (no models involved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.report import summarize
from audit.stats import (
    adjust_pvalues,
    bootstrap_ci,
    calibrate_threshold,
    group_metrics,
    impostor_distances,
    permutation_pvalue,
    proportion_pvalue,
    wilson_interval,
)


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 0.1, 20), rng.normal(0.5, 0.1, 2000)
    lo_s, hi_s = bootstrap_ci(small, n_boot=500, seed=0)
    lo_l, hi_l = bootstrap_ci(large, n_boot=500, seed=0)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4  # width ~ 1/sqrt(n): 100x the samples, ~10x narrower
    assert bootstrap_ci(small, n_boot=500, seed=0) == (lo_s, hi_s)  # seeded
    lo_m, hi_m = bootstrap_ci(small, "median", n_boot=500, seed=0)
    assert lo_m <= np.median(small) <= hi_m


def test_bootstrap_rejects_bad_args_and_handles_empty():
    with pytest.raises(ValueError, match="stat"):
        bootstrap_ci([1.0], stat="mode")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0], n_boot=0)
    assert all(np.isnan(bootstrap_ci([])))


def test_wilson_interval_has_width_at_zero_and_known_value():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi > 0.2  # the bootstrap would give [0, 0]
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo < 0.8
    lo, hi = wilson_interval(5, 10)  # textbook value: 0.2366 – 0.7634
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_equal_groups_have_disparity_ratio_one_and_are_not_significant():
    values = np.tile([0.2, 0.4, 0.6, 0.8], 20)
    failures = np.tile([True, False, False, False], 20)
    groups = np.repeat(["a", "b"], 40)
    stats = {s.group: s for s in group_metrics(values, failures, groups, n_boot=200, min_n=30)}
    assert stats["b"].mean_ratio == pytest.approx(1.0)
    assert stats["b"].mean_diff == pytest.approx(0.0)
    assert stats["b"].fail_ratio == pytest.approx(1.0)
    assert stats["b"].p_fail == pytest.approx(1.0)
    assert stats["b"].p_mean > 0.5
    assert stats["a"].is_reference and np.isnan(stats["a"].p_mean)  # tie → alphabetical first is the reference


def test_small_group_is_flagged_and_reference_is_largest():
    groups = ["big"] * 40 + ["tiny"] * 5
    values = np.linspace(0, 1, 45)
    stats = {s.group: s for s in group_metrics(values, values < 0.3, groups, min_n=30, n_boot=100)}
    assert stats["tiny"].small and not stats["big"].small
    assert stats["big"].is_reference
    with pytest.raises(ValueError, match="reference"):
        group_metrics(values, values < 0.3, groups, reference="nope")


def test_different_groups_are_detected():
    groups = ["a"] * 60 + ["b"] * 60
    values = np.r_[np.full(60, 0.9), np.full(60, 0.3)] + np.random.default_rng(0).normal(0, 0.05, 120)
    failures = np.r_[np.zeros(60, bool), np.ones(60, bool)]
    b = [s for s in group_metrics(values, failures, groups, n_boot=200) if s.group == "b"][0]
    assert b.p_fail < 1e-10 and b.p_mean < 0.01
    assert b.fail_diff == pytest.approx(1.0) and np.isnan(b.fail_ratio)  # reference rate 0: ratio undefined


def test_holm_and_bonferroni():
    p = [0.01, 0.04, 0.03, np.nan]
    holm = adjust_pvalues(p, "holm")
    assert holm[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm[3])
    assert adjust_pvalues(p, "bonferroni")[:3] == pytest.approx([0.03, 0.12, 0.09])


def test_tests_return_sane_pvalues():
    assert proportion_pvalue(0, 20, 0, 20) == pytest.approx(1.0)
    assert 0 < permutation_pvalue([1, 2, 3], [1, 2, 3], 99) <= 1
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 50), rng.normal(2, 1, 50)
    # fine enough to survive Holm over 100 comparisons at 0.05 (1 000 permutations could not)
    assert permutation_pvalue(a, b, n_perm=10_000) * 100 < 0.05
    assert permutation_pvalue(a, b, max_exact_n=10) < 1e-10  # Welch's t-test for large samples


def test_threshold_calibration_at_fmr():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8))
    d = impostor_distances(emb)
    assert d.size == 60 * 59 // 2
    thr = calibrate_threshold(emb, fmr=0.05)
    assert thr.fmr_observed == pytest.approx(0.05, abs=0.01)
    assert thr.distance < thr.impostor_median
    with pytest.raises(ValueError):
        calibrate_threshold(emb[:1])


def test_summarize_counts_no_face_and_flags_small_groups():
    rows = pd.DataFrame({
        "image_id": [str(i) for i in range(8)], "model": "m", "degradation": "gaussian", "strength": 2.0,
        "status": ["ok"] * 6 + ["no_face_clean", "no_face_restored"],
        "sim_restored_clean": [0.9, 0.8, 0.7, 0.9, 0.8, 0.7, np.nan, np.nan],
        "match_restored": [True, True, False, True, True, False, None, False],
        "g": ["x", "x", "x", "y", "y", "y", "y", "x"],
    })
    for col in ("dist_restored_clean", "dist_degraded_clean", "drift", "psnr_restored", "ssim_restored",
                "sim_degraded_clean", "delta_ita"):
        rows[col] = 0.0
    table = summarize(rows, {"g": "label"}, n_boot=50, min_n=5)
    x = table[(table.attribute == "g") & (table.group == "x")].iloc[0]
    y = table[(table.attribute == "g") & (table.group == "y")].iloc[0]
    assert y.n_no_face_clean == 1 and x.n_no_face_restored == 1
    assert x.failures == 2 and x.n_evaluated == 4  # the restored no-face counts as a failure
    assert y.n_evaluated == 3 and y.small_group
    assert x.label_source == "label"
    assert table[table.attribute == "all"].iloc[0].n == 8
