"""Tie-breaks of the labelled calibrations: equal F1 or equal cost -> the lowest false-reject rate."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.decision.calibrate import threshold_best_f1, threshold_min_cost

# F1 of the defect class is 2/3 both below every score (FR 1, escape 0) and between 3 and 4
# (FR 0.5, escape 0.25); every other threshold scores lower.
F1_GOOD = np.array([2.0, 3.0, 7.0, 8.0])
F1_DEFECT = np.array([1.0, 4.0, 5.0, 6.0])


def test_f1_tie_goes_to_the_lowest_false_reject() -> None:
    cal = threshold_best_f1(F1_GOOD, F1_DEFECT)
    assert cal.threshold == pytest.approx(3.5)
    assert cal.expected_false_reject == pytest.approx(0.5)
    assert cal.expected_escape == pytest.approx(0.25)
    assert cal.details["f1"] == pytest.approx(2 / 3)


def test_f1_is_the_first_key_and_false_reject_only_breaks_ties() -> None:
    """A threshold with a lower false-reject rate but a worse F1 is not chosen."""
    cal = threshold_best_f1(np.array([1.0, 3.0]), np.array([2.0, 4.0]))
    # F1 0.8 at 1.5 (FR 0.5) beats 2/3 at 3.5 (FR 0) and 0 above every score (FR 0).
    assert cal.threshold == pytest.approx(1.5)
    assert cal.details["f1"] == pytest.approx(0.8)


@pytest.mark.parametrize("order", [1, -1])
def test_f1_tie_break_does_not_depend_on_input_order(order: int) -> None:
    cal = threshold_best_f1(F1_GOOD[::order], F1_DEFECT[::order])
    assert cal.threshold == pytest.approx(3.5)


def test_cost_tie_goes_to_the_lowest_false_reject() -> None:
    # Equal costs, two good and two defect parts: 1.5 (FR 0.5, escape 0) and 3.5 (FR 0, escape 0.5)
    # both cost 0.25 per part; the tie goes to the threshold that rejects fewer good parts.
    cal = threshold_min_cost(np.array([1.0, 3.0]), np.array([2.0, 4.0]), 1.0, 1.0)
    assert cal.threshold == pytest.approx(3.5)
    assert cal.expected_false_reject == 0.0
    assert cal.expected_escape == pytest.approx(0.5)
    assert cal.details["cost_per_part"] == pytest.approx(0.25)


def test_cost_is_the_first_key_and_false_reject_only_breaks_ties() -> None:
    """Escapes ten times dearer: the cheapest threshold wins even though others reject fewer good parts."""
    cal = threshold_min_cost(np.array([1.0, 3.0]), np.array([2.0, 4.0]), 1.0, 10.0)
    # 0.999999: FR 1 -> cost 0.5; 1.5: FR 0.5 -> 0.25; 3.5: escape 0.5 -> 2.5; above all: 5.
    assert cal.threshold == pytest.approx(1.5)
    assert cal.details["cost_per_part"] == pytest.approx(0.25)
    assert cal.expected_false_reject == pytest.approx(0.5)
