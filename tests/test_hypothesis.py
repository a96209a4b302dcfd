"""Tests for crystallize.hypothesis: 0.27 semantics plus errors, correction, pairing."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from crystallize.errors import MissingMetricError
from crystallize.hypothesis import (
    Hypothesis,
    HypothesisResult,
    VerifierCallable,
    hypothesis,
    rank_by_p_value,
    verifier,
)
from crystallize.stats import paired_t_test, welch_t_test

BASELINE = {"mean": [1.0, 2.0, 3.0], "max_seen": [4.0, 5.0, 6.0]}
TREATMENTS = {
    "small": {"mean": [3.0, 4.0, 5.0], "max_seen": [6.0, 7.0, 8.0]},
    "large": {"mean": [9.0, 10.0, 11.0], "max_seen": [12.0, 13.0, 14.0]},
}


@verifier
def mean_difference(baseline, treatment, *, threshold: float = 1.0):
    b = sum(baseline["mean"]) / len(baseline["mean"])
    t = sum(treatment["mean"]) / len(treatment["mean"])
    gap = t - b
    return {"gap": gap, "significant": gap > threshold, "p_value": 0.01 if gap > threshold else 0.5}


@verifier
def needs_threshold(baseline_samples, treatment_samples, threshold):
    return {"threshold": threshold, "n": len(baseline_samples)}


@verifier(paired=True)
def record_pairs(baseline, treatment):
    return {"baseline": baseline, "treatment": treatment}


@verifier
def first_value(baseline, treatment):
    (metric,) = baseline
    if treatment[metric][0] == 0:
        raise ZeroDivisionError("treatment starts at zero")
    return {"p_value": baseline[metric][0] / treatment[metric][0], "alpha": 0.05, "significant": False}


# --------------------------------------------------------------------------- verifier


class TestVerifierDecorator:
    def test_factory_binds_params(self):
        bound = mean_difference(threshold=5.0)
        assert isinstance(bound, VerifierCallable)
        assert bound.params == {"threshold": 5.0} and bound.paired is False
        assert bound.fn.__name__ == "mean_difference"
        assert bound(BASELINE, TREATMENTS["small"])["significant"] is False
        assert repr(bound) == "mean_difference(threshold=5.0)"

    def test_sample_parameter_names(self):
        out = needs_threshold(threshold=3)({"m": [1, 2]}, {"m": [1]})
        assert out == {"threshold": 3, "n": 1}

    def test_unknown_parameter(self):
        with pytest.raises(TypeError, match="Unknown parameters: bogus, other"):
            mean_difference(bogus=1, other=2)

    def test_missing_required(self):
        with pytest.raises(TypeError, match="Missing required parameters: threshold"):
            needs_threshold()

    def test_paired_flag(self):
        assert record_pairs.paired is True and record_pairs().paired is True

    def test_function_without_two_samples(self):
        with pytest.raises(TypeError, match="must accept two positional arguments"):
            verifier(lambda only: only)

    def test_pickle_roundtrip(self):
        bound = mean_difference(threshold=2.5)
        clone = pickle.loads(pickle.dumps(bound))
        assert clone.params == {"threshold": 2.5}
        assert clone(BASELINE, TREATMENTS["large"]) == bound(BASELINE, TREATMENTS["large"])


def test_rank_by_p_value():
    assert rank_by_p_value({"p_value": 0.2}) == 0.2
    assert rank_by_p_value({"gap": 1}) == 1.0
    assert rank_by_p_value([{"p_value": 0.4}, {"p_value": 0.03}]) == 0.03
    assert rank_by_p_value([]) == 1.0
    assert rank_by_p_value(None) == 1.0


# --------------------------------------------------------------------------- 0.27 behaviour


class TestExample027:
    """examples-0.27 §4: the ranking is 0.27's two-key dict; ``["ordered"]`` answers the names."""

    def test_custom_ranker(self):
        @hypothesis(verifier=mean_difference(threshold=5.0), metrics="mean")
        def largest_gap_first(result):
            return -result["gap"]

        assert isinstance(largest_gap_first, Hypothesis)
        assert largest_gap_first.name == "largest_gap_first"
        h = largest_gap_first.evaluate(BASELINE, TREATMENTS)
        assert h.results == {
            "small": {"gap": 2.0, "significant": False, "p_value": 0.5},
            "large": {"gap": 8.0, "significant": True, "p_value": 0.01},
        }
        assert h.ranking == {
            "best": "large",
            "ranked": [("large", -8.0), ("small", -2.0)],
        }
        assert h.ranking["ordered"] == ["large", "small"] and "ordered" not in h.ranking
        assert h.errors == {}

    def test_default_ranker_keeps_order_on_ties(self):
        hyp = Hypothesis(verifier=mean_difference(), metrics=["mean", "max_seen"], name="default_ranker")
        h = hyp.evaluate(BASELINE, TREATMENTS)
        assert h.name == "default_ranker"
        assert h.ranking == {
            "best": "small",
            "ranked": [("small", 0.01), ("large", 0.01)],
        }
        assert h.ranking["ordered"] == ["small", "large"]

    def test_names(self):
        assert Hypothesis(mean_difference()).name == "hypothesis"

        def by_gap(result):
            return result["gap"]

        assert Hypothesis(mean_difference(), ranker=by_gap).name == "by_gap"
        assert Hypothesis(mean_difference(), ranker=by_gap, name="x").name == "x"

    @pytest.mark.parametrize(
        ("metrics", "groups"),
        [
            (None, None),
            ("m", [["m"]]),
            (["a", "b"], [["a", "b"]]),
            ([["a"], ["b"]], [["a"], ["b"]]),
            (("a",), [["a"]]),
        ],
    )
    def test_metric_shapes(self, metrics, groups):
        assert Hypothesis(mean_difference(), metrics).metrics == groups

    def test_bad_metric_shape(self):
        with pytest.raises(TypeError, match="metrics must be None, a metric name"):
            Hypothesis(mean_difference(), ["a", ["b"]])

    def test_verify_selects_metrics(self):
        seen = []

        def spy(baseline, treatment):
            seen.append((baseline, treatment))
            return {"p_value": 0.5}

        assert Hypothesis(spy, "mean").verify(BASELINE, TREATMENTS["small"]) == {"p_value": 0.5}
        assert seen == [({"mean": [1.0, 2.0, 3.0]}, {"mean": [3.0, 4.0, 5.0]})]
        seen.clear()
        Hypothesis(spy).verify(BASELINE, TREATMENTS["small"])
        assert list(seen[0][0]) == ["mean", "max_seen"]

    def test_verify_groups_return_a_list(self):
        hyp = Hypothesis(welch_t_test(), [["mean"], ["max_seen"]])
        out = hyp.verify(BASELINE, TREATMENTS["small"])
        assert [o["metric"] for o in out] == ["mean", "max_seen"]

    def test_verify_missing_metric(self):
        with pytest.raises(MissingMetricError, match="Required metric 'nope' missing from pipeline output."):
            Hypothesis(mean_difference(), "nope").verify(BASELINE, TREATMENTS["small"])
        with pytest.raises(MissingMetricError, match="'mean'"):
            Hypothesis(mean_difference(), "mean").verify(BASELINE, {"max_seen": [1.0]})


