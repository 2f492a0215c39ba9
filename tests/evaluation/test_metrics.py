"""Metrics against hand-computed values, scikit-learn and a slow per-threshold AUPRO reference."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics as skm

from inspector.evaluation.metrics import (
    METRIC_KEYS,
    PixelAccumulator,
    aupro,
    average_precision,
    f1_max,
    image_auroc,
    pixel_auroc,
    precision_recall_curve,
    roc_curve,
    summarize,
    trapezoid_limited,
)

# --------------------------------------------------------------------------------------------
# image level
# --------------------------------------------------------------------------------------------
# Case A (no ties): descending 0.8(D) 0.4(G) 0.35(D) 0.1(G).
#   pairs defect > good: 0.8 beats both, 0.35 beats 0.1 -> 3 of 4 -> AUROC 0.75
#   (P, R) per threshold: (1, 1/2) (1/2, 1/2) (2/3, 1) (1/2, 1) -> AP = 1/2*1 + 1/2*2/3 = 5/6
#   F1 = 2TP/(TP+FP+P): 2/3, 1/2, 4/5, 2/3 -> F1-max 0.8 at score >= 0.35
CASE_A = ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75, 5 / 6, 0.8, 0.35)
# Case B (ties): good {0.5, 0.2}, defect {0.5, 0.9, 0.2}.
#   pairs: 0.9 -> 2, 0.5 -> 1 + 0.5 (tie), 0.2 -> 0.5 (tie) -> 4 / 6
#   thresholds 0.9: TP1 FP0 (P 1, R 1/3); 0.5: TP2 FP1 (2/3, 2/3); 0.2: TP3 FP2 (3/5, 1)
#   AP = 1/3 (1 + 2/3 + 3/5) = 34/45; F1: 2/4, 4/6, 6/8 -> 0.75 at score >= 0.2
CASE_B = ([0, 1, 0, 1, 1], [0.5, 0.5, 0.2, 0.9, 0.2], 4 / 6, 34 / 45, 0.75, 0.2)
# Case C (all tied): AUROC 0.5, AP = prevalence 2/3, F1 = 2*2/(2+1+2) = 0.8
CASE_C = ([1, 0, 1], [3.0, 3.0, 3.0], 0.5, 2 / 3, 0.8, 3.0)


@pytest.mark.parametrize("case", [CASE_A, CASE_B, CASE_C], ids=["distinct", "ties", "all-tied"])
def test_image_metrics_hand_computed(case):
    labels, scores, auroc, ap, f1, thr = case
    assert image_auroc(labels, scores) == pytest.approx(auroc, abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(ap, abs=1e-12)
    assert f1_max(labels, scores) == pytest.approx((f1, thr), abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_image_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    # Few distinct values -> many ties, and class-dependent shift.
    scores = rng.integers(0, 6, n) / 5 + labels * rng.integers(0, 2, n) * 0.2
    assert image_auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-12)
    p, r, t = skm.precision_recall_curve(labels, scores)
    f1_sk = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-300)
    f1, thr = f1_max(labels, scores)
    assert f1 == pytest.approx(f1_sk.max(), abs=1e-12)
    assert f1_sk[np.flatnonzero(t == thr)[0]] == pytest.approx(f1_sk.max(), abs=1e-12)
    assert thr == t[int(np.argmax(f1_sk))]  # lowest threshold among equal F1


def test_image_metrics_continuous_scores_match_sklearn():
    rng = np.random.default_rng(42)
    labels = rng.integers(0, 2, 1000)
    scores = rng.normal(size=1000) + labels
    assert image_auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-12)


def test_curves_match_sklearn():
    labels, scores = CASE_B[0], CASE_B[1]
    fpr, tpr, thr = roc_curve(labels, scores)
    fpr_sk, tpr_sk, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk)
    np.testing.assert_allclose(tpr, tpr_sk)
    assert np.isinf(thr[0])
    p, r, t = precision_recall_curve(labels, scores)
    p_sk, r_sk, t_sk = skm.precision_recall_curve(labels, scores)
    np.testing.assert_allclose(p, p_sk[:-1][::-1])
    np.testing.assert_allclose(r, r_sk[:-1][::-1])
    np.testing.assert_allclose(t, t_sk[::-1])


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "no defect"),
        ([1, 1], [0.1, 0.2], "no good"),
        ([0, 1], [0.1], "differ in length"),
        ([0, 2], [0.1, 0.2], "0 \\(good\\) or 1"),
        ([0, 1], [0.1, np.nan], "non-finite"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_image_metrics_reject_bad_input(labels, scores, match):
    for fn in (image_auroc, average_precision, f1_max):
        with pytest.raises(ValueError, match=match):
            fn(labels, scores)


def test_bool_labels_accepted():
    assert image_auroc(np.array([False, True]), [0.0, 1.0]) == 1.0


# --------------------------------------------------------------------------------------------
# pixel AUROC
# --------------------------------------------------------------------------------------------
def test_pixel_auroc_hand_computed():
    # anomalous {0.9, 0.5}, normal {0.5, 0.1, 0.7}: 0.9 beats 3, 0.5 beats 0.1 and ties 0.5 -> 4.5/6
    masks = [np.array([[1, 0], [0, 0]]), np.array([[0, 255]])]
    maps = [np.array([[0.9, 0.5], [0.1, 0.7]]), np.array([[0.5, 0.5]])]
    assert pixel_auroc(masks, maps) == pytest.approx(0.75, abs=1e-12)
    # one (H, W) array is one image
    assert pixel_auroc(masks[0], maps[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_pixel_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    masks = [rng.random((17, 23)) > 0.85 for _ in range(4)]
    masks[0][0, 0] = True
    maps = [(rng.integers(0, 12, m.shape) + 4 * m * rng.random(m.shape)).astype(np.float32) for m in masks]
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([a.ravel() for a in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert pixel_auroc(np.stack(masks), np.stack(maps)) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_pixel_metrics_reject_bad_input():
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    with pytest.raises(ValueError, match="differs from mask shape"):
        pixel_auroc([m], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="differ in number"):
        pixel_auroc([m, m], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="anomalous pixels"):
        pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="normal pixels"):
        aupro([np.ones((4, 4))], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="non-finite"):
        pixel_auroc([m], [np.full((4, 4), np.nan)])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([m], [m.astype(float)], fpr_limit=0.0)


# --------------------------------------------------------------------------------------------
# AUPRO
# --------------------------------------------------------------------------------------------
def _reference_aupro(masks, maps, fpr_limit):
    """Slow: one (FPR, PRO) point per distinct threshold, then MVTec's generic_util.trapezoid."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(np.asarray(m) > 0, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    maps = [np.asarray(a, dtype=np.float32) for a in maps]
    neg = np.concatenate([a[np.asarray(m) == 0] for m, a in zip(masks, maps)])
    fprs, pros = [0.0], [0.0]
    for t in np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]:
        fprs.append(float(np.mean(neg >= t)))
        pros.append(float(np.mean([np.mean(maps[i][r] >= t) for i, r in regions])))
    x, y = np.array([*fprs, 1.0]), np.array([*pros, 1.0])
    correction = 0.0
    if fpr_limit not in x:
        ins = bisect.bisect(x, fpr_limit)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (fpr_limit - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (fpr_limit - x[ins - 1])
    keep = x <= fpr_limit
    x, y = x[keep], y[keep]
    return (np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction) / fpr_limit


def test_aupro_perfect_map_is_one():
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:5] = 255
    mask[6, 6] = 255
    assert aupro([mask, np.zeros((8, 8))], [mask / 255.0, np.zeros((8, 8))]) == pytest.approx(1.0)


