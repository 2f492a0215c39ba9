"""Head skill from held-out AUROC: no finite evidence, no weight."""

from __future__ import annotations

import math

import pytest

from inspector.training.validation import auroc_standard_error, skill


def test_skill_counts_only_what_beats_chance_by_a_standard_error() -> None:
    assert skill(0.5, 10, 10) == 0.0 and skill(0.3, 10, 10) == 0.0
    se = auroc_standard_error(0.95, 10, 10)
    assert skill(0.95, 10, 10) == pytest.approx(2 * (0.45 - se))
    assert skill(0.95, 100, 100) > skill(0.95, 5, 5) > 0


@pytest.mark.parametrize("auc", [None, math.nan, math.inf])
def test_skill_without_a_finite_auroc_is_zero(auc: float | None) -> None:
    """skill(None) used to be 1.0: a head with non-finite held-out scores got full fusion weight."""
    assert skill(auc, 10, 10) == 0.0


def test_pooled_folds_with_different_class_sets() -> None:
    """A one-sample defect class is missing from some folds' training sets: their class probabilities have fewer
    columns. Pooling keeps the scores and maps (what validation uses) and drops the incomparable probabilities."""
    import torch

    from inspector.heads.base import HeadOutput
    from inspector.training.validation import cat_outputs, pool

    a = HeadOutput(torch.rand(2), torch.rand(2, 4, 4), torch.rand(2, 5))
    b = HeadOutput(torch.rand(3), torch.rand(3, 4, 4), torch.rand(3, 4))
    out = cat_outputs([a, b])
    assert out.score.shape == (5,) and out.map is not None and out.map.shape == (5, 4, 4)
    assert out.class_probs is None
    same = pool([{"probe": a}, {"probe": HeadOutput(torch.rand(1), None, torch.rand(1, 5))}])["probe"]
    assert same.class_probs is not None and same.class_probs.shape == (3, 5) and same.map is None