class TestConstruction:
    def test_bad_correction(self):
        with pytest.raises(ValueError, match="correction must be one of None, 'holm', 'bonferroni', 'fdr_bh'; got 'sidak'"):
            Hypothesis(welch_t_test(), "m", correction="sidak")

    def test_uncalled_factory(self):
        with pytest.raises(TypeError, match=r"is a verifier factory; call it .* welch_t_test\(\)"):
            Hypothesis(welch_t_test, "m")

    def test_not_callable(self):
        with pytest.raises(TypeError, match="verifier must be callable, got int"):
            Hypothesis(3, "m")  # type: ignore[arg-type]

    def test_decorator_passes_correction(self):
        @hypothesis(verifier=welch_t_test(), metrics="m", name="named", correction="holm")
        def rank(result):
            return result["p_value"]

        assert (rank.name, rank.correction, rank.ranker.__name__) == ("named", "holm", "rank")


# --------------------------------------------------------------------------- evaluate


class TestEvaluate:
    def test_grouped_metrics_with_default_ranker(self):
        hyp = Hypothesis(welch_t_test(), [["mean"], ["max_seen"]])
        h = hyp.evaluate(BASELINE, {"a": {"mean": [2.0, 2.5, 3.1], "max_seen": [9.0, 9.5, 9.9]},
                                    "b": {"mean": [1.0, 2.1, 3.0], "max_seen": [4.0, 5.2, 6.0]}})
        assert h.errors == {}
        assert isinstance(h.results["a"], list) and len(h.results["a"]) == 2
        scores = dict(h.ranking["ranked"])
        assert scores["a"] == min(o["p_value"] for o in h.results["a"])
        assert h.ranking["best"] == "a"

    def test_verifier_error_is_recorded(self):
        hyp = Hypothesis(first_value(), "m")
        h = hyp.evaluate({"m": [1.0]}, {"zero": {"m": [0.0]}, "two": {"m": [2.0]}})
        assert h.errors == {"zero": "ZeroDivisionError: treatment starts at zero"}
        assert list(h.results) == ["two"]
        assert h.ranking == {"best": "two", "ranked": [("two", 0.5)]}

    def test_statistics_error_is_recorded(self):
        h = Hypothesis(welch_t_test(), "m").evaluate({"m": [1.0]}, {"t": {"m": [1.0, 2.0]}})
        assert h.errors["t"] == "StatisticsError: metric 'm': need at least 2 baseline values, got 1"
        assert h.ranking == {"best": None, "ranked": []}

    def test_ranker_error_is_recorded(self):
        def broken(result):
            raise KeyError("gap")

        h = Hypothesis(mean_difference(), "mean", ranker=broken).evaluate(BASELINE, TREATMENTS)
        assert set(h.results) == {"small", "large"}
        assert h.errors == {"ranker": "KeyError: 'gap'"}
        assert h.ranking == {"best": None, "ranked": []}

    def test_metric_missing_everywhere_raises(self):
        with pytest.raises(MissingMetricError, match="'nope'") as info:
            Hypothesis(mean_difference(), ["mean", "nope"]).evaluate(BASELINE, TREATMENTS)
        assert info.value.metric == "nope"
        with pytest.raises(MissingMetricError, match="'nope'"):
            Hypothesis(mean_difference(), "nope").evaluate(BASELINE, {})

    def test_metric_missing_on_some_treatments_is_an_error(self):
        treatments = {"has": {"extra": [1.0, 2.0]}, "lacks": {"mean": [1.0]}}
        h = Hypothesis(welch_t_test(), "extra").evaluate(BASELINE, treatments)
        assert h.errors == {
            "has": "MissingMetricError: Required metric 'extra' missing from pipeline output.",
            "lacks": "MissingMetricError: Required metric 'extra' missing from pipeline output.",
        }

    def test_result_round_trips_through_json(self):
        h = Hypothesis(welch_t_test(), "mean").evaluate(BASELINE, TREATMENTS)
        data = json.loads(json.dumps(h.to_dict()))
        assert data["ranking"]["ranked"][0] == ["large", h.ranking["ranked"][0][1]]
        back = HypothesisResult.from_dict(data)
        assert back == h
        assert back.get_for_treatment("large (v3)") == h.results["large"]
        assert back.get_for_treatment("missing") is None

    def test_from_dict_accepts_027_shape(self):
        old = {"name": "h", "results": {"a": {"p_value": 0.1}}, "ranking": {"best": "a", "ranked": [["a", 0.1]]}}
        back = HypothesisResult.from_dict(old)
        assert back.ranking == {"best": "a", "ranked": [("a", 0.1)]} and back.ranking["ordered"] == ["a"]
        assert back.errors == {}

    def test_to_dict_converts_numpy(self):
        h = HypothesisResult("h", {"a": {"p": np.float64(0.5), "v": np.arange(2)}}, {"best": "a", "ranked": [("a", np.float64(0.5))]})
        data = h.to_dict()
        assert type(data["results"]["a"]["p"]) is float and data["results"]["a"]["v"] == [0, 1]
        assert type(data["ranking"]["ranked"][0][1]) is float


