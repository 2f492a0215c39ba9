"""A threshold from production: the good-score tail re-estimated from the parts the line judged OK (pure).

After a few hundred parts the station knows its good-score distribution far better than from the
few-shot set. But it only sees it **truncated**: a part is used only if it was judged OK with a
margin (score below ``cutoff = threshold - margin``), so that neither NG / FAULT parts nor the
near-threshold parts where unflagged defects hide can pull the estimate. The parts above the cutoff
are a mix of defects and good parts' tail, so they are not counted at all; the tail is fitted to the
parts below it by maximum likelihood of the truncated distribution, f(x) / F(cutoff), with the same
extreme-value family as the few-shot calibration (its shape :data:`inspector.decision.calibrate.TAIL_SHAPE`
with fewer than :data:`FREE_SHAPE_PARTS` parts, estimated from the parts with more).
The proposal's threshold is that fit's quantile at the target; its interval and the "now" estimate
of the live threshold come from a parametric bootstrap of the truncated fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from inspector.decision.calibrate import INTERVAL_LEVEL, TAIL_SHAPE, Calibration

# Fewest OK-with-margin parts a proposal is made from: the tail of a truncated fit needs hundreds.
MIN_PARTS = 100
# From this many parts the tail's shape is estimated too (within SHAPE_RANGE), not assumed: a threshold
# that rejects too much must be moved beyond the parts seen, where the shape decides where it lands.
FREE_SHAPE_PARTS = 300
SHAPE_RANGE = (-0.3, 0.5)
BOOTSTRAP_REPLICATES = 200


def _gev_terms(x: np.ndarray, loc: float, scale: float, shape: float) -> tuple[np.ndarray, np.ndarray]:
    """(log t, t^(-1/shape)) of the GEV at x; outside the support log t is nan."""
    z = (x - loc) / scale
    if abs(shape) < 1e-9:
        return -z, np.exp(-z)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t = 1.0 + shape * z
        log_t = np.where(t > 0, np.log(np.where(t > 0, t, 1.0)), np.nan)
        return -log_t / shape, np.exp(-log_t / shape)


def gev_logpdf(x: np.ndarray, loc: float, scale: float, shape: float) -> np.ndarray:
    """Log density of GEV(shape) (xi convention: > 0 heavy upper tail), closed form (scipy's is ~100x slower)."""
    neg_log_t_over_xi, power = _gev_terms(x, loc, scale, shape)  # -log(t)/xi, t^(-1/xi)
    return -math.log(scale) + (1.0 + shape) * neg_log_t_over_xi - power


def gev_logcdf(x: np.ndarray | float, loc: float, scale: float, shape: float) -> np.ndarray:
    _, power = _gev_terms(np.asarray(x, dtype=np.float64), loc, scale, shape)
    return -power


def gev_ppf(u: np.ndarray | float, loc: float, scale: float, shape: float) -> np.ndarray:
    y = -np.log(u)
    if abs(shape) < 1e-9:
        return loc - scale * np.log(y)
    return loc + scale * (y ** (-shape) - 1.0) / shape


@dataclass(frozen=True)
class TailFit:
    """A GEV fitted to scores seen only below ``cutoff`` (``free_shape``: the shape was estimated too)."""

    loc: float
    scale: float
    shape: float
    cutoff: float
    n: int
    free_shape: bool = False

    def false_reject(self, threshold: float) -> float:
        """Share of good parts (the whole distribution, not only those seen) at or above ``threshold``."""
        log_cdf = float(gev_logcdf(threshold, self.loc, self.scale, self.shape))
        return 1.0 if math.isnan(log_cdf) else float(-np.expm1(log_cdf))

    def quantile(self, level: float) -> float:
        return float(gev_ppf(level, self.loc, self.scale, self.shape))


def fit_truncated(scores: np.ndarray, cutoff: float, shape: float | None = TAIL_SHAPE) -> TailFit:
    """Maximum-likelihood GEV location / scale (and shape when ``shape`` is None) of scores all below ``cutoff``."""
    x = np.asarray(scores, dtype=np.float64)
    x = x[np.isfinite(x) & (x < cutoff)]
    if x.size < 3 or not np.ptp(x) > 0:
        msg = f"a production fit needs at least 3 distinct good scores below the cutoff {cutoff:.4g}, got {x.size}"
        raise ValueError(msg)
    start_shape = TAIL_SHAPE if shape is None else shape
    m0, v0 = stats.genextreme.stats(-start_shape, moments="mv")  # scipy's shape is -xi
    scale0 = float(np.std(x, ddof=1) / math.sqrt(float(v0)))
    start = [float(np.mean(x)) - scale0 * float(m0), math.log(scale0)]
    lo, hi = SHAPE_RANGE

    def unpack(params: np.ndarray) -> tuple[float, float, float]:
        xi = shape if shape is not None else lo + (hi - lo) / (1.0 + math.exp(-float(params[2])))
        return float(params[0]), math.exp(float(params[1])), xi

    def nll(params: np.ndarray) -> float:
        loc, scale, xi = unpack(params)
        log_mass = float(gev_logcdf(cutoff, loc, scale, xi))
        value = -(float(np.sum(gev_logpdf(x, loc, scale, xi))) - x.size * log_mass)
        return value if math.isfinite(value) else 1e300

    if shape is None:  # the shape's logit, starting from the assumed shape
        start.append(math.log((start_shape - lo) / (hi - start_shape)))
    res = optimize.minimize(nll, np.array(start), method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 6000})
    loc, scale, xi = unpack(res.x)
    return TailFit(loc, scale, xi, float(cutoff), int(x.size), free_shape=shape is None)


