"""Validation metrics of a model version and the promotion gate (pure maths, no I/O).

A version is judged by the station's decision score (every head fused, as the engine fuses them)
on judging images: image AUROC, and at its operating threshold the F1 of the defect class, the
false-reject rate (good parts rejected) and the escape rate (defects passed), with the confusion counts
behind them (kept in the version's metrics record for the approval screen). In a training run
the operating threshold of each outer fold is calibrated on that fold's inner data and the rates
are counted on its outer data, which chose nothing (:func:`judged_metrics`). The gate compares a
candidate with the deployed version on the *same* judging images, refuses it when a gated metric
is worse beyond its tolerance, and refuses any candidate whose escape rate is above the line's
``max_escape``, whatever its AUROC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inspector.config.training import GateSpec
from inspector.decision.calibrate import threshold_best_f1, threshold_for_false_reject, threshold_min_cost
from inspector.evaluation.metrics import image_auroc


@dataclass(frozen=True)
class ValidationMetrics:
    """Held-out metrics of one model on one validation set."""

    auroc: float
    f1: float  # defect-class F1 at the calibrated threshold
    false_reject_rate: float
    escape_rate: float
    threshold: float  # fused-score threshold calibrated on these scores
    method: str  # calibration method that set it
    n_good: int
    n_defect: int
    # Judged metrics: the operating threshold of each outer fold, set on its inner data (``threshold`` is their median).
    fold_thresholds: tuple[float, ...] = ()
    # The confusion counts behind the rates (NG = positive): defects judged NG, good parts judged NG (false
    # rejects), good judged OK, defects judged OK (escapes). None: not counted (non-finite scores).
    tp: int | None = None
    fp: int | None = None
    tn: int | None = None
    fn: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_at(good: np.ndarray, defect: np.ndarray, threshold: float) -> dict[str, int]:
    """{tp, fp, tn, fn} with NG iff score >= threshold: defects NG, good NG (false rejects), good OK, defects OK."""
    tp, fp = int((defect >= threshold).sum()), int((good >= threshold).sum())
    return {"tp": tp, "fp": fp, "tn": int(good.size) - fp, "fn": int(defect.size) - tp}


def rates_at(good: np.ndarray, defect: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(F1 of the defect class, false-reject rate, escape rate) with NG iff score >= threshold."""
    tp = float((defect >= threshold).sum())
    fn = float(defect.size - tp)
    fp = float((good >= threshold).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0
    return f1, fp / max(good.size, 1), fn / max(defect.size, 1)


def validation_metrics(good_scores: np.ndarray, defect_scores: np.ndarray, method: str = "false_reject",
                       target_false_reject: float = 0.01, cost_false_reject: float = 1.0,
                       cost_escape: float = 10.0) -> ValidationMetrics:
    """Calibrate a threshold on held-out scores with ``method`` and measure the decision there.

    Non-finite scores make every metric the worst value: a model that can emit NaN never passes.
    """
    good = np.asarray(good_scores, dtype=np.float64)
    defect = np.asarray(defect_scores, dtype=np.float64)
    if good.size == 0 or defect.size == 0:
        msg = f"validation needs good and defect scores (got {good.size} good, {defect.size} defect)"
        raise ValueError(msg)
    if not (np.isfinite(good).all() and np.isfinite(defect).all()):
        return ValidationMetrics(0.0, 0.0, 1.0, 1.0, math.nan, method, int(good.size), int(defect.size))
    labels = np.r_[np.zeros(good.size), np.ones(defect.size)]
    auroc = image_auroc(labels, np.r_[good, defect])
    if method == "false_reject":
        calib = threshold_for_false_reject(good, target_false_reject) if good.size >= 2 else None
        threshold = calib.threshold if calib is not None else float(np.nextafter(good.max(), np.inf))
    elif method == "f1":
        threshold = threshold_best_f1(good, defect).threshold
    elif method == "cost":
        threshold = threshold_min_cost(good, defect, cost_false_reject, cost_escape).threshold
    else:
        msg = f"unknown calibration method {method!r}; use false_reject, f1 or cost"
        raise ValueError(msg)
    f1, fr, esc = rates_at(good, defect, threshold)
    return ValidationMetrics(auroc, f1, fr, esc, float(threshold), method, int(good.size), int(defect.size),
                             **confusion_at(good, defect, threshold))


def judged_metrics(folds: Sequence[tuple[np.ndarray, np.ndarray, float]], method: str) -> ValidationMetrics:
    """Pooled metrics of (good scores, defect scores, threshold) per outer fold, each threshold set elsewhere.

    Every fold is judged at its own threshold: the rates are counts pooled over folds, the AUROC is
    that of the pooled margins (score - fold threshold). Non-finite scores or thresholds make every
    metric the worst value.
    """
    goods = [np.asarray(g, dtype=np.float64) - t for g, _, t in folds]
    defects = [np.asarray(d, dtype=np.float64) - t for _, d, t in folds]
    good = np.concatenate(goods) if goods else np.empty(0)
    defect = np.concatenate(defects) if defects else np.empty(0)
    thresholds = tuple(float(t) for _, _, t in folds)
    if good.size == 0 or defect.size == 0:
        msg = f"judging needs good and defect scores (got {good.size} good, {defect.size} defect)"
        raise ValueError(msg)
    finite = np.isfinite(good).all() and np.isfinite(defect).all()
    middle = float(np.median(thresholds)) if finite else math.nan
    if not finite:
        return ValidationMetrics(0.0, 0.0, 1.0, 1.0, middle, method, int(good.size), int(defect.size), thresholds)
    auroc = image_auroc(np.r_[np.zeros(good.size), np.ones(defect.size)], np.r_[good, defect])
    f1, fr, esc = rates_at(good, defect, 0.0)
    return ValidationMetrics(auroc, f1, fr, esc, middle, method, int(good.size), int(defect.size), thresholds,
                             **confusion_at(good, defect, 0.0))


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace the deployed version, and why not."""

    passed: bool
    compared_to: str  # the deployed version ("base" = the untrained heads)
    reasons: tuple[str, ...] = ()
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "compared_to": self.compared_to, "reasons": list(self.reasons),
                "checks": self.checks}


def decide(candidate: ValidationMetrics, deployed: ValidationMetrics, spec: GateSpec,
           deployed_name: str = "base") -> GateDecision:
    """Refuse the candidate when a gated metric is worse than the deployed one's beyond tolerance, when its
    escape rate is above the line limit ``spec.max_escape``, or when its AUROC is below ``spec.min_auroc``.

    Every rule stands on its own: a higher AUROC never excuses more escapes.
    """
    # (metric, higher is better, tolerance); None tolerance = reported only.
    rules: list[tuple[str, bool, float | None]] = [
        ("auroc", True, spec.auroc_tolerance),
        ("f1", True, spec.f1_tolerance),
        ("escape_rate", False, spec.escape_tolerance),
        ("false_reject_rate", False, spec.false_reject_tolerance),
    ]
    reasons: list[str] = []
    checks: dict[str, dict[str, Any]] = {}
    for name, higher, tol in rules:
        new, old = float(getattr(candidate, name)), float(getattr(deployed, name))
        if tol is None:
            ok = True
        elif not math.isfinite(new):
            ok = False
        else:
            ok = new >= old - tol - 1e-12 if higher else new <= old + tol + 1e-12
        checks[name] = {"new": new, "deployed": old, "tolerance": tol, "ok": ok}
        if not ok:
            worse = "lower" if higher else "higher"
            where = " at its operating threshold" if name in ("escape_rate", "false_reject_rate") else ""
            reasons.append(f"{name} {new:.3f} is {worse} than {deployed_name}'s {old:.3f}{where} "
                           f"(tolerance {tol:g})")
    escape = float(candidate.escape_rate)
    within = escape <= spec.max_escape + 1e-12  # NaN is never within
    checks["max_escape"] = {"new": escape, "limit": spec.max_escape, "ok": within}
    if not within:
        passed = round(escape * candidate.n_defect) if math.isfinite(escape) else candidate.n_defect
        reasons.append(f"escape_rate {escape:.3f} ({passed} of {candidate.n_defect} defects passed as OK at its "
                       f"operating threshold) is above the line limit training.gate.max_escape = "
                       f"{spec.max_escape:g} (auroc {candidate.auroc:.3f})")
    if not candidate.auroc >= spec.min_auroc:
        reasons.append(f"auroc {candidate.auroc:.3f} is below the floor training.gate.min_auroc = {spec.min_auroc:g}")
    if not math.isfinite(candidate.threshold):
        reasons.append("the candidate produced non-finite scores on validation images")
    return GateDecision(not reasons, deployed_name, tuple(reasons), checks)
