"""What a threshold does on the stored samples: false-reject and escape rates, the slider's range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThresholdEstimate:
    threshold: float
    false_reject: float | None  # fraction of held-out good samples at or above the threshold (NG)
    escape: float | None  # fraction of defect samples below it (OK)
    n_good: int
    n_defect: int


def threshold_estimate(good: np.ndarray, defect: np.ndarray, threshold: float) -> ThresholdEstimate:
    """False-reject and escape rates on the stored samples' held-out fused scores (NG = score >= threshold)."""
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    fr = float(np.mean(good >= threshold)) if good.size else None
    esc = float(np.mean(defect < threshold)) if defect.size else None
    return ThresholdEstimate(float(threshold), fr, esc, int(good.size), int(defect.size))


def slider_range(good: np.ndarray, defect: np.ndarray, threshold: float) -> tuple[float, float]:
    """A range that shows every sample score and the current threshold, with a margin."""
    values = np.concatenate([np.asarray(good, float), np.asarray(defect, float), [threshold]])
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.15, 1e-3, abs(threshold) * 0.05)
    return lo - pad, hi + pad
