"""A table that never scrolls sideways: columns at their content's width, shrunk to the room there is.

On a 1280 or 1366 px line panel a table in half the window has ~600 px; columns sized to their contents
(``ResizeToContents``) overflow that and the operator has to scroll sideways to see the last figures. Here
each column gets its content width while they fit (the spare room goes to the ``stretch`` column); when they
do not, every column shrinks in proportion and its cells end in "…", the whole text in each cell's tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QHeaderView, QTableWidget, QWidget

MIN_COLUMN_PX = 36


def fitted_widths(wanted: list[int], room: int, stretch: int = 0, minimum: int = MIN_COLUMN_PX) -> list[int]:
    """Column widths summing to at most ``room``: ``wanted`` when they fit (spare to ``stretch``), else shrunk."""
    if not wanted:
        return []
    total = sum(wanted)
    if total <= room:
        widths = list(wanted)
        widths[stretch] += room - total
        return widths
    widths = [max(minimum, w * room // total) for w in wanted]
    while sum(widths) > room and max(widths) > minimum:  # the minimums may overshoot: take from the widest
        widest = widths.index(max(widths))
        widths[widest] -= min(sum(widths) - room, widths[widest] - minimum)
    return widths


class FitTable(QTableWidget):
    """A QTableWidget whose columns always fit its width (see the module doc); call :meth:`fit` after filling."""

    def __init__(self, rows: int, columns: int, *, stretch: int = 0, parent: QWidget | None = None) -> None:
        super().__init__(rows, columns, parent)
        self.stretch = stretch
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(MIN_COLUMN_PX)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.viewport().installEventFilter(self)

    def fit(self) -> None:
        """Size the columns to the viewport's width now (after the rows or the width changed)."""
        header = self.horizontalHeader()
        wanted = [max(self.sizeHintForColumn(c), header.sectionSizeHint(c)) for c in range(self.columnCount())]
        for c, w in enumerate(fitted_widths(wanted, self.viewport().width(), self.stretch)):
            header.resizeSection(c, w)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.viewport() and event.type() == QEvent.Type.Resize:
            self.fit()  # also when a vertical scroll bar appears and takes its width from the viewport
        return super().eventFilter(watched, event)
