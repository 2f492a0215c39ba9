"""What the inner data of an outer fold chooses, and how the outer data judges it (pure maths on head outputs).

Per outer fold the inner-validation views choose the trained heads' weights (skill beyond chance,
0 for a head whose held-out scores are non-finite), every head's standardisation and each arm's
operating threshold (the line's calibration method on the fused inner scores); the outer views,
which chose nothing, are then scored at that threshold. :func:`judge_arm` does one arm of one fold,
:func:`judged_metrics` pools the folds. The epochs are chosen on the same inner views by the Trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from inspector.config import LineConfig
from inspector.config.training import TrainingSpec
from inspector.decision.calibrate import threshold_for_false_reject
from inspector.heads import HeadOutput
from inspector.training import validation as V
from inspector.training.featureset import FeatureSet
from inspector.training.gate import validation_metrics


@dataclass
class FoldEvidence:
    """One outer fold: its choosing (inner-val) and judging (outer) views, and every arm's head outputs on both."""

    inner: FeatureSet
    outer: FeatureSet
    train_keys: list[str]  # sample keys the trained heads were fitted on
    base_keys: list[str]  # real images the engine's base heads were fitted on
    heads_inner: dict[str, HeadOutput]  # the candidate's trained heads
    heads_outer: dict[str, HeadOutput]
    base_inner: dict[str, HeadOutput]  # the engine's base heads
    base_outer: dict[str, HeadOutput]
    deployed_inner: HeadOutput | None  # the deployed version's adapter, if it runs on this backbone
    deployed_outer: HeadOutput | None


@dataclass
class Weights:
    """Head weights chosen on held-out views, with the AUROC each came from and what had to be decided."""

    weights: dict[str, float]
    auroc: dict[str, float | None]
    notes: list[str] = field(default_factory=list)


def head_weights(outputs: dict[str, HeadOutput], labels: Tensor, heads: Sequence[str], spec: TrainingSpec,
                 where: str = "") -> Weights:
    """Each trained head's weight: its fixed weight scaled by its skill on these views (``training.combine``).

    A head whose scores here are non-finite gets 0 (fails closed), in every mode. Without a defect
    among the views there is no skill to measure: the fixed weights, noted. When every finite head is
    at chance the fixed weights of the finite heads are kept (noted) - the gate then judges that choice.
    """
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    out = Weights({}, {})
    finite = []
    for name in heads:
        fixed = float(getattr(spec, name).weight)
        score = outputs[name].score
        if not bool(torch.isfinite(score).all()):
            out.weights[name], out.auroc[name] = 0.0, None
            out.notes.append(f"{where}{name}: non-finite held-out scores, weight 0")
            continue
        finite.append(name)
        auc = V.head_auroc(score, labels)
        out.auroc[name] = auc
        if spec.combine == "fixed" or auc is None:
            out.weights[name] = fixed
        else:
            out.weights[name] = fixed * V.skill(auc, n_pos, n_neg)
    if spec.combine == "validation" and finite and n_pos == 0:
        out.notes.append(f"{where}no defect among the choosing views: fixed head weights")
    elif finite and not any(out.weights[n] > 0 for n in finite):
        out.notes.append(f"{where}no trained head beats chance on the choosing views (AUROC "
                         + ", ".join(f"{n} {out.auroc[n]:.3f}" for n in finite if out.auroc[n] is not None)
                         + "): fixed weights")
        out.weights.update({n: float(getattr(spec, n).weight) for n in finite})
    return out


def operating_threshold(good: np.ndarray, defect: np.ndarray, line: LineConfig) -> tuple[float, str, str]:
    """(threshold, method, note) the line's calibration sets on these (inner) fused scores.

    ``f1`` and ``cost`` need defects: without one the false-reject target sets it, noted.
    """
    spec = line.decision.calibration
    if defect.size:
        m = validation_metrics(good, defect, spec.method, spec.target_false_reject, spec.cost_false_reject,
                               spec.cost_escape)
        return m.threshold, spec.method, ""
    note = "" if spec.method == "false_reject" else (
        f"no defect among the choosing views: threshold by the false-reject target, not {spec.method}")
    if not np.isfinite(good).all():
        return float("nan"), "false_reject", note
    if good.size >= 2:
        return threshold_for_false_reject(good, spec.target_false_reject).threshold, "false_reject", note
    return float(np.nextafter(good.max(), np.inf)), "false_reject", note


@dataclass
class Judged:
    """One arm of one outer fold: its outer fused scores (and map) at the threshold its inner views set."""

    good: np.ndarray
    defect: np.ndarray
    threshold: float
    method: str
    score: Tensor  # fused score of every outer view
    map: Tensor | None
    note: str = ""


def judge_arm(inner: dict[str, HeadOutput], inner_labels: Tensor, outer: dict[str, HeadOutput],
              outer_labels: Tensor, line: LineConfig) -> Judged:
    """Standardise on the inner good views, set the threshold on the inner fused scores, score the outer views."""
    s_stats, m_stats = V.good_stats(inner, inner_labels)
    fused_inner, _ = V.fuse(inner, line, s_stats, m_stats)
    fused_outer, map_outer = V.fuse(outer, line, s_stats, m_stats)
    s_in = fused_inner.double().numpy()
    y_in = inner_labels.numpy()
    threshold, method, note = operating_threshold(s_in[y_in == 0], s_in[y_in == 1], line)
    s_out = fused_outer.double().numpy()
    y_out = outer_labels.numpy()
    return Judged(s_out[y_out == 0], s_out[y_out == 1], threshold, method, fused_outer, map_outer, note)
