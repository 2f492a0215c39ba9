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
