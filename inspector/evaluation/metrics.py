"""Exact anomaly-detection metrics (pure numpy/scipy maths, no I/O).

Image level: AUROC, average precision and F1-max, tie-correct and equal to scikit-learn's
``roc_auc_score``, ``average_precision_score`` and ``precision_recall_curve``.

Pixel level: AUROC over all pixels of all images, and AUPRO exactly as the official MVTec AD
evaluation code defines it (8-connected ground-truth regions, PRO averaged over all regions of
all images, every distinct threshold, trapezoid up to ``fpr_limit`` then divided by it). Both
sort the normal pixels' scores once and use ``np.searchsorted`` / cumulative sums, so ~10^8
pixels need about one float32 copy of the scores; :class:`PixelAccumulator` collects them
image by image so full-resolution maps need not all be held at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

_logger = logging.getLogger(__name__)

#: MVTec AD's official integration limit for AUPRO.
DEFAULT_FPR_LIMIT = 0.3
# 8-connectivity, as in MVTec AD's official ``compute_pro`` (scipy.ndimage.label, 3x3 ones).
_STRUCTURE = np.ones((3, 3), dtype=int)

METRIC_KEYS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_image_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (bool labels, float64 scores) after checking shapes, values and both classes."""
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        msg = f"labels and scores must be 1-D; got shapes {y.shape} and {s.shape}"
        raise ValueError(msg)
    if y.shape[0] != s.shape[0]:
        msg = f"labels and scores differ in length: {y.shape[0]} labels, {s.shape[0]} scores"
        raise ValueError(msg)
    if y.dtype != bool:
        bad = np.setdiff1d(np.unique(y), [0, 1])
        if bad.size:
            msg = f"labels must be 0 (good) or 1 (defect); got also {bad[:5].tolist()}"
            raise ValueError(msg)
    y = y.astype(bool)
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError) as exc:
        msg = f"scores must be numbers; got dtype {s.dtype}"
        raise ValueError(msg) from exc
    if not np.isfinite(s).all():
        msg = f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s) (NaN or inf)"
        raise ValueError(msg)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        missing = "defect (label 1)" if n_pos == 0 else "good (label 0)"
        msg = (f"image metrics need both good and defect images; there are no {missing} images "
               f"among {y.size}")
        raise ValueError(msg)
    return y, s


def _check_fpr_limit(fpr_limit: float) -> float:
    fpr_limit = float(fpr_limit)
    if not 0.0 < fpr_limit <= 1.0:
        msg = f"fpr_limit must be in (0, 1]; got {fpr_limit}"
        raise ValueError(msg)
    return fpr_limit


# --------------------------------------------------------------------------------------------
# image-level metrics
# --------------------------------------------------------------------------------------------
def _auroc_sorted(neg_sorted: np.ndarray, pos: np.ndarray) -> float:
    """AUROC = P(pos > neg) + 0.5 P(pos == neg), from ascending negatives (exact counts).

    Identical to the trapezoid area under the ROC curve with ties as diagonal segments
    (scikit-learn's ``roc_auc_score``).
    """
    below = np.searchsorted(neg_sorted, pos, side="left").sum(dtype=np.int64)
    below_or_tie = np.searchsorted(neg_sorted, pos, side="right").sum(dtype=np.int64)
    # Twice the Mann-Whitney U statistic, an exact integer; one division at the end.
    return float(int(below) + int(below_or_tie)) / (2.0 * pos.size * neg_sorted.size)


