from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from inspector.decision.calibrate import (
    fit_temperature,
    threshold_best_f1,
    threshold_for_false_reject,
    threshold_min_cost,
)


@pytest.mark.parametrize(("n", "target"), [(400, 0.05), (40, 0.01), (20, 0.05)])
def test_false_reject_target_holds_on_held_out_good(n: int, target: float) -> None:
    """Over many repetitions the held-out false-reject rate averages to the target (within sampling error)."""
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(300):
        # Peak-of-map scores are maxima: a Gumbel population.
        calib = threshold_for_false_reject(rng.gumbel(1.0, 0.2, n), target)
        rates.append(np.mean(rng.gumbel(1.0, 0.2, 4000) >= calib.threshold))
    mean_rate = float(np.mean(rates))
    # 3 standard errors of the mean of per-repetition rates, plus the estimator's small-n bias allowance.
    tolerance = 3 * np.std(rates) / np.sqrt(len(rates)) + 0.35 * target
    assert abs(mean_rate - target) < tolerance, (mean_rate, target)


def test_false_reject_uses_empirical_quantile_when_data_allows() -> None:
    scores = np.arange(1000, dtype=float)
    calib = threshold_for_false_reject(scores, 0.1)
    assert calib.details["estimator"] == "empirical quantile"
    assert calib.threshold == pytest.approx(np.quantile(scores, 0.9))
    assert calib.details["observed_false_reject_on_calibration_set"] == pytest.approx(0.1, abs=0.002)


def test_false_reject_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        threshold_for_false_reject(np.array([1.0]), 0.01)
    with pytest.raises(ValueError, match="target"):
        threshold_for_false_reject(np.array([1.0, 2.0]), 0.7)


def test_best_f1_hand_case() -> None:
    good = np.array([0.1, 0.2, 0.3, 0.45])
    defect = np.array([0.4, 0.6, 0.7])
    calib = threshold_best_f1(good, defect)
    # Threshold between 0.3 and 0.4 catches all defects with one false reject: F1 = 6/7.
    assert 0.3 < calib.threshold <= 0.4
    assert calib.details["f1"] == pytest.approx(6 / 7)
    labels = np.r_[np.zeros(4), np.ones(3)]
    preds = np.r_[good, defect] >= calib.threshold
    assert f1_score(labels, preds) == pytest.approx(calib.details["f1"])
    assert calib.expected_escape == 0.0
    assert calib.expected_false_reject == pytest.approx(0.25)


def test_cost_weights_move_the_threshold() -> None:
    rng = np.random.default_rng(0)
    good, defect = rng.normal(0, 1, 200), rng.normal(2, 1, 50)
    cautious = threshold_min_cost(good, defect, cost_false_reject=1, cost_escape=100)
    lenient = threshold_min_cost(good, defect, cost_false_reject=100, cost_escape=1)
    assert cautious.threshold < lenient.threshold
    assert cautious.expected_escape <= lenient.expected_escape
    with pytest.raises(ValueError, match="good and defect"):
        threshold_min_cost(good, np.array([]), 1, 1)


def test_temperature_recovers_the_generating_scale() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 0.05, 4000)
    labels = rng.random(4000) < 1 / (1 + np.exp(-40.0 * margins))
    assert fit_temperature(margins, labels.astype(float), init=100.0) == pytest.approx(40.0, rel=0.15)
    with pytest.raises(ValueError):
        fit_temperature(margins, np.zeros_like(margins))
