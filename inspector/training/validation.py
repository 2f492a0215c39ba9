"""Held-out evaluation of the station's decision, with and without an adapter (the gate's evidence).

The base heads of a fold are fitted by the engine itself (its views, its fit) on that fold's
inner-training images (:func:`engine_outputs` runs them); every head then scores the fold's
inner-validation and outer (judging) images. Scores are standardised per head with good scores
and fused with the engine's :class:`~inspector.heads.Fusion` and the line's head weights, so the
base heads, the deployed adapter and the candidate are judged by the same rule on the same images
(:mod:`inspector.training.nested` says which data may choose what).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from inspector.backbone.dense import Features
from inspector.config import LineConfig
from inspector.evaluation.metrics import image_auroc
from inspector.heads import Fusion, HeadOutput
from inspector.heads.fusion import HEAD_NAMES
from inspector.training.featureset import PATCH_POSITIVE
from inspector.training.gate import ValidationMetrics, validation_metrics

if TYPE_CHECKING:
    from inspector.engine import Inspector

_logger = logging.getLogger(__name__)

_CHUNK = 32


@torch.no_grad()
def run_head(head: nn.Module, features: Features) -> HeadOutput:
    """A head's outputs on many views, in chunks."""
    parts = [head(features.index(slice(s, s + _CHUNK))) for s in range(0, features.batch_size, _CHUNK)]
    return cat_outputs(parts)


def cat_outputs(parts: Sequence[HeadOutput]) -> HeadOutput:
    score = torch.cat([p.score.float() for p in parts])
    maps = None if any(p.map is None for p in parts) else torch.cat([p.map.float() for p in parts])  # type: ignore[union-attr]
    probs = None
    # Folds fitted on different class sets (a one-sample class is missing from some folds' training set) give
    # class columns that do not line up: leave them out; validation judges scores and maps only.
    widths = {None if p.class_probs is None else tuple(p.class_probs.shape[1:]) for p in parts}
    if None not in widths and len(widths) == 1:
        probs = torch.cat([p.class_probs for p in parts])  # type: ignore[misc]
    return HeadOutput(score, maps, probs)


def pool(folds: Sequence[dict[str, HeadOutput]]) -> dict[str, HeadOutput]:
    """Concatenate per-fold outputs of the heads present in every fold."""
    names = [n for n in folds[0] if all(n in f for f in folds)]
    return {n: cat_outputs([f[n] for f in folds]) for n in names}


@torch.no_grad()
def engine_outputs(engine: Inspector, features: Features) -> dict[str, HeadOutput]:
    """The base heads of a fitted engine (zero-shot, few-shot references, probe) on encoded views, on the CPU."""
    feats = features.to(engine.device)
    out = {}
    for name in engine.heads:
        if name == "adapter":
            continue
        o = getattr(engine, name)(feats)
        out[name] = HeadOutput(o.score.float().cpu(), None if o.map is None else o.map.float().cpu(),
                               None if o.class_probs is None else o.class_probs.float().cpu())
    return out


def good_stats(outputs: dict[str, HeadOutput], labels: Tensor
               ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """Mean / std of each head's score and map over the held-out good views."""
    good = labels == 0
    scores, maps = {}, {}
    for name, out in outputs.items():
        s = out.score[good].double()
        scores[name] = (float(s.mean()), float(s.std()) if s.numel() > 1 else 1.0)
        if out.map is not None:
            m = out.map[good].double().flatten()
            maps[name] = (float(m.mean()), float(m.std()) if m.numel() > 1 else 1.0)
    return scores, maps


def fuse(outputs: dict[str, HeadOutput], line: LineConfig, score_stats: dict[str, tuple[float, float]],
         map_stats: dict[str, tuple[float, float]]) -> tuple[Tensor, Tensor | None]:
    """The engine's fused score / map of the given heads with the line's weights."""
    weights = {h: float(getattr(line.heads, h)) for h in HEAD_NAMES if h in outputs}
    weights = {h: w for h, w in weights.items() if w > 0}
    if not weights:  # every head weighted 0 but zero-shot: the engine keeps zero-shot on
        weights = {"zero_shot": 1e-6}
    fusion = Fusion()
    fusion.setup(weights, {h: score_stats[h] for h in weights}, {h: map_stats[h] for h in weights if h in map_stats})
    return fusion({h: outputs[h] for h in weights})


def decision_metrics(scores: Tensor, labels: Tensor, line: LineConfig) -> ValidationMetrics:
    """Held-out metrics at the threshold the line's calibration method would set."""
    spec = line.decision.calibration
    s = scores.double().numpy()
    y = labels.numpy()
    return validation_metrics(s[y == 0], s[y == 1], spec.method, spec.target_false_reject, spec.cost_false_reject,
                              spec.cost_escape)


def head_auroc(scores: Tensor, labels: Tensor) -> float | None:
    y = labels.numpy()
    s = scores.double().numpy()
    if not 0 < y.sum() < y.size or not np.isfinite(s).all():
        return None
    return float(image_auroc(y, s))


def auroc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUROC from ``n_pos`` defect and ``n_neg`` good scores."""
    if n_pos < 1 or n_neg < 1:
        return float("inf")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def skill(auc: float | None, n_pos: int, n_neg: int) -> float:
    """How much better than chance a head is, counting only what exceeds one standard error: 0..1.

    With a dozen held-out images a chance-level head easily shows AUROC 0.6; weighting heads by
    their raw AUROC would let such noise into the fused score. No AUROC (``None``: the held-out
    scores were non-finite or one-sided) or a non-finite one is no evidence of skill: 0 (fails closed).
    """
    if auc is None or not np.isfinite(auc):
        return 0.0
    return max(0.0, 2.0 * (auc - 0.5 - auroc_standard_error(auc, n_pos, n_neg)))


def patch_auroc(maps: Tensor | None, masks: Tensor, known: Tensor) -> float | None:
    """AUROC of a patch-grid map against the masks (views with a known mask; uncertain patches left out)."""
    if maps is None or not bool(known.any()):
        return None
    m = maps[known].flatten().double().numpy()
    frac = masks[known].flatten().numpy()
    keep = (frac == 0) | (frac >= PATCH_POSITIVE)
    y = (frac[keep] >= PATCH_POSITIVE).astype(int)
    if not 0 < y.sum() < y.size or not np.isfinite(m).all():
        return None
    return float(image_auroc(y, m[keep]))
