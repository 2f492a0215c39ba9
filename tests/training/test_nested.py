"""What the inner views choose: head weights (fail closed on non-finite scores) and the operating threshold."""

from __future__ import annotations

import math

import numpy as np
import torch

from inspector.config import parse_station_config
from inspector.config.training import TrainingSpec
from inspector.heads import HeadOutput
from inspector.training.nested import head_weights, judge_arm, operating_threshold
from tests.conftest import tiny_line

LABELS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
GOOD_HEAD = torch.tensor([0.1, 0.2, 0.0, 0.3, 0.15, 0.25, 2.0, 2.2, 1.9, 2.5, 2.1, 2.4])


def _out(score: torch.Tensor) -> HeadOutput:
    return HeadOutput(score.float(), None)


def test_a_head_with_non_finite_held_out_scores_gets_no_weight() -> None:
    spec = TrainingSpec(heads=("patch", "clip_adapter"))
    nan = GOOD_HEAD.clone()
    nan[3] = math.nan
    w = head_weights({"patch": _out(GOOD_HEAD), "clip_adapter": _out(nan)}, LABELS, spec.heads, spec, "fold 1: ")
    assert w.weights["clip_adapter"] == 0.0 and w.auroc["clip_adapter"] is None
    assert w.weights["patch"] > 0.5 and w.auroc["patch"] == 1.0
    assert "fold 1: clip_adapter: non-finite held-out scores, weight 0" in w.notes
    # Fixed weights too: a NaN head never gets its fixed weight back.
    fixed = spec.model_copy(update={"combine": "fixed"})
    w = head_weights({"patch": _out(GOOD_HEAD), "clip_adapter": _out(nan)}, LABELS, fixed.heads, fixed)
    assert w.weights == {"patch": 1.0, "clip_adapter": 0.0}
    # A chance-level finite head next to a NaN one: the fixed-weight fallback spares the NaN head.
    chance = torch.tensor([0.0, 1.0] * 6)
    w = head_weights({"patch": _out(chance), "clip_adapter": _out(nan)}, LABELS, spec.heads, spec)
    assert w.weights == {"patch": 1.0, "clip_adapter": 0.0} and any("beats chance" in n for n in w.notes)


def test_without_a_defect_to_choose_with_the_weights_are_fixed_and_noted() -> None:
    spec = TrainingSpec(heads=("patch", "coop"), coop={"weight": 0.5})
    goods = torch.zeros(4, dtype=torch.long)
    w = head_weights({"patch": _out(GOOD_HEAD[:4]), "coop": _out(GOOD_HEAD[:4])}, goods, spec.heads, spec)
    assert w.weights == {"patch": 1.0, "coop": 0.5} and "no defect among the choosing views" in w.notes[0]


def test_the_operating_threshold_comes_from_the_choosing_scores_only() -> None:
    line = parse_station_config({"lines": [tiny_line(decision={"calibration": {"method": "f1"}})]}).lines[0]
    good, defect = np.array([0.0, 0.1, 0.2, 0.3]), np.array([0.5, 0.9])
    threshold, method, note = operating_threshold(good, defect, line)
    assert method == "f1" and 0.3 < threshold <= 0.5 and not note
    threshold, method, note = operating_threshold(good, np.empty(0), line)
    assert method == "false_reject" and threshold >= 0.3 and "not f1" in note
    assert math.isnan(operating_threshold(np.array([0.1, math.nan]), np.empty(0), line)[0])


def test_judge_arm_takes_its_threshold_from_the_inner_views_only() -> None:
    line = parse_station_config({"lines": [tiny_line()]}).lines[0]
    inner = {"zero_shot": _out(GOOD_HEAD)}
    judged = judge_arm(inner, LABELS, {"zero_shot": _out(GOOD_HEAD)}, LABELS, line)
    # The outer views shifted far up: had they chosen anything, the threshold would move with them.
    shifted = judge_arm(inner, LABELS, {"zero_shot": _out(GOOD_HEAD + 100.0)}, LABELS, line)
    assert shifted.threshold == judged.threshold and math.isfinite(judged.threshold)
    assert (shifted.good > shifted.threshold).all() and judged.good.size == 6 and judged.defect.size == 6
    wider = judge_arm({"zero_shot": _out(GOOD_HEAD * torch.tensor([1.0] * 5 + [9.0] + [1.0] * 6))}, LABELS,
                      {"zero_shot": _out(GOOD_HEAD)}, LABELS, line)
    assert wider.threshold != judged.threshold
