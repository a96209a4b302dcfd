"""Tests for crystallize.stats against independent references.

References come from statsmodels (t-tests, confidence intervals, multiple
testing) or are derived here from the textbook formula: exact null
distributions by enumeration, normal approximations with ``math.erfc``,
Hedges' correction with ``math.gamma``. No reference calls the scipy function
the implementation calls.
"""

from __future__ import annotations

import itertools
import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as hst
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from crystallize.errors import DefinitionError, MissingMetricError, StatisticsError
from crystallize.stats import (
    BUILTIN_VERIFIERS,
    _percentile_interval,
    _resampled_mean_differences,
    adjust_p_values,
    bootstrap_ci,
    mann_whitney_u,
    paired_t_test,
    permutation_test,
    student_t_test,
    welch_t_test,
    wilcoxon_signed_rank,
)

TOL = 1e-9
BASE = [0.71, 0.74, 0.69, 0.73, 0.70, 0.72, 0.75]
TREAT = [0.76, 0.79, 0.74, 0.81, 0.73, 0.78]
SM_ALT = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
ALTERNATIVES = ["two-sided", "greater", "less"]
COMMON_KEYS = {
    "p_value", "statistic", "effect_size", "effect_size_name", "ci_low", "ci_high",
    "n_baseline", "n_treatment", "significant", "alternative", "alpha", "metric",
    "mean_difference",
}
PROPERTY = settings(deadline=None, derandomize=True, max_examples=40)


def _run(factory, baseline, treatment, **params):
    return factory(**params)({"m": list(baseline)}, {"m": list(treatment)})


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _hedges_j(df: float) -> float:
    return math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))


def _hedges_g(baseline, treatment) -> float:
    b, t = np.asarray(baseline), np.asarray(treatment)
    nb, nt = b.size, t.size
    sp = math.sqrt(((nb - 1) * b.var(ddof=1) + (nt - 1) * t.var(ddof=1)) / (nb + nt - 2))
    return _hedges_j(nb + nt - 2) * (t.mean() - b.mean()) / sp


def _tail_p(p_greater: float, p_less: float, alternative: str) -> float:
    if alternative == "greater":
        return p_greater
    if alternative == "less":
        return p_less
    return min(1.0, 2 * min(p_greater, p_less))


# --------------------------------------------------------------------------- t-tests


class TestWelch:
    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_matches_statsmodels(self, alternative):
        out = _run(welch_t_test, BASE, TREAT, alternative=alternative)
        stat, p, df = sm_ttest_ind(TREAT, BASE, usevar="unequal", alternative=SM_ALT[alternative])
        lo, hi = CompareMeans(DescrStatsW(TREAT), DescrStatsW(BASE)).tconfint_diff(
            alpha=0.05, usevar="unequal"
        )
        assert out["statistic"] == pytest.approx(stat, abs=TOL)
        assert out["p_value"] == pytest.approx(p, abs=TOL)
        assert out["df"] == pytest.approx(df, abs=TOL)
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)
        assert out["effect_size"] == pytest.approx(_hedges_g(BASE, TREAT), abs=TOL)
        assert out["effect_size_name"] == "hedges_g"
        assert out["significant"] is bool(p < 0.05)
        assert out["mean_difference"] == pytest.approx(np.mean(TREAT) - np.mean(BASE), abs=TOL)

    def test_hand_formula(self):
        b, t = np.array(BASE), np.array(TREAT)
        vb, vt = b.var(ddof=1) / b.size, t.var(ddof=1) / t.size
        tstat = (t.mean() - b.mean()) / math.sqrt(vb + vt)
        df = (vb + vt) ** 2 / (vb**2 / (b.size - 1) + vt**2 / (t.size - 1))
        from scipy.stats import t as t_dist  # the distribution, not ttest_ind

        out = _run(welch_t_test, BASE, TREAT, alternative="greater", level=0.9)
        assert out["statistic"] == pytest.approx(tstat, abs=TOL)
        assert out["p_value"] == pytest.approx(t_dist.sf(tstat, df), abs=TOL)
        half = t_dist.ppf(0.95, df) * math.sqrt(vb + vt)
        assert out["ci_low"] == pytest.approx(t.mean() - b.mean() - half, abs=TOL)
        assert out["ci_level"] == 0.9

    def test_output_is_plain_json(self):
        out = _run(welch_t_test, BASE, TREAT)
        assert COMMON_KEYS <= set(out)
        assert all(type(v) in (float, int, bool, str, type(None)) for v in out.values())
        assert json.loads(json.dumps(out)) == out