@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_constant_map(limit):
    # One threshold: curve (0,0) -> (1,1); area up to L is L^2/2, normalised L/2.
    mask = np.zeros((5, 5))
    mask[1:3, 1:3] = 1
    assert aupro([mask], [np.full((5, 5), 0.7)], fpr_limit=limit) == pytest.approx(limit / 2)


def test_aupro_hand_computed_curve():
    # One row; regions A = {0}, B = {3, 4}; normal pixels 1, 2, 5, 6, 7.
    mask = np.array([[1, 0, 0, 1, 1, 0, 0, 0]])
    amap = np.array([[0.9, 0.85, 0.5, 0.8, 0.2, 0.1, 0.1, 0.0]])
    # Points (FPR, PRO): t=.9 (0, .5)  t=.85 (.2, .5)  t=.8 (.2, .75)  t=.5 (.4, .75)
    #                    t=.2 (.4, 1)  t=.1 (.8, 1)   t=0 (1, 1)
    # up to 0.3: .2 * .5 + .1 * .75 = .175 -> / .3
    assert aupro([mask], [amap]) == pytest.approx(0.175 / 0.3)
    # up to 1: .1 + .2 * .75 + .6 * 1 = .85
    assert aupro([mask], [amap], fpr_limit=1.0) == pytest.approx(0.85)
    # A normal pixel tied with region B's 0.8: t=.8 gives (.4, .75), a sloped segment from
    # (.2, .5); PRO at .3 interpolates to .625 -> .1 + .1 * (.5 + .625) / 2 = .15625
    amap2 = amap.copy()
    amap2[0, 2] = 0.8
    assert aupro([mask], [amap2]) == pytest.approx(0.15625 / 0.3)


