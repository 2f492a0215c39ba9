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
