"""Decision thresholds and the zero-shot temperature, from good images alone or labelled data (pure)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class Calibration:
    threshold: float
    method: str
    n_good: int
    n_defect: int = 0
    expected_false_reject: float | None = None
    expected_escape: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _gumbel_quantile(scores: np.ndarray, q: float) -> float:
    """Quantile of a Gumbel fitted by moments: peak-of-map scores are maxima, hence extreme-value."""
    std = float(np.std(scores, ddof=1)) if scores.size > 1 else 0.0
    beta = std * math.sqrt(6.0) / math.pi
    mu = float(np.mean(scores)) - _EULER_GAMMA * beta
    return mu - beta * math.log(-math.log(q))


def threshold_for_false_reject(good_scores: np.ndarray, target: float) -> Calibration:
    """Threshold so that a fraction ``target`` of good parts would be rejected.

    With enough samples in the tail (n * target >= 5) the empirical quantile is used; below that
    the tail is extrapolated from a Gumbel fit, since a handful of good parts cannot show a 1 %
    quantile directly.
    """
    scores = np.asarray(good_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size < 2:
        msg = f"calibration needs at least 2 good scores, got {scores.size}; add good images to the few-shot set"
        raise ValueError(msg)
    if not 0.0 < target < 0.5:
        msg = f"target false-reject rate must be in (0, 0.5), got {target}"
        raise ValueError(msg)
    q = 1.0 - target
    if scores.size * target >= 5:
        threshold, how = float(np.quantile(scores, q, method="linear")), "empirical quantile"
    else:
        threshold, how = _gumbel_quantile(scores, q), "Gumbel tail fit"
    threshold = max(threshold, float(np.nextafter(scores.min(), np.inf)))
    observed = float(np.mean(scores >= threshold))
    return Calibration(
        threshold=threshold,
        method="false_reject",
        n_good=int(scores.size),
        expected_false_reject=target,
        details={"estimator": how, "observed_false_reject_on_calibration_set": observed,
                 "good_mean": float(scores.mean()), "good_std": float(scores.std(ddof=1))},
    )


def _candidates(good: np.ndarray, defect: np.ndarray) -> np.ndarray:
    values = np.unique(np.concatenate([good, defect]))
    mids = (values[:-1] + values[1:]) / 2 if values.size > 1 else values
    return np.concatenate([values[:1] - 1e-6, mids, values[-1:] + 1e-6])


def _rates(good: np.ndarray, defect: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    false_reject = (good[None, :] >= thr[:, None]).mean(axis=1)
    escape = (defect[None, :] < thr[:, None]).mean(axis=1)
    return false_reject, escape


def _labelled(good_scores: np.ndarray, defect_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    good = np.asarray(good_scores, dtype=np.float64)
    defect = np.asarray(defect_scores, dtype=np.float64)
    if good.size == 0 or defect.size == 0:
        msg = (f"this calibration method needs good and defect scores (got {good.size} good, "
               f"{defect.size} defect); use method 'false_reject' for good-only data")
        raise ValueError(msg)
    return good, defect


def threshold_best_f1(good_scores: np.ndarray, defect_scores: np.ndarray) -> Calibration:
    """Threshold maximising F1 of the defect class (ties: the lowest false-reject rate)."""
    good, defect = _labelled(good_scores, defect_scores)
    thr = _candidates(good, defect)
    fr, esc = _rates(good, defect, thr)
    tp = (1 - esc) * defect.size
    fp = fr * good.size
    fn = esc * defect.size
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    best = int(np.lexsort((fr, -f1))[0])
    return Calibration(float(thr[best]), "f1", good.size, defect.size, float(fr[best]), float(esc[best]),
                       {"f1": float(f1[best])})


def threshold_min_cost(good_scores: np.ndarray, defect_scores: np.ndarray, cost_false_reject: float,
                       cost_escape: float) -> Calibration:
    """Threshold minimising expected cost per part: c_fr * FR * P(good) + c_esc * escape * P(defect)."""
    good, defect = _labelled(good_scores, defect_scores)
    thr = _candidates(good, defect)
    fr, esc = _rates(good, defect, thr)
    p_good = good.size / (good.size + defect.size)
    cost = cost_false_reject * fr * p_good + cost_escape * esc * (1 - p_good)
    best = int(np.lexsort((fr, cost))[0])
    return Calibration(float(thr[best]), "cost", good.size, defect.size, float(fr[best]), float(esc[best]),
                       {"cost_per_part": float(cost[best]), "cost_false_reject": cost_false_reject,
                        "cost_escape": cost_escape})


def fit_temperature(margins: np.ndarray, labels: np.ndarray, init: float = 100.0) -> float:
    """Temperature T minimising the log loss of sigmoid(T * margin) (temperature scaling)."""
    x = torch.as_tensor(np.asarray(margins, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    if x.numel() != y.numel() or x.numel() == 0 or y.min() == y.max():
        msg = "temperature fitting needs good and defect examples"
        raise ValueError(msg)
    log_t = torch.tensor(math.log(init), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(log_t.exp() * x, y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    value = float(log_t.detach().clamp(math.log(1e-2), math.log(1e3)).exp())
    return value