def test_aupro_regions_are_8_connected():
    # Pixels (0,0), (1,1), (1,2) form ONE region with 8-connectivity (two with 4-connectivity).
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = True
    amap = np.zeros((3, 3))
    amap[0, 0] = 1.0
    # Curve (0,0) (0,1/3) (1,1): PRO(.3) = 1/3 + .3 * 2/3 = .5333; area .3 * (1/3 + .5333) / 2
    assert aupro([mask], [amap]) == pytest.approx(13 / 30)  # 4-connectivity would give 0.575


def test_aupro_averages_over_regions_not_images():
    # Image 1 has two regions, image 2 one; only image 2's region is detected -> PRO 1/3.
    m1 = np.zeros((6, 6), bool)
    m1[0, 0] = m1[4, 4] = True
    m2 = np.zeros((6, 6), bool)
    m2[2, 2] = True
    a1, a2 = np.zeros((6, 6)), m2.astype(float)
    acc = PixelAccumulator()
    acc.add(m1, a1)
    acc.add(m2, a2)
    fpr, pro = acc.pro_curve()
    assert acc.n_regions == 3
    assert pro[np.flatnonzero(fpr == 0.0).max()] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("limit", [0.3, 0.1, 1.0])
def test_aupro_matches_slow_reference(seed, limit):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((12, 15), np.uint8)
        for _ in range(int(rng.integers(0, 4))):
            y, x = rng.integers(0, 10), rng.integers(0, 12)
            m[y:y + rng.integers(1, 4), x:x + rng.integers(1, 5)] = 255
        masks.append(m)
        # Coarse values -> many ties within and across normal / anomalous pixels.
        maps.append((rng.integers(0, 8, m.shape) + (m > 0) * rng.integers(0, 5, m.shape)).astype(np.float32))
    if not any(m.any() for m in masks):
        masks[0][5, 5] = 255
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(_reference_aupro(masks, maps, limit),
                                                               abs=1e-12)


def test_aupro_continuous_maps_match_reference():
    rng = np.random.default_rng(7)
    masks = [np.zeros((20, 20), bool) for _ in range(2)]
    masks[0][3:9, 4:7] = True
    masks[1][10:12, 1:19] = True
    masks[1][0, 0] = True
    maps = [(rng.random(m.shape) + 0.5 * m).astype(np.float32) for m in masks]
    assert aupro(masks, maps) == pytest.approx(_reference_aupro(masks, maps, 0.3), abs=1e-12)


def test_trapezoid_limited():
    x = np.array([0.0, 0.2, 0.2, 0.5, 1.0])
    y = np.array([0.0, 0.4, 0.6, 0.9, 1.0])
    assert trapezoid_limited(x, y, 1.0) == pytest.approx(np.trapezoid(y, x))
    # to 0.35: .2*.2 + .15 * (.6 + .75) / 2
    assert trapezoid_limited(x, y, 0.35) == pytest.approx(0.04 + 0.15 * 1.35 / 2)
    assert trapezoid_limited(x, y, 0.2) == pytest.approx(0.04)


# --------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------
def test_summarize_with_and_without_masks():
    labels, scores = [0, 1], [0.2, 0.9]
    masks = [np.zeros((4, 4)), np.eye(4)]
    maps = [np.zeros((4, 4)), np.eye(4)]
    full = summarize(labels, scores, masks, maps)
    assert tuple(full) == METRIC_KEYS
    assert full == pytest.approx({k: 1.0 for k in METRIC_KEYS})
    image_only = summarize(labels, scores, None, None)
    assert image_only["pixel_auroc"] is None and image_only["pixel_aupro"] is None
    assert image_only["image_auroc"] == 1.0
    acc = PixelAccumulator()
    for m, a in zip(masks, maps):
        acc.add(m, a)
    assert summarize(labels, scores, acc) == full
    with pytest.raises(ValueError, match="without anomaly maps"):
        summarize(labels, scores, masks, None)
    with pytest.raises(ValueError, match="match one to one"):
        summarize([0, 1, 1], [0.1, 0.2, 0.3], masks, maps)
