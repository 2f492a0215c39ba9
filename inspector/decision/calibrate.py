"""Decision thresholds and the zero-shot temperature, from good images alone or labelled data (pure).

Every :class:`Calibration` says how sure it is: ``false_reject_interval`` is a central
:data:`INTERVAL_LEVEL` interval of the false-reject rate the threshold will give on fresh good
parts, for the number of good parts it saw. How it is built depends on the estimator:

- **empirical quantile** (enough good parts): the threshold is (between) order statistics of the
  good scores, and the coverage F(X_(r)) of the r-th smallest of n exchangeable scores is
  Beta(r, n - r + 1) for *any* continuous score distribution. The interval is therefore exact and
  distribution-free (for the interpolated quantile we take the outer bounds of its two order statistics);
- **GEV tail fit** (too few parts to see the tail): the threshold is a quantile of a generalised
  extreme-value fit (peak-of-map scores are maxima; shape :data:`TAIL_SHAPE`, 0 = Gumbel). A
  parametric bootstrap over the tail shapes :data:`TAIL_SHAPES` (draw n scores, refit, read the
  realised false-reject rate of each refitted threshold)
  sets the quantile level so that the threshold rejects the target on average (:func:`tail_level`;
  the plain plug-in quantile rejects more) and gives a model-based interval. A few parts cannot
  show how heavy the tail is (the benchmark's textures have 30 % realised false rejects from
  thresholds whose Gumbel interval ended at 16 %), so the reported interval is the union of that
  and the distribution-free bounds of the order statistics around the threshold
  (:func:`distribution_free_interval`): honest whatever the tail, wide with few parts. Both parts
  are kept in the details; ``benchmarks/calibration.py`` measures how often the realised rate falls inside;
- **f1 / cost** (threshold chosen on labelled scores): the Clopper-Pearson interval of the
  calibration set's own false-reject count, optimistic by as much as the selection fits the data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

# Central probability of the reported false-reject interval.
INTERVAL_LEVEL = 0.9
# Parametric bootstrap replicates of the tail fit (fixed seed: the same data give the same interval).
BOOTSTRAP_REPLICATES = 1000
# The tail fit's bias correction may shrink the tail probability it aims at by at most this factor. With very few
# good scores (n <= 5 at a 1 % target, n <= 3 at 5 %) the mean false-reject rate of the refits is dominated by
# refits whose spread is near zero, and only a level within ~1e-6 of 1 brings it down to the target: a threshold
# some ten standard deviations above the good scores (1 - 1e-9 at n = 2), which passes every defect. Capped,
# the threshold rejects more than the target on average, and the calibration says so (details and interval).
MAX_TAIL_CORRECTION = 10.0
# The good-score tail with too few parts to see it: a GEV (generalised extreme value: peak-of-map
# scores are maxima) of shape xi = TAIL_SHAPE fitted by moments, its level bias-corrected over the
# tails in TAIL_SHAPES. Measured (benchmarks/calibration.py, BENCHMARKS.md): the fused scores of the
# benchmark's lines range from lighter than Gumbel (xi = 0) to heavier (skewness 0.3-2.2). Assuming
# heavier tails (fit 0.1, correction over 0-0.3) brought woven textures' mean realised rate at 8 parts
# from 12 to 10.5 % but put thresholds from 4-8 parts far above the planted defects (the training
# gate's escape rates went to 90 %): the Gumbel stays, and the interval carries the heavy-tail doubt
# (its distribution-free part).
TAIL_SHAPE = 0.0
TAIL_SHAPES = (0.0,)


@dataclass(frozen=True)
class Calibration:
    threshold: float
    method: str
    n_good: int
    n_defect: int = 0
    expected_false_reject: float | None = None
    expected_escape: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Central INTERVAL_LEVEL interval of the false-reject rate on fresh good parts (see the module doc).
    false_reject_interval: tuple[float, float] | None = None
    interval_level: float | None = None
    interval_method: str | None = None

    def to_record(self) -> dict[str, Any]:
        record = {k: v for k, v in asdict(self).items() if v is not None}
        if self.false_reject_interval is not None:
            record["false_reject_interval"] = [float(v) for v in self.false_reject_interval]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_record` (a YAML or JSON record; unknown keys are ignored)."""
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        interval = known.get("false_reject_interval")
        if interval is not None:
            known["false_reject_interval"] = (float(interval[0]), float(interval[1]))
        return cls(**known)

    def describe(self) -> str:
        """One line for people, e.g. 'target 5 %: 1.2-14.0 % false rejects with 8 good parts (90 % interval)'."""
        if self.false_reject_interval is None:
            return f"threshold {self.threshold:.4g} by {self.method} from {self.n_good} good parts"
        lo, hi = self.false_reject_interval
        level = round(100 * (self.interval_level or INTERVAL_LEVEL))
        head = (f"target {_pct(self.expected_false_reject)}" if self.method == "false_reject"
                else f"{self.method}: {_pct(self.expected_false_reject)} on the calibration set")
        text = (f"{head}: {_pct(lo, unit=False)}-{_pct(hi)} false rejects with {self.n_good} good parts "
                f"({level} % interval)")
        model = self.details.get("model_interval")
        if model is not None and tuple(model) != tuple(self.false_reject_interval):
            text += f"; {_pct(model[0], unit=False)}-{_pct(model[1])} if the tail is extreme-value-like"
        return text