def _threshold_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tps, fps, thresholds) at every distinct score, thresholds descending; rule: score >= t."""
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted, dtype=np.int64)[last]
    fps = last + 1 - tps
    return tps, fps, s_sorted[last]


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, starting at (0, 0) with threshold +inf."""
    y, s = _check_image_inputs(labels, scores)
    tps, fps, thr = _threshold_counts(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def precision_recall_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at every distinct score, thresholds descending."""
    y, s = _check_image_inputs(labels, scores)
    tps, fps, thr = _threshold_counts(y, s)
    return tps / (tps + fps), tps / tps[-1], thr


def image_auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve of image scores (ties count one half, as in scikit-learn)."""
    y, s = _check_image_inputs(labels, scores)
    return _auroc_sorted(np.sort(s[~y]), s[y])


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (scikit-learn's)."""
    y, s = _check_image_inputs(labels, scores)
    tps, fps, _ = _threshold_counts(y, s)
    precision = tps / (tps + fps)
    recall_step = np.diff(tps, prepend=0) / tps[-1]
    return float(np.sum(recall_step * precision))


def f1_max(labels: Any, scores: Any) -> tuple[float, float]:
    """Best F1 over all thresholds and that threshold (defect iff score >= threshold).

    Among thresholds with equal F1 the lowest is returned (``np.argmax`` over scikit-learn's
    increasing thresholds).
    """
    y, s = _check_image_inputs(labels, scores)
    tps, fps, thr = _threshold_counts(y, s)
    f1 = 2.0 * tps / (tps + fps + tps[-1])  # 2TP / (2TP + FP + FN), FN = P - TP
    best = f1.size - 1 - int(np.argmax(f1[::-1]))
    return float(f1[best]), float(thr[best])


# --------------------------------------------------------------------------------------------
# pixel-level metrics
# --------------------------------------------------------------------------------------------
class PixelAccumulator:
    """Collects pixel scores image by image for exact pixel AUROC and AUPRO.

    :meth:`add` keeps a float32 copy of the map's normal pixels and, for the anomalous pixels,
    their scores and ``1 / size`` of their 8-connected ground-truth region. Nothing else of the
    map is kept, so a caller can drop each full-resolution map after adding it.
    """

    def __init__(self) -> None:
        self._neg: list[np.ndarray] = []
        self._pos: list[np.ndarray] = []
        self._pos_weight: list[np.ndarray] = []
        self._neg_sorted: np.ndarray | None = None
        self._pos_sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.n_images = 0
        self.n_regions = 0

    def add(self, mask: Any, anomaly_map: Any, name: str | None = None) -> None:
        """Add one image: ``mask`` (H, W), >0 = anomalous; ``anomaly_map`` (H, W) scores."""
        what = name if name is not None else f"image {self.n_images}"
        m = np.asarray(mask)
        a = np.asarray(anomaly_map)
        if m.ndim != 2 or a.ndim != 2:
            msg = f"{what}: mask and anomaly map must be 2-D; got shapes {m.shape} and {a.shape}"
            raise ValueError(msg)
        if m.shape != a.shape:
            msg = f"{what}: anomaly map shape {a.shape} differs from mask shape {m.shape}"
            raise ValueError(msg)
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            msg = f"{what}: anomaly map contains non-finite values (NaN or inf)"
            raise ValueError(msg)
        m = m > 0
        labeled, n_regions = ndimage.label(m, structure=_STRUCTURE)
        if n_regions:
            sizes = np.bincount(labeled.ravel(), minlength=n_regions + 1)
            self._pos.append(a[m])
            self._pos_weight.append(1.0 / sizes[labeled[m]])
        self._neg.append(a[~m])
        self.n_regions += int(n_regions)
        self.n_images += 1
        self._neg_sorted = None
        self._pos_sorted = None

    def _prepared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ascending normal scores, descending anomalous scores, their region weights)."""
        if self._neg_sorted is None:
            n_neg = sum(p.size for p in self._neg)
            if n_neg == 0:
                msg = "pixel metrics need normal pixels; every mask pixel is anomalous"
                raise ValueError(msg)
            if len(self._neg) == 1:
                neg = self._neg[0]
            else:
                # Move the pieces into one array, releasing each piece once copied.
                neg = np.empty(n_neg, dtype=np.float32)
                pieces, start = self._neg[::-1], 0
                self._neg.clear()
                while pieces:
                    piece = pieces.pop()
                    neg[start:start + piece.size] = piece
                    start += piece.size
                    del piece
            neg.sort()
            self._neg = [neg]
            self._neg_sorted = neg
        if self._pos_sorted is None:
            if not self._pos:
                msg = "pixel metrics need anomalous pixels; every mask is empty (all zeros)"
                raise ValueError(msg)
            pos = np.concatenate(self._pos)
            weight = np.concatenate(self._pos_weight)
            order = np.argsort(pos, kind="stable")[::-1]
            self._pos, self._pos_weight = [pos[order]], [weight[order]]
            self._pos_sorted = (self._pos[0], self._pos_weight[0])
        return self._neg_sorted, *self._pos_sorted

    def pixel_auroc(self) -> float:
        """AUROC over all pixels of all images added so far."""
        neg, pos, _ = self._prepared()
        return _auroc_sorted(neg, pos[::-1])

    def pro_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, pro) curve from (0, 0) to (1, 1), equal in area to the official MVTec curve.

        The official curve has one point per distinct score. Between two distinct anomalous
        scores only normal pixels change, so PRO is constant there and those points are
        collinear; this keeps, per distinct anomalous score ``v``, the points just above and at
        ``v``: (#normal > v, PRO(> v)) and (#normal >= v, PRO(>= v)).
        """
        neg, pos, weight = self._prepared()
        n_neg = neg.size
        first = np.r_[0, np.flatnonzero(np.diff(pos)) + 1]  # first index of each distinct value
        last = np.r_[first[1:], pos.size]  # one past its last index
        cum = np.r_[0.0, np.cumsum(weight)] / self.n_regions
        values = pos[first]
        fp_above = n_neg - np.searchsorted(neg, values, side="right")
        fp_at = n_neg - np.searchsorted(neg, values, side="left")
        fpr = np.empty(2 * values.size + 2)
        pro = np.empty_like(fpr)
        fpr[0], pro[0], fpr[-1], pro[-1] = 0.0, 0.0, 1.0, 1.0
        fpr[1:-1:2], fpr[2:-1:2] = fp_above / n_neg, fp_at / n_neg
        pro[1:-1:2], pro[2:-1:2] = cum[first], cum[last]
        np.clip(pro, None, 1.0, out=pro)  # as the official code: no value above 1 from rounding
        return fpr, pro

    def aupro(self, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
        """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit."""
        fpr_limit = _check_fpr_limit(fpr_limit)
        fpr, pro = self.pro_curve()
        return float(trapezoid_limited(fpr, pro, fpr_limit) / fpr_limit)


def trapezoid_limited(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) for x in [x[0], x_max], interpolating y linearly at x_max.

    ``x`` must be non-decreasing. Equal to ``trapezoid(x, y, x_max)`` of MVTec AD's official
    ``generic_util.py``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k = int(np.searchsorted(x, x_max, side="right"))  # x[:k] <= x_max < x[k]
    area = float(np.sum(0.5 * (y[1:k] + y[:k - 1]) * (x[1:k] - x[:k - 1])))
    if 0 < k < x.size and x[k - 1] < x_max:
        y_max = y[k - 1] + (y[k] - y[k - 1]) * (x_max - x[k - 1]) / (x[k] - x[k - 1])
        area += 0.5 * (y_max + y[k - 1]) * (x_max - x[k - 1])
    return float(area)


def _accumulate(masks: Iterable[Any], maps: Iterable[Any]) -> PixelAccumulator:
    def as_images(x: Any) -> Any:  # a list of (H, W) arrays, an (N, H, W) array or one (H, W) array
        if isinstance(x, np.ndarray):
            return [x] if x.ndim == 2 else x
        return list(x)

    masks, maps = as_images(masks), as_images(maps)
    if len(masks) != len(maps):
        msg = f"masks and maps differ in number: {len(masks)} masks, {len(maps)} maps"
        raise ValueError(msg)
    if len(masks) == 0:
        msg = "pixel metrics need at least one image; got no masks"
        raise ValueError(msg)
    acc = PixelAccumulator()
    for mask, amap in zip(masks, maps, strict=True):
        acc.add(mask, amap)
    return acc


def pixel_auroc(masks: Sequence[Any] | np.ndarray, maps: Sequence[Any] | np.ndarray) -> float:
    """Pixel AUROC over all pixels of all images; masks >0 = anomalous, maps as float32."""
    return _accumulate(masks, maps).pixel_auroc()


def aupro(masks: Sequence[Any] | np.ndarray, maps: Sequence[Any] | np.ndarray,
          fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD's)."""
    fpr_limit = _check_fpr_limit(fpr_limit)
    return _accumulate(masks, maps).aupro(fpr_limit)


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
def summarize(labels: Any, scores: Any, masks: Sequence[Any] | np.ndarray | PixelAccumulator | None,
              maps: Sequence[Any] | np.ndarray | None = None, *,
              fpr_limit: float = DEFAULT_FPR_LIMIT) -> dict[str, float | None]:
    """The five protocol metrics (:data:`METRIC_KEYS`); pixel ones are None when ``masks`` is None.

    ``masks`` may also be a filled :class:`PixelAccumulator` (then ``maps`` must be None).
    """
    out: dict[str, float | None] = {
        "image_auroc": image_auroc(labels, scores),
        "image_ap": average_precision(labels, scores),
        "image_f1_max": f1_max(labels, scores)[0],
        "pixel_auroc": None,
        "pixel_aupro": None,
    }
    if masks is None:
        return out
    if isinstance(masks, PixelAccumulator):
        if maps is not None:
            msg = "pass maps=None together with a PixelAccumulator"
            raise ValueError(msg)
        acc = masks
    else:
        if maps is None:
            msg = "masks were given without anomaly maps; pass both or neither"
            raise ValueError(msg)
        acc = _accumulate(masks, maps)
    n_labels = len(np.asarray(labels))
    if acc.n_images != n_labels:
        msg = f"{acc.n_images} masks/maps but {n_labels} image labels; they must match one to one"
        raise ValueError(msg)
    out["pixel_auroc"] = acc.pixel_auroc()
    out["pixel_aupro"] = acc.aupro(fpr_limit)
    return out
