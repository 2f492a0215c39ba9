"""Column widths of a table that never scrolls sideways (gui/widgets/fit_table.py)."""

from __future__ import annotations

from gui.widgets.fit_table import fitted_widths


def test_columns_keep_their_width_when_they_fit_and_the_spare_goes_to_the_stretch_column() -> None:
    assert fitted_widths([50, 100, 80], 300, stretch=1) == [50, 170, 80]


def test_too_wide_columns_shrink_in_proportion_but_not_below_the_minimum() -> None:
    widths = fitted_widths([400, 200, 40, 40], 400, minimum=36)
    assert sum(widths) <= 400 and widths[0] > widths[1] > widths[2] >= 36 and widths[3] >= 36
    assert fitted_widths([], 100) == []