class TestStudent:
    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_matches_statsmodels(self, alternative):
        out = _run(student_t_test, BASE, TREAT, alternative=alternative, level=0.99)
        stat, p, df = sm_ttest_ind(TREAT, BASE, usevar="pooled", alternative=SM_ALT[alternative])
        lo, hi = CompareMeans(DescrStatsW(TREAT), DescrStatsW(BASE)).tconfint_diff(
            alpha=0.01, usevar="pooled"
        )
        assert (out["statistic"], out["p_value"], out["df"]) == pytest.approx((stat, p, df), abs=TOL)
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)
        assert out["effect_size"] == pytest.approx(_hedges_g(BASE, TREAT), abs=TOL)


class TestPairedT:
    B = [10.1, 11.4, 9.8, 12.0, 10.7, 11.1]
    T = [10.9, 11.6, 10.9, 12.3, 11.9, 11.2]

    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_matches_statsmodels(self, alternative):
        out = _run(paired_t_test, self.B, self.T, alternative=alternative)
        d = np.subtract(self.T, self.B)
        stat, p, df = DescrStatsW(d).ttest_mean(0.0, alternative=SM_ALT[alternative])
        lo, hi = DescrStatsW(d).tconfint_mean(alpha=0.05)
        assert (out["statistic"], out["p_value"], out["df"]) == pytest.approx((stat, p, df), abs=TOL)
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)
        g = _hedges_j(d.size - 1) * d.mean() / d.std(ddof=1)
        assert out["effect_size"] == pytest.approx(g, abs=TOL)
        assert out["mean_difference"] == pytest.approx(d.mean(), abs=TOL)

    def test_is_marked_paired(self):
        assert paired_t_test().paired and wilcoxon_signed_rank().paired
        assert not welch_t_test().paired


# --------------------------------------------------------------------------- rank tests


def _mw_exact(baseline, treatment, alternative):
    """Exact Mann-Whitney p by enumerating every assignment of the pooled ranks."""
    pooled = sorted(baseline + treatment)
    ranks = {v: i + 1 for i, v in enumerate(pooled)}  # no ties
    nt, nb = len(treatment), len(baseline)
    u_obs = sum(ranks[v] for v in treatment) - nt * (nt + 1) / 2
    us = [sum(c) - nt * (nt + 1) / 2 for c in itertools.combinations(range(1, nb + nt + 1), nt)]
    p_greater = sum(u >= u_obs for u in us) / len(us)
    p_less = sum(u <= u_obs for u in us) / len(us)
    return u_obs, _tail_p(p_greater, p_less, alternative)


def _mw_normal(baseline, treatment, alternative):
    """Normal approximation with tie and continuity correction (Lehmann, Nonparametrics 1975)."""
    nb, nt = len(baseline), len(treatment)
    u1 = sum((t > b) + 0.5 * (t == b) for t in treatment for b in baseline)
    n = nb + nt
    counts = np.unique(baseline + treatment, return_counts=True)[1]
    ties = float(np.sum(counts**3 - counts))
    sigma = math.sqrt(nb * nt / 12 * ((n + 1) - ties / (n * (n - 1))))
    mu = nb * nt / 2
    p_greater = _norm_sf((u1 - mu - 0.5) / sigma)
    p_less = _norm_sf((nb * nt - u1 - mu - 0.5) / sigma)
    two = min(1.0, 2 * _norm_sf((max(u1, nb * nt - u1) - mu - 0.5) / sigma))
    return u1, {"greater": p_greater, "less": p_less, "two-sided": two}[alternative]