# --------------------------------------------------------------------------- correction


def _welch_fixture():
    rng = np.random.default_rng(42)
    baseline = {"m": list(rng.normal(0.0, 1.0, 8))}
    shifts = {"t1": 0.2, "t2": 1.2, "t3": 0.9, "t4": 2.0}
    return baseline, {name: {"m": list(rng.normal(s, 1.0, 8))} for name, s in shifts.items()}


class TestCorrection:
    @pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh"])
    def test_adds_adjusted_p_values(self, method):
        baseline, treatments = _welch_fixture()
        raw = Hypothesis(welch_t_test(alpha=0.05), "m").evaluate(baseline, treatments)
        h = Hypothesis(welch_t_test(alpha=0.05), "m", correction=method).evaluate(baseline, treatments)
        p = [raw.results[name]["p_value"] for name in treatments]
        expected = multipletests(p, alpha=0.05, method=method)[1]
        for name, adjusted in zip(treatments, expected):
            out = h.results[name]
            assert out["p_value"] == raw.results[name]["p_value"]
            assert out["p_value_adjusted"] == pytest.approx(adjusted, abs=1e-9)
            assert out["significant"] is bool(adjusted < 0.05)
            assert out["correction"] == method
        assert h.ranking == raw.ranking

    def test_significance_can_flip(self):
        hyp = Hypothesis(first_value(), "m", correction="bonferroni")
        h = hyp.evaluate({"m": [0.03]}, {"a": {"m": [1.0]}, "b": {"m": [1.0]}})
        assert h.results["a"]["p_value_adjusted"] == pytest.approx(0.06)
        assert h.results["a"]["significant"] is False
        raw = Hypothesis(welch_t_test(alpha=0.5), "m")
        assert raw.correction is None

    def test_grouped_outputs_are_corrected_per_group(self):
        baseline, treatments = _welch_fixture()
        both = {name: {"m": t["m"], "n": [x * 2 for x in t["m"]]} for name, t in treatments.items()}
        base = {"m": baseline["m"], "n": [x * 3 for x in baseline["m"]]}
        h = Hypothesis(welch_t_test(), [["m"], ["n"]], correction="holm").evaluate(base, both)
        for group in (0, 1):
            p = [h.results[name][group]["p_value"] for name in both]
            expected = multipletests(p, method="holm")[1]
            got = [h.results[name][group]["p_value_adjusted"] for name in both]
            assert got == pytest.approx(list(expected), abs=1e-9)

    def test_outputs_without_p_value_are_left_alone(self):
        h = Hypothesis(needs_threshold(threshold=1), "m", correction="holm").evaluate(
            {"m": [1.0]}, {"a": {"m": [2.0]}}
        )
        assert h.results == {"a": {"threshold": 1, "n": 1}}