def _pct(value: float | None, unit: bool = True) -> str:
    if value is None:
        return "?"
    v = 100.0 * value
    text = f"{v:.2g}" if v < 1 else f"{v:.1f}"
    return f"{text} %" if unit else text


def order_statistic_interval(n: int, q: float, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """False-reject interval of numpy's linear ``quantile(scores, q)`` over n exchangeable good scores.

    The linear quantile lies between the order statistics r_lo = floor(h) and r_hi = ceil(h)
    (1-based, h = (n - 1) q + 1); the false-reject rate of the r-th smallest is Beta(n - r + 1, r),
    whatever the score distribution. We return the lower bound of r_hi's and the upper bound of
    r_lo's central interval, which covers the interpolated threshold at least at ``level``.
    """
    h = (n - 1) * q + 1
    r_lo, r_hi = max(1, math.floor(h)), min(n, math.ceil(h))
    tail = (1.0 - level) / 2
    lo = float(stats.beta.ppf(tail, n - r_hi + 1, r_hi))
    hi = float(stats.beta.ppf(1.0 - tail, n - r_lo + 1, r_lo))
    return lo, hi


def _standard_gev_ppf(u: np.ndarray | float, shape: float) -> np.ndarray:
    """Quantile of the standard GEV(shape) (xi > 0: heavy upper tail; 0: Gumbel), closed form."""
    y = -np.log(u)
    return -np.log(y) if shape == 0.0 else (y ** (-shape) - 1.0) / shape


def _standard_gev_sf(z: np.ndarray, shape: float) -> np.ndarray:
    """1 - CDF of the standard GEV(shape) at z (0 above a light tail's end, 1 below a heavy tail's start)."""
    if shape == 0.0:
        return -np.expm1(-np.exp(-z))
    t = 1.0 + shape * z
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inside = -np.expm1(-np.power(np.maximum(t, 1e-300), -1.0 / shape))
    return np.where(t > 0, inside, 1.0 if shape > 0 else 0.0)


def _standard_gev_moments(shape: float) -> tuple[float, float]:
    mean, var = stats.genextreme.stats(-shape, moments="mv")  # scipy's shape is -xi
    return float(mean), math.sqrt(float(var))


def _tail_fit(scores: np.ndarray, shape: float = TAIL_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """GEV(shape) (location, scale) by moments along the last axis."""
    mean0, std0 = _standard_gev_moments(shape)
    scale = np.std(scores, axis=-1, ddof=1) / std0
    return np.mean(scores, axis=-1) - scale * mean0, scale


class _TailBootstrap:
    """What the tail fit of n scores does on populations like them: refits of parametric resamples.

    For every plausible tail (:data:`TAIL_SHAPES`, each GEV matched to the scores' mean and spread)
    draw ``replicates`` samples of n, refit each with :data:`TAIL_SHAPE` as the calibration does, and
    read the false-reject rate of each refitted threshold under the population it came from. The
    draws are fixed by ``seed`` (the same scores always give the same answer) and shared across
    levels (a smooth bisection).
    """

    def __init__(self, scores: np.ndarray, replicates: int, seed: int) -> None:
        u = np.random.default_rng(seed).uniform(1e-12, 1.0, size=(replicates, scores.size))
        self.valid = bool(np.std(scores, ddof=1) > 0)
        self.arms = []
        for truth in TAIL_SHAPES:
            loc, scale = _tail_fit(scores, truth)
            sims = loc + scale * _standard_gev_ppf(u, truth)
            loc_b, scale_b = _tail_fit(sims)
            self.arms.append((truth, float(loc), float(max(scale, 1e-300)), loc_b, scale_b,
                              np.nextafter(sims.min(axis=1), np.inf)))

    def false_rejects(self, level: float) -> np.ndarray:
        """Pooled over the plausible tails: the realised false-reject rate of each refit's threshold at ``level``."""
        z = float(_standard_gev_ppf(level, TAIL_SHAPE))
        out = []
        for truth, loc, scale, loc_b, scale_b, floor in self.arms:
            thr = np.maximum(loc_b + scale_b * z, floor)
            out.append(_standard_gev_sf((thr - loc) / scale, truth))
        return np.concatenate(out)


def max_corrected_level(q: float) -> float:
    """The highest quantile level the bias correction may use for the plug-in level ``q``."""
    return 1.0 - (1.0 - q) / MAX_TAIL_CORRECTION


def tail_level(scores: np.ndarray, q: float, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> float:
    """The quantile level at which the tail-fit threshold of n scores rejects 1 - q on average.

    Plugging a fit from a few scores into the quantile rejects more than 1 - q on average (the
    false-reject rate is convex in the threshold, the fit's noise spreads the threshold both ways,
    and a few parts rarely show a heavy tail). The parametric bootstrap over the plausible tails
    finds the level whose refits reject 1 - q on average (a bootstrap bias correction); ``q`` itself
    when the plug-in is not optimistic, and at most :func:`max_corrected_level` (a bounded correction).
    """
    boot = _TailBootstrap(np.asarray(scores, dtype=np.float64), replicates, seed)
    return _corrected_level(boot, q)


def _corrected_level(boot: _TailBootstrap, q: float) -> float:
    target = 1.0 - q
    if not boot.valid or boot.false_rejects(q).mean() <= target:
        return q
    cap = max_corrected_level(q)
    if boot.false_rejects(cap).mean() > target:
        return cap  # too few scores to correct fully (see MAX_TAIL_CORRECTION)
    lo, hi = q, cap
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if boot.false_rejects(mid).mean() > target:
            lo = mid
        else:
            hi = mid
    return hi


def tail_bootstrap_interval(scores: np.ndarray, level_q: float, level: float = INTERVAL_LEVEL,
                            replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> tuple[float, float]:
    """Central ``level`` interval of the false-reject rate of the tail-fit threshold at quantile ``level_q``.

    The model-based interval: the realised rates of :class:`_TailBootstrap`'s refits, pooled over the
    plausible tails. (0, 1) for constant scores (nothing says where the tail is).
    """
    boot = _TailBootstrap(np.asarray(scores, dtype=np.float64), replicates, seed)
    return _model_interval(boot, level_q, level)


def _model_interval(boot: _TailBootstrap, level_q: float, level: float) -> tuple[float, float]:
    if not boot.valid:
        return 0.0, 1.0
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(boot.false_rejects(level_q), [tail, 1.0 - tail])
    return float(lo), float(hi)


def distribution_free_interval(scores: np.ndarray, threshold: float,
                               level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Bounds on the false-reject rate of ``threshold`` that hold for ANY continuous score distribution.

    The threshold lies between two order statistics of the n good scores; the false-reject rate of
    the r-th smallest is Beta(n - r + 1, r) whatever the distribution, so the rate of the threshold is
    at most the upper bound of the largest score below it and at least the lower bound of the
    smallest score at or above it (0 when it is above every score, 1 when below every one).
    """
    x = np.sort(np.asarray(scores, dtype=np.float64))
    n = x.size
    tail = (1.0 - level) / 2
    below = int(np.searchsorted(x, threshold, side="left"))  # scores strictly below the threshold
    hi = 1.0 if below == 0 else float(stats.beta.ppf(1.0 - tail, n - below + 1, below))
    lo = 0.0 if below == n else float(stats.beta.ppf(tail, n - below, below + 1))
    return lo, hi


def clopper_pearson(k: int, n: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a rate seen as k events in n trials."""
    tail = (1.0 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return lo, hi


def threshold_for_false_reject(good_scores: np.ndarray, target: float) -> Calibration:
    """Threshold so that a fraction ``target`` of good parts would be rejected.

    With enough samples in the tail (n * target >= 5) the empirical quantile is used; below that
    the tail is extrapolated from a GEV fit, since a handful of good parts cannot show a 1 %
    quantile directly. The interval of the realised rate comes with it (see the module doc).
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
    extra: dict[str, Any] = {}
    if scores.size * target >= 5:
        threshold, how, level = float(np.quantile(scores, q, method="linear")), "empirical quantile", q
        capped = False
        interval, interval_method = order_statistic_interval(scores.size, q), "order statistic (Beta)"
    else:
        boot = _TailBootstrap(scores, BOOTSTRAP_REPLICATES, seed=0)
        level = _corrected_level(boot, q)  # bias-corrected: the estimator rejects `target` on average
        loc, scale = _tail_fit(scores)
        threshold, how = float(loc + scale * _standard_gev_ppf(level, TAIL_SHAPE)), "GEV tail fit"
        threshold = max(threshold, float(np.nextafter(scores.min(), np.inf)))
        capped = level >= max_corrected_level(q)
        model = _model_interval(boot, level, INTERVAL_LEVEL)
        free = distribution_free_interval(scores, threshold)
        # A handful of parts cannot show how heavy the tail is: the reported interval is the union of
        # the model's and the distribution-free bounds, so it holds whatever the tail (benchmarks/calibration.py).
        interval = (min(model[0], free[0]), max(model[1], free[1]))
        interval_method = "distribution-free order-statistic bounds, widened by a parametric bootstrap of the tail fit"
        extra = {"tail_shape": TAIL_SHAPE, "model_interval": list(model), "distribution_free_interval": list(free)}
    threshold = max(threshold, float(np.nextafter(scores.min(), np.inf)))
    observed = float(np.mean(scores >= threshold))
    return Calibration(
        threshold=threshold,
        method="false_reject",
        n_good=int(scores.size),
        expected_false_reject=target,
        # capped: too few good parts for the bias correction; the threshold rejects more than the target on average
        details={"estimator": how, "quantile_level": level, "bias_correction_capped": capped,
                 "observed_false_reject_on_calibration_set": observed,
                 "good_mean": float(scores.mean()), "good_std": float(scores.std(ddof=1)), **extra},
        false_reject_interval=interval,
        interval_level=INTERVAL_LEVEL,
        interval_method=interval_method,
    )


def _selected_interval(good: np.ndarray, fr: float) -> dict[str, Any]:
    interval = clopper_pearson(round(fr * good.size), good.size)
    return {"false_reject_interval": interval, "interval_level": INTERVAL_LEVEL,
            "interval_method": "Clopper-Pearson on the calibration set (optimistic: threshold chosen on it)"}


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
                       {"f1": float(f1[best])}, **_selected_interval(good, float(fr[best])))


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
                        "cost_escape": cost_escape}, **_selected_interval(good, float(fr[best])))


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