class TestMannWhitney:
    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_exact_without_ties(self, alternative):
        b, t = [3.1, 1.2, 2.5, 5.7, 0.4], [4.4, 6.1, 7.3, 2.9, 5.9, 8.0]
        out = _run(mann_whitney_u, b, t, alternative=alternative)
        u, p = _mw_exact(b, t, alternative)
        assert out["method"] == "exact"
        assert out["statistic"] == pytest.approx(u, abs=TOL)
        assert out["p_value"] == pytest.approx(p, abs=TOL)
        delta = (sum(x > y for x in t for y in b) - sum(x < y for x in t for y in b)) / (len(b) * len(t))
        assert out["effect_size"] == pytest.approx(delta, abs=TOL)
        assert out["effect_size_name"] == "cliffs_delta"

    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_asymptotic_with_ties(self, alternative):
        b, t = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0], [2.0, 4.0, 5.0, 5.0, 6.0, 7.0]
        out = _run(mann_whitney_u, b, t, alternative=alternative)
        u, p = _mw_normal(b, t, alternative)
        assert out["method"] == "asymptotic"
        assert out["statistic"] == pytest.approx(u, abs=TOL)
        assert out["p_value"] == pytest.approx(p, abs=TOL)
        lo, hi = CompareMeans(DescrStatsW(t), DescrStatsW(b)).tconfint_diff(usevar="unequal")
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)

    def test_constant_but_different_is_finite(self):
        out = _run(mann_whitney_u, [1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
        assert out["effect_size"] == 1.0
        assert (out["ci_low"], out["ci_high"]) == (1.0, 1.0)
        assert out["p_value"] == pytest.approx(_mw_normal([1.0] * 3, [2.0] * 3, "two-sided")[1], abs=TOL)


def _signed_rank_parts(d):
    nz = [x for x in d if x != 0]
    order = sorted(abs(x) for x in nz)
    rank = {}
    for value in set(order):
        positions = [i + 1 for i, v in enumerate(order) if v == value]
        rank[value] = sum(positions) / len(positions)
    ranks = [rank[abs(x)] for x in nz]
    w_plus = sum(r for r, x in zip(ranks, nz) if x > 0)
    return nz, ranks, w_plus


class TestWilcoxon:
    B = [5.1, 4.8, 6.0, 5.5, 5.9, 4.2, 5.0, 6.3]
    T = [5.9, 4.6, 6.9, 6.0, 6.2, 5.5, 5.4, 7.4]

    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_exact_by_enumeration(self, alternative):
        d = [t - b for t, b in zip(self.T, self.B)]
        nz, ranks, w_plus = _signed_rank_parts(d)
        sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(nz))]
        p = _tail_p(
            sum(s >= w_plus - 1e-12 for s in sums) / len(sums),
            sum(s <= w_plus + 1e-12 for s in sums) / len(sums),
            alternative,
        )
        out = _run(wilcoxon_signed_rank, self.B, self.T, alternative=alternative)
        total = sum(ranks)
        assert out["method"] == "exact"
        assert out["statistic"] == pytest.approx(w_plus, abs=TOL)
        assert out["p_value"] == pytest.approx(p, abs=TOL)
        assert out["effect_size"] == pytest.approx((2 * w_plus - total) / total, abs=TOL)
        assert out["effect_size_name"] == "rank_biserial"
        lo, hi = DescrStatsW(np.array(d)).tconfint_mean()
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)

    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_asymptotic_with_zeros_and_ties(self, alternative):
        b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        t = [2.0, 2.0, 5.0, 3.0, 7.0, 8.0, 7.5, 10.0, 8.0]  # d: 1 0 2 -1 2 2 .5 2 -1
        d = [x - y for x, y in zip(t, b)]
        nz, ranks, w_plus = _signed_rank_parts(d)
        n = len(nz)
        counts = np.unique(np.abs(nz), return_counts=True)[1]
        se = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(counts**3 - counts)) / 48)
        z = (w_plus - n * (n + 1) / 4) / se
        p = _tail_p(_norm_sf(z), 1 - _norm_sf(z), alternative)
        out = _run(wilcoxon_signed_rank, b, t, alternative=alternative)
        assert (out["method"], out["n_nonzero"]) == ("asymptotic", 8)
        assert out["statistic"] == pytest.approx(w_plus, abs=TOL)
        assert out["p_value"] == pytest.approx(p, abs=TOL)


# --------------------------------------------------------------------------- resampling


