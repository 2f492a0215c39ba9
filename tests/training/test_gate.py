"""Validation metrics at the calibrated threshold, and the promotion gate's rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.config.training import GateSpec
from inspector.training.gate import ValidationMetrics, decide, rates_at, validation_metrics


def test_metrics_at_the_calibrated_threshold() -> None:
    good = np.array([0.1, 0.2, 0.3, 0.4])
    defect = np.array([0.35, 0.8, 0.9])
    m = validation_metrics(good, defect, method="f1")
    assert m.auroc == pytest.approx(11 / 12)
    assert m.threshold == pytest.approx(0.325) and m.escape_rate == 0.0 and m.false_reject_rate == 0.25
    assert m.f1 == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert (m.tp, m.fp, m.tn, m.fn) == (3, 1, 3, 0)  # at 0.325: the 0.4 good part is a false reject
    fr = validation_metrics(good, defect, method="false_reject", target_false_reject=0.01)
    assert fr.false_reject_rate == 0.0 and fr.method == "false_reject"
    assert rates_at(good, defect, 0.85) == pytest.approx((2 * 1 / (2 + 0 + 2), 0.0, 2 / 3))


def test_nan_scores_are_the_worst_model() -> None:
    m = validation_metrics(np.array([0.1, np.nan]), np.array([0.5]))
    assert m.auroc == 0.0 and m.escape_rate == 1.0 and math.isnan(m.threshold)


def _m(auroc: float, f1: float = 0.9, fr: float = 0.05, esc: float = 0.1) -> ValidationMetrics:
    return ValidationMetrics(auroc, f1, fr, esc, 1.0, "false_reject", 10, 10)


def test_gate_refuses_a_worse_model_and_passes_an_equal_one() -> None:
    spec = GateSpec()
    deployed = _m(0.95)
    assert decide(_m(0.95), deployed, spec, "v1").passed
    worse = decide(_m(0.90), deployed, spec, "v1")
    assert not worse.passed and worse.compared_to == "v1"
    assert "auroc 0.900 is lower than v1's 0.950" in worse.reasons[0]
    assert not decide(_m(0.99, esc=0.2), deployed, spec).passed  # more escapes
    assert decide(_m(0.99, fr=0.5), deployed, spec).passed  # false rejects are reported, not gated by default
    assert not decide(_m(0.99, fr=0.5), deployed, GateSpec(false_reject_tolerance=0.1)).passed
    assert decide(_m(0.94), deployed, GateSpec(auroc_tolerance=0.02)).passed
    floor = decide(_m(0.45), _m(0.40), spec)
    assert not floor.passed and "min_auroc" in floor.reasons[0]
    assert decide(_m(0.96), deployed, spec).to_dict()["checks"]["auroc"]["ok"]


def test_a_candidate_that_lets_most_defects_through_is_refused_whatever_its_auroc() -> None:
    """The issue's case: 77.8 % escapes passed "because the deployed one was worse"."""
    active = ValidationMetrics(0.80, 0.3, 0.0, 0.889, 1.0, "false_reject", 9, 9)
    candidate = ValidationMetrics(0.95, 0.4, 0.0, 7 / 9, 1.0, "false_reject", 9, 9)
    d = decide(candidate, active, GateSpec(), "v1")
    assert not d.passed and d.checks["auroc"]["ok"] and d.checks["escape_rate"]["ok"]
    assert d.checks["max_escape"] == {"new": pytest.approx(7 / 9), "limit": 0.2, "ok": False}
    (reason,) = d.reasons
    assert "escape_rate 0.778 (7 of 9 defects passed as OK at its operating threshold)" in reason
    assert "training.gate.max_escape = 0.2" in reason and "auroc 0.950" in reason
    # More escapes than the active one is refused too, even under the line limit and with a better AUROC.
    worse = decide(_m(0.99, esc=0.15), _m(0.90, esc=0.05), GateSpec(), "v1")
    assert not worse.passed and worse.checks["max_escape"]["ok"]
    assert "escape_rate 0.150 is higher than v1's 0.050 at its operating threshold" in worse.reasons[0]


def test_max_escape_is_the_lines_limit() -> None:
    candidate = _m(0.99, esc=0.3)
    assert not decide(candidate, _m(0.5, esc=0.9), GateSpec()).passed
    assert decide(candidate, _m(0.5, esc=0.9), GateSpec(max_escape=0.3)).passed
    assert decide(_m(0.99, esc=0.0), _m(0.5, esc=0.0), GateSpec(max_escape=0.0)).passed
    nan = ValidationMetrics(0.99, 0.9, 0.0, math.nan, 1.0, "false_reject", 4, 4)
    assert not decide(nan, _m(0.5, esc=0.9), GateSpec(max_escape=1.0)).checks["max_escape"]["ok"]


def test_judged_metrics_count_each_fold_at_its_own_threshold() -> None:
    from inspector.training.gate import judged_metrics

    folds = [(np.array([0.1, 0.2]), np.array([0.25, 0.9]), 0.3),  # fold 1: threshold 0.3 -> 0.25 escapes
             (np.array([1.1, 1.6]), np.array([2.0]), 1.5)]  # fold 2: threshold 1.5 -> 1.6 is a false reject
    m = judged_metrics(folds, "false_reject")
    assert (m.n_good, m.n_defect) == (4, 3) and m.fold_thresholds == (0.3, 1.5)
    assert m.escape_rate == pytest.approx(1 / 3) and m.false_reject_rate == pytest.approx(1 / 4)
    assert m.threshold == pytest.approx(0.9)  # the median of the fold thresholds
    # The counts behind the rates, kept in the metrics record for the approval screen (issue #17 item 9).
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 1, 3, 1) and m.to_dict()["fn"] == 1
    # Pooled raw scores would rank 1.1 and 1.6 above 0.9; margins to each fold's threshold do not.
    assert m.auroc == pytest.approx(image_auroc_of([-0.2, -0.1, -0.4, 0.1], [-0.05, 0.6, 0.5]))
    bad = judged_metrics([(np.array([0.1]), np.array([0.5]), math.nan)], "f1")
    assert bad.escape_rate == 1.0 and math.isnan(bad.threshold) and bad.tp is None  # not counted: not 0
    with pytest.raises(ValueError, match="judging needs good and defect"):
        judged_metrics([(np.array([0.1]), np.array([]), 0.5)], "f1")


def image_auroc_of(good: list[float], defect: list[float]) -> float:
    from inspector.evaluation.metrics import image_auroc

    return image_auroc(np.r_[np.zeros(len(good)), np.ones(len(defect))], np.r_[good, defect])