def _bootstrap(fit: TailFit, replicates: int, seed: int) -> list[TailFit]:
    """Refits of samples of the same size drawn from ``fit`` below its cutoff."""
    rng = np.random.default_rng(seed)
    mass = float(np.exp(gev_logcdf(fit.cutoff, fit.loc, fit.scale, fit.shape)))
    out = []
    for _ in range(replicates):
        u = rng.uniform(0.0, mass, fit.n)
        sample = gev_ppf(np.maximum(u, 1e-300), fit.loc, fit.scale, fit.shape)
        try:
            out.append(fit_truncated(sample, fit.cutoff, None if fit.free_shape else fit.shape))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class ProductionEstimate:
    """What the production parts say: the proposed threshold and how the live one does today."""

    calibration: Calibration  # method "production": the proposed threshold and its false-reject interval
    live_threshold: float
    live_false_reject: float  # estimated share of good parts the live threshold rejects
    live_interval: tuple[float, float]
    fit: TailFit


def propose_threshold(scores: np.ndarray, cutoff: float, target: float, live_threshold: float, *,
                      shape: float | None = TAIL_SHAPE, replicates: int = BOOTSTRAP_REPLICATES,
                      seed: int = 0) -> ProductionEstimate:
    """The threshold at ``target`` false rejects from OK-with-margin production scores (see the module doc).

    ``shape``: the tail shape to assume; from :data:`FREE_SHAPE_PARTS` parts below the cutoff it is
    estimated instead (``shape=None`` forces that).
    """
    if not 0.0 < target < 0.5:
        msg = f"target false-reject rate must be in (0, 0.5), got {target}"
        raise ValueError(msg)
    seen = np.asarray(scores, dtype=np.float64)
    if shape is not None and int(np.sum(np.isfinite(seen) & (seen < cutoff))) >= FREE_SHAPE_PARTS:
        shape = None
    fit = fit_truncated(seen, cutoff, shape)
    if fit.n < MIN_PARTS:
        msg = (f"only {fit.n} parts were judged OK with margin (below {cutoff:.4g}); a production threshold "
               f"needs at least {MIN_PARTS}")
        raise ValueError(msg)
    threshold = fit.quantile(1.0 - target)
    refits = _bootstrap(fit, replicates, seed)
    tail = (1.0 - INTERVAL_LEVEL) / 2
    fr_new = np.array([fit.false_reject(r.quantile(1.0 - target)) for r in refits])
    fr_live = np.array([r.false_reject(live_threshold) for r in refits])
    interval = tuple(float(v) for v in np.quantile(fr_new, [tail, 1.0 - tail]))
    live_interval = tuple(float(v) for v in np.quantile(fr_live, [tail, 1.0 - tail]))
    calibration = Calibration(
        threshold=float(threshold),
        method="production",
        n_good=fit.n,
        expected_false_reject=target,
        details={"estimator": "truncated GEV fit of OK-with-margin production parts", "cutoff": fit.cutoff,
                 "tail_shape": fit.shape, "tail_shape_estimated": fit.free_shape, "loc": fit.loc,
                 "scale": fit.scale},
        false_reject_interval=interval,  # type: ignore[arg-type]
        interval_level=INTERVAL_LEVEL,
        interval_method="parametric bootstrap of the truncated fit",
    )
    return ProductionEstimate(calibration, float(live_threshold), fit.false_reject(live_threshold),
                              live_interval, fit)  # type: ignore[arg-type]