class TestPermutation:
    B = [3.0, 5.0, 4.0, 6.0]
    T = [7.0, 6.0, 9.0, 8.0, 5.0]

    @pytest.mark.parametrize("alternative", ALTERNATIVES)
    def test_exact_by_enumeration(self, alternative):
        pooled = self.B + self.T
        obs = np.mean(self.T) - np.mean(self.B)
        stats = []
        for idx in itertools.combinations(range(len(pooled)), len(self.T)):
            t = [pooled[i] for i in idx]
            b = [pooled[i] for i in range(len(pooled)) if i not in idx]
            stats.append(np.mean(t) - np.mean(b))
        stats = np.array(stats)
        p = _tail_p(np.mean(stats >= obs - 1e-12), np.mean(stats <= obs + 1e-12), alternative)
        out = _run(permutation_test, self.B, self.T, alternative=alternative)
        assert out["method"] == "exact"
        assert out["p_value"] == pytest.approx(p, abs=TOL)
        assert out["statistic"] == pytest.approx(obs, abs=TOL)
        assert out["effect_size"] == pytest.approx(_hedges_g(self.B, self.T), abs=TOL)

    def test_randomized_is_seeded(self):
        rng = np.random.default_rng(7)
        b, t = list(rng.normal(0, 1, 12)), list(rng.normal(0.8, 1, 12))
        first = _run(permutation_test, b, t, n_resamples=499, seed=3)
        again = _run(permutation_test, b, t, n_resamples=499, seed=3)
        other = _run(permutation_test, b, t, n_resamples=499, seed=4)
        assert first == again
        assert first["method"] == "randomized" and first["seed"] == 3
        assert first["p_value"] != other["p_value"]
        k = first["p_value"] * 500 / 2  # two-sided p = 2 (k + 1) / (n + 1)
        assert k == pytest.approx(round(k), abs=1e-6)
        welch = _run(welch_t_test, b, t)["p_value"]
        assert abs(first["p_value"] - welch) < 0.05


class TestBootstrap:
    def test_matches_hand_resampling(self):
        b, t = np.array(BASE), np.array(TREAT)
        out = _run(bootstrap_ci, BASE, TREAT, n_resamples=2000, seed=11, level=0.9)
        rng = np.random.default_rng(11)
        ib = rng.integers(0, b.size, size=(2000, b.size))
        it = rng.integers(0, t.size, size=(2000, t.size))
        diffs = t[it].mean(axis=1) - b[ib].mean(axis=1)
        lo, hi = np.percentile(diffs, [5, 95])
        assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=TOL)
        p_two = min(1.0, 2 * min((np.sum(diffs <= 0) + 1) / 2001, (np.sum(diffs >= 0) + 1) / 2001))
        assert out["p_value"] == pytest.approx(p_two, abs=TOL)
        assert out["statistic"] == pytest.approx(t.mean() - b.mean(), abs=TOL)
        assert out["effect_size"] == pytest.approx(_hedges_g(BASE, TREAT), abs=TOL)

    def test_same_seed_same_numbers(self):
        first = _run(bootstrap_ci, BASE, TREAT, n_resamples=999, seed=5)
        assert first == _run(bootstrap_ci, BASE, TREAT, n_resamples=999, seed=5)
        assert first != _run(bootstrap_ci, BASE, TREAT, n_resamples=999, seed=6)

    def test_one_sided_p_values(self):
        greater = _run(bootstrap_ci, BASE, TREAT, n_resamples=999, alternative="greater")
        less = _run(bootstrap_ci, BASE, TREAT, n_resamples=999, alternative="less")
        assert greater["p_value"] == pytest.approx(1 / 1000)  # every resample is > 0
        assert less["p_value"] == 1.0


# --------------------------------------------------------------------------- correction


class TestAdjust:
    P = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9]

    @pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh"])
    def test_matches_statsmodels(self, method):
        expected = multipletests(self.P, method=method)[1]
        assert adjust_p_values(self.P, method) == pytest.approx(list(expected), abs=TOL)

    @pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh"])
    def test_edges(self, method):
        assert adjust_p_values([], method) == []
        assert adjust_p_values([0.3], method) == [0.3]
        assert all(type(v) is float for v in adjust_p_values(np.array([0.5, 0.01]), method))

    def test_bad_method(self):
        with pytest.raises(ValueError, match="method must be one of 'holm', 'bonferroni', 'fdr_bh'"):
            adjust_p_values([0.1], "sidak")

    @pytest.mark.parametrize("bad", [[0.1, 1.5], [float("nan")], [-0.1]])
    def test_bad_p_values(self, bad):
        with pytest.raises(StatisticsError, match=r"p-values must lie in \[0, 1\]"):
            adjust_p_values(bad, "holm")

    @PROPERTY
    @given(
        hst.lists(hst.floats(0, 1), min_size=1, max_size=12),
        hst.sampled_from(["holm", "bonferroni", "fdr_bh"]),
    )
    def test_monotone_and_bounded(self, p, method):
        adjusted = adjust_p_values(p, method)
        expected = multipletests(p, method=method)[1]
        assert adjusted == pytest.approx(list(expected), abs=TOL)
        assert all(0 <= a <= 1 and a >= q - 1e-15 for a, q in zip(adjusted, p))
        pairs = sorted(zip(p, adjusted))
        assert all(x[1] <= y[1] + 1e-15 for x, y in zip(pairs, pairs[1:]))