# --------------------------------------------------------------------------- pairing


class TestPairing:
    BASE_REPS = [{"m": [1.0]}, None, {"m": [3.0, 5.0]}, {"m": [4.0]}, {"other": [1.0]}]
    TREAT_REPS = [{"m": [2.0]}, {"m": [9.0]}, {"m": [7.0]}, None, {"m": [8.0]}, {"m": [1.0]}]

    @staticmethod
    def _flat(reps):
        flat: dict[str, list[float]] = {}
        for rec in reps:
            for key, values in (rec or {}).items():
                flat.setdefault(key, []).extend(values)
        return flat

    def test_aligns_by_replicate_and_skips_failures(self):
        h = Hypothesis(record_pairs(), "m").evaluate(
            self._flat(self.BASE_REPS),
            {"t": self._flat(self.TREAT_REPS)},
            baseline_replicates=self.BASE_REPS,
            treatment_replicates={"t": self.TREAT_REPS},
        )
        # index 0 pairs (1, 2); 1 failed on baseline; 2 pairs mean(3, 5)=4 with 7;
        # 3 failed on treatment; 4 lacks "m" on baseline; 5 has no baseline replicate.
        assert h.results["t"] == {"baseline": {"m": [1.0, 4.0]}, "treatment": {"m": [2.0, 7.0]}}

    def test_flat_lists_without_replicates(self):
        h = Hypothesis(record_pairs(), "m").evaluate({"m": [1.0, 2.0]}, {"t": {"m": [3.0]}})
        assert h.results["t"] == {"baseline": {"m": [1.0, 2.0]}, "treatment": {"m": [3.0]}}

    def test_unpaired_verifier_ignores_replicates(self):
        seen = []

        def spy(baseline, treatment):
            seen.append(treatment["m"])
            return {}

        Hypothesis(spy, "m").evaluate(
            self._flat(self.BASE_REPS), {"t": self._flat(self.TREAT_REPS)},
            baseline_replicates=self.BASE_REPS, treatment_replicates={"t": self.TREAT_REPS},
        )
        assert seen == [[2.0, 9.0, 7.0, 8.0, 1.0]]

    def test_paired_t_test_uses_aligned_values(self):
        base_reps = [{"s": [1.0]}, {"s": [2.0]}, None, {"s": [4.0]}, {"s": [5.5]}]
        treat_reps = [{"s": [1.5]}, {"s": [2.9]}, {"s": [100.0]}, {"s": [4.2]}, {"s": [6.6]}]
        h = Hypothesis(paired_t_test(), "s").evaluate(
            self._flat(base_reps), {"t": self._flat(treat_reps)},
            baseline_replicates=base_reps, treatment_replicates={"t": treat_reps},
        )
        d = np.array([0.5, 0.9, 0.2, 1.1])
        stat, p, _ = DescrStatsW(d).ttest_mean(0.0)
        out = h.results["t"]
        assert (out["statistic"], out["p_value"]) == pytest.approx((stat, p), abs=1e-9)
        assert out["n_baseline"] == out["n_treatment"] == 4
        assert math.isclose(out["mean_difference"], d.mean(), abs_tol=1e-12)

    def test_flat_unequal_lengths_error_points_to_replicates(self):
        h = Hypothesis(paired_t_test(), "m").evaluate({"m": [1.0, 2.0, 3.0]}, {"t": {"m": [1.0, 2.5]}})
        assert "paired tests need equal lengths" in h.errors["t"]
