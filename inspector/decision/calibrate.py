"""Decision thresholds and the zero-shot temperature, from good images alone or labelled data (pure).

Every :class:`Calibration` says how sure it is: ``false_reject_interval`` is a central
:data:`INTERVAL_LEVEL` interval of the false-reject rate the threshold will give on fresh good
parts, for the number of good parts it saw. How it is built depends on the estimator:

- **empirical quantile** (enough good parts): the threshold is (between) order statistics of the
  good scores, and the coverage F(X_(r)) of the r-th smallest of n exchangeable scores is
  Beta(r, n - r + 1) for *any* continuous score distribution. The interval is therefore exact and
  distribution-free (for the interpolated quantile we take the outer bounds of its two order statistics);
- **Gumbel tail fit** (too few parts to see the tail): no distribution-free interval can reach
  below 1 / (n + 1), so we use a parametric bootstrap of the fit: draw n scores from the fitted
  Gumbel, refit, and read the false-reject rate of each refitted threshold under the first fit. It
  carries the estimation noise of the fit but not a wrong model; the benchmark
  (``benchmarks/calibration.py``) measures how often the realised rate falls inside. The same
  bootstrap sets the quantile level so that the threshold rejects the target on average
  (:func:`gumbel_level`): the plain plug-in quantile rejects more;
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

_EULER_GAMMA = 0.5772156649015329
# Central probability of the reported false-reject interval.
INTERVAL_LEVEL = 0.9
# Parametric bootstrap replicates of the Gumbel fit (fixed seed: the same data give the same interval).
BOOTSTRAP_REPLICATES = 1000
# The Gumbel bias correction may shrink the tail probability it aims at by at most this factor. With very few
# good scores (n <= 5 at a 1 % target, n <= 3 at 5 %) the mean false-reject rate of the refits is dominated by
# refits whose spread is near zero, and only a level within ~1e-6 of 1 brings it down to the target: a threshold
# some ten standard deviations above the good scores (1 - 1e-9 at n = 2), which passes every defect. Capped,
# the threshold rejects more than the target on average, and the calibration says so (details and interval).
MAX_TAIL_CORRECTION = 10.0
# Shape of the extreme-value family the good-score tail is fitted with (GEV xi; 0 = Gumbel).
TAIL_SHAPE = 0.0


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
        return (f"{head}: {_pct(lo, unit=False)}-{_pct(hi)} false rejects with {self.n_good} good parts "
                f"({level} % interval)")


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


def _gumbel_fit(scores: np.ndarray) -> tuple[float, float]:
    """(mu, beta) by moments along the last axis."""
    std = np.std(scores, axis=-1, ddof=1)
    beta = std * math.sqrt(6.0) / math.pi
    return np.mean(scores, axis=-1) - _EULER_GAMMA * beta, beta


def _bootstrap_fits(scores: np.ndarray, replicates: int, seed: int) -> tuple[float, float, np.ndarray, ...]:
    """The moment fit (mu, beta) and ``replicates`` refits on samples of the same size drawn from it."""
    mu, beta = _gumbel_fit(np.asarray(scores, dtype=np.float64))
    rng = np.random.default_rng(seed)
    sims = rng.gumbel(mu, max(beta, 1e-300), size=(replicates, scores.size))
    mu_b, beta_b = _gumbel_fit(sims)
    return float(mu), float(beta), mu_b, beta_b, np.nextafter(sims.min(axis=1), np.inf)


def _refit_false_rejects(level: float, mu: float, beta: float, mu_b: np.ndarray, beta_b: np.ndarray,
                         floor: np.ndarray) -> np.ndarray:
    """False-reject rate, under the fit (mu, beta), of each refit's threshold at quantile ``level``."""
    thr = np.maximum(mu_b - beta_b * math.log(-math.log(level)), floor)
    return 1.0 - np.exp(-np.exp(-(thr - mu) / beta))


def max_corrected_level(q: float) -> float:
    """The highest quantile level the bias correction may use for the plug-in level ``q``."""
    return 1.0 - (1.0 - q) / MAX_TAIL_CORRECTION


def gumbel_level(scores: np.ndarray, q: float, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> float:
    """The quantile level at which the Gumbel-moment threshold of n scores rejects 1 - q on average.

    Plugging a fit from a few scores into the quantile rejects more than 1 - q on average (the
    false-reject rate is convex in the threshold, and the fit's noise spreads the threshold both
    ways). The parametric bootstrap finds the level whose refits reject 1 - q on average (a
    bootstrap bias correction); ``q`` itself when the plug-in is not optimistic, and at most
    :func:`max_corrected_level` (a bounded correction).
    """
    mu, beta, mu_b, beta_b, floor = _bootstrap_fits(scores, replicates, seed)
    target = 1.0 - q
    if not beta > 0 or _refit_false_rejects(q, mu, beta, mu_b, beta_b, floor).mean() <= target:
        return q
    cap = max_corrected_level(q)
    if _refit_false_rejects(cap, mu, beta, mu_b, beta_b, floor).mean() > target:
        return cap  # too few scores to correct fully (see MAX_TAIL_CORRECTION)
    lo, hi = q, cap
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _refit_false_rejects(mid, mu, beta, mu_b, beta_b, floor).mean() > target:
            lo = mid
        else:
            hi = mid
    return hi


def gumbel_bootstrap_interval(scores: np.ndarray, q: float, level: float = INTERVAL_LEVEL,
                              replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> tuple[float, float]:
    """False-reject interval of the Gumbel-moment threshold at quantile ``q`` by a parametric bootstrap of the fit.

    Draw ``replicates`` samples of n scores from the Gumbel fitted to ``scores``, refit each and
    set its threshold; the false-reject rate of that threshold under the first fit is one draw of
    what the estimator gives on this population. Returns the central ``level`` interval.
    """
    mu, beta, mu_b, beta_b, floor = _bootstrap_fits(scores, replicates, seed)
    if not beta > 0:
        return 0.0, 1.0  # constant scores: nothing says where the tail is
    fr = _refit_false_rejects(q, mu, beta, mu_b, beta_b, floor)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(fr, [tail, 1.0 - tail])
    return float(lo), float(hi)


def clopper_pearson(k: int, n: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a rate seen as k events in n trials."""
    tail = (1.0 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return lo, hi


def _gumbel_quantile(scores: np.ndarray, q: float) -> float:
    """Quantile of a Gumbel fitted by moments: peak-of-map scores are maxima, hence extreme-value."""
    mu, beta = _gumbel_fit(scores)
    return float(mu - beta * math.log(-math.log(q)))


def threshold_for_false_reject(good_scores: np.ndarray, target: float) -> Calibration:
    """Threshold so that a fraction ``target`` of good parts would be rejected.

    With enough samples in the tail (n * target >= 5) the empirical quantile is used; below that
    the tail is extrapolated from a Gumbel fit, since a handful of good parts cannot show a 1 %
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
    if scores.size * target >= 5:
        threshold, how, level = float(np.quantile(scores, q, method="linear")), "empirical quantile", q
        capped = False
        interval, interval_method = order_statistic_interval(scores.size, q), "order statistic (Beta)"
    else:
        level = gumbel_level(scores, q)  # bias-corrected: the estimator rejects `target` on average
        threshold, how = _gumbel_quantile(scores, level), "Gumbel tail fit"
        capped = level >= max_corrected_level(q)
        interval, interval_method = gumbel_bootstrap_interval(scores, level), "parametric bootstrap of the Gumbel fit"
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
                 "good_mean": float(scores.mean()), "good_std": float(scores.std(ddof=1))},
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