# --------------------------------------------------------------------------- edge cases

FAST = {
    "permutation_test": {"n_resamples": 199},
    "bootstrap_ci": {"n_resamples": 199},
}


def _factory(name, **params):
    return BUILTIN_VERIFIERS[name](**{**FAST.get(name, {}), **params})


class TestEdgeCases:
    @pytest.mark.parametrize("name", sorted(BUILTIN_VERIFIERS))
    def test_constant_and_equal(self, name):
        out = _factory(name)({"m": [2.5, 2.5, 2.5]}, {"m": [2.5, 2.5, 2.5]})
        assert out["p_value"] == 1.0 and out["effect_size"] == 0.0
        assert (out["ci_low"], out["ci_high"]) == (0.0, 0.0)
        assert out["significant"] is False
        assert out["mean_difference"] == 0.0

    @pytest.mark.parametrize("name", ["welch_t_test", "student_t_test", "permutation_test", "bootstrap_ci"])
    def test_constant_but_different_raises(self, name):
        with pytest.raises(StatisticsError, match=r"'m': both samples are constant but differ \(baseline 1.0, treatment 2.0\)"):
            _factory(name)({"m": [1.0, 1.0, 1.0]}, {"m": [2.0, 2.0]})

    def test_paired_constant_differences(self):
        with pytest.raises(StatisticsError, match="every paired difference equals 1.0"):
            _factory("paired_t_test")({"m": [1.0, 2.0, 3.0]}, {"m": [2.0, 3.0, 4.0]})
        out = _factory("wilcoxon_signed_rank")({"m": [1.0, 2.0, 3.0]}, {"m": [2.0, 3.0, 4.0]})
        assert out["effect_size"] == 1.0 and 0 < out["p_value"] < 1
        zero = _factory("paired_t_test")({"m": [1.0, 2.0, 3.0]}, {"m": [1.0, 2.0, 3.0]})
        assert (zero["p_value"], zero["effect_size"], zero["ci_low"]) == (1.0, 0.0, 0.0)

    @pytest.mark.parametrize("name", sorted(BUILTIN_VERIFIERS))
    def test_too_few_values(self, name):
        with pytest.raises(StatisticsError, match="metric 'm': need at least 2 baseline values, got 1"):
            _factory(name)({"m": [1.0]}, {"m": [1.0, 2.0]})

    @pytest.mark.parametrize("name", sorted(BUILTIN_VERIFIERS))
    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite(self, name, bad):
        with pytest.raises(StatisticsError, match=r"metric 'm': treatment values contain NaN or infinite values \(1 of 3\)"):
            _factory(name)({"m": [1.0, 2.0, 3.0]}, {"m": [1.0, bad, 2.0]})

    @pytest.mark.parametrize("name", ["paired_t_test", "wilcoxon_signed_rank"])
    def test_paired_unequal_lengths(self, name):
        with pytest.raises(StatisticsError, match="'m': paired tests need equal lengths, got baseline n=3 and treatment n=2"):
            _factory(name)({"m": [1.0, 2.0, 3.0]}, {"m": [1.0, 2.0]})

    def test_metric_selection(self):
        two = ({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 4.0]}, {"a": [2.0, 3.0, 5.0], "b": [2.0, 2.0, 9.0]})
        with pytest.raises(StatisticsError, match="expected exactly one metric, got 'a', 'b'; pass metric="):
            welch_t_test()(*two)
        assert welch_t_test(metric="b")(*two)["metric"] == "b"
        with pytest.raises(MissingMetricError, match="'zz'"):
            welch_t_test(metric="zz")(*two)

    def test_non_numeric_and_nested(self):
        with pytest.raises(StatisticsError, match="metric 'm': baseline values are not numbers"):
            welch_t_test()({"m": ["a", "b"]}, {"m": [1.0, 2.0]})
        with pytest.raises(StatisticsError, match="flat sequence of numbers, got shape"):
            welch_t_test()({"m": [[1.0, 2.0], [3.0, 4.0]]}, {"m": [1.0, 2.0]})

    def test_overflow_is_an_error_not_nan(self):
        with pytest.raises(StatisticsError, match="gave a non-finite"), np.errstate(all="ignore"):
            welch_t_test()({"m": [1e308, -1e308, 1e308]}, {"m": [1e308, -1e308, -1e308]})

    @pytest.mark.parametrize("name", ["welch_t_test", "student_t_test", "paired_t_test", "bootstrap_ci"])
    def test_variance_underflow_is_an_error(self, name):
        with pytest.raises(StatisticsError, match="'m': the standard deviation is 0.0 although the values differ"), \
                np.errstate(all="ignore"):
            _factory(name)({"m": [0.0, 1e-200, 0.0]}, {"m": [1e-200, 0.0, 0.0]})

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"alternative": "bigger"}, "alternative must be one of 'two-sided', 'greater', 'less'"),
            ({"alpha": 1.5}, "alpha must be a number strictly between 0 and 1"),
            ({"level": 0}, "level must be a number strictly between 0 and 1"),
        ],
    )
    def test_bad_options(self, params, message):
        with pytest.raises(DefinitionError, match=message):
            welch_t_test(**params)({"m": BASE}, {"m": TREAT})

    def test_bad_resampling_options(self):
        with pytest.raises(DefinitionError, match="n_resamples must be a positive integer"):
            bootstrap_ci(n_resamples=0)({"m": BASE}, {"m": TREAT})
        with pytest.raises(DefinitionError, match="seed must be a non-negative integer or None"):
            permutation_test(seed=-1)({"m": BASE}, {"m": TREAT})

    def test_unknown_parameter(self):
        with pytest.raises(TypeError, match="Unknown parameters: n_resamples"):
            welch_t_test(n_resamples=10)


# --------------------------------------------------------------------------- registry, pickling


def test_builtin_registry_is_immutable_and_complete():
    assert set(BUILTIN_VERIFIERS) == {
        "welch_t_test", "student_t_test", "mann_whitney_u", "paired_t_test",
        "wilcoxon_signed_rank", "permutation_test", "bootstrap_ci",
    }
    with pytest.raises(TypeError):
        BUILTIN_VERIFIERS["x"] = welch_t_test  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(BUILTIN_VERIFIERS))
def test_builtins_pickle_and_return_plain_values(name):
    bound = _factory(name, alpha=0.01)
    clone = pickle.loads(pickle.dumps(bound))
    assert clone.params == bound.params and clone.paired == bound.paired
    out = clone({"m": BASE[:6]}, {"m": TREAT})
    assert out == bound({"m": BASE[:6]}, {"m": TREAT})
    assert COMMON_KEYS <= set(out) and out["alpha"] == 0.01
    assert all(type(v) in (float, int, bool, str, type(None)) for v in out.values())


# --------------------------------------------------------------------------- properties

finite = hst.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 3))
samples = hst.lists(finite, min_size=2, max_size=10)


def _both_constant(b, t):
    return len(set(b)) == 1 and len(set(t)) == 1


@PROPERTY
@given(samples, samples, hst.sampled_from(sorted(BUILTIN_VERIFIERS)), hst.sampled_from(ALTERNATIVES))
def test_p_values_are_probabilities(b, t, name, alternative):
    if name in ("paired_t_test", "wilcoxon_signed_rank"):
        t = (t * 10)[: len(b)] if len(t) < len(b) else t[: len(b)]
        assume(name == "wilcoxon_signed_rank" or len({y - x for x, y in zip(b, t)}) > 1)
    else:
        assume(not _both_constant(b, t) or b[0] == t[0] or name == "mann_whitney_u")
    out = _factory(name, alternative=alternative)({"m": b}, {"m": t})
    assert 0.0 <= out["p_value"] <= 1.0
    assert out["ci_low"] <= out["ci_high"]
    assert all(math.isfinite(out[k]) for k in ("statistic", "effect_size", "ci_low", "ci_high"))


@PROPERTY
@given(samples, samples, hst.integers(0, 2**16))
def test_bootstrap_ci_contains_observed_difference(b, t, seed):
    assume(not _both_constant(b, t))
    out = bootstrap_ci(n_resamples=199, seed=seed)({"m": b}, {"m": t})
    assert out["ci_low"] - 1e-9 <= out["mean_difference"] <= out["ci_high"] + 1e-9


@PROPERTY
@given(samples, samples, hst.integers(0, 2**16), hst.sampled_from([0.8, 0.9, 0.95]))
def test_bootstrap_swap_with_same_indices_flips_sign(b, t, seed, level):
    rng = np.random.default_rng(seed)
    bi = rng.integers(0, len(b), size=(300, len(b)))
    ti = rng.integers(0, len(t), size=(300, len(t)))
    forward = _resampled_mean_differences(np.array(b), np.array(t), bi, ti)
    swapped = _resampled_mean_differences(np.array(t), np.array(b), ti, bi)
    assert np.array_equal(swapped, -forward)
    lo, hi = _percentile_interval(forward, level)
    s_lo, s_hi = _percentile_interval(swapped, level)
    assert (s_lo, s_hi) == pytest.approx((-hi, -lo), abs=1e-9)


@PROPERTY
@given(samples, samples, hst.sampled_from(["welch_t_test", "student_t_test", "mann_whitney_u", "bootstrap_ci"]))
def test_swap_flips_effect_and_interval(b, t, name):
    assume(not _both_constant(b, t))
    forward = _factory(name)({"m": b}, {"m": t})
    swapped = _factory(name)({"m": t}, {"m": b})
    assert swapped["effect_size"] == pytest.approx(-forward["effect_size"], abs=1e-9)
    assert swapped["mean_difference"] == pytest.approx(-forward["mean_difference"], abs=1e-9)
    if name != "bootstrap_ci":  # bootstrap: same indices needed, tested above
        assert (swapped["ci_low"], swapped["ci_high"]) == pytest.approx(
            (-forward["ci_high"], -forward["ci_low"]), abs=1e-9
        )
        assert swapped["p_value"] == pytest.approx(forward["p_value"], abs=1e-9)


class TestConstantUpToRounding:
    """Spread that is only float rounding counts as none (it gave g ~ 1e16 and p ~ 1e-81)."""

    def test_paired_differences_equal_up_to_rounding_raise(self):
        baseline = list(np.random.default_rng(0).normal(size=6))
        treatment = [x + 0.5 for x in baseline]  # (x + 0.5) - x is 0.5 only up to rounding
        assert np.ptp(np.subtract(treatment, baseline)) > 0  # the case this guards: not bit-identical
        with pytest.raises(StatisticsError, match="every paired difference equals 0.5"):
            paired_t_test()({"m": baseline}, {"m": treatment})

    @pytest.mark.parametrize("test", [welch_t_test, student_t_test, permutation_test, bootstrap_ci])
    def test_unpaired_samples_constant_up_to_rounding_raise(self, test):
        with pytest.raises(StatisticsError, match="both samples are constant but differ"):
            test()({"m": [0.1 + 0.2, 0.3, 0.3]}, {"m": [1.0, 1.0, 1.0]})

    def test_equal_up_to_rounding_is_no_difference(self):
        result = welch_t_test()({"m": [0.1 + 0.2, 0.3, 0.3]}, {"m": [0.3, 0.3, 0.1 + 0.2]})
        assert (result["p_value"], result["effect_size"], result["significant"]) == (1.0, 0.0, False)
        paired = paired_t_test()({"m": [0.1 + 0.2, 0.3]}, {"m": [0.3, 0.1 + 0.2]})
        assert (paired["p_value"], paired["effect_size"]) == (1.0, 0.0)

    def test_rank_tests_still_rank_a_tiny_spread(self):
        result = mann_whitney_u()({"m": [1.0, 1.0 + 1e-15, 1.0 + 2e-15]}, {"m": [1.0 + 3e-15, 1.0 + 4e-15, 1.0 + 5e-15]})
        assert result["effect_size"] == 1.0  # every treatment value ranks above every baseline value
