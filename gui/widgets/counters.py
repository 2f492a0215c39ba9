"""Counter tiles of the current shift: TOTAL, OK, NG, YIELD, RATE, NOT INSPECTED, under the shift's name and start."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from gui import theme
from gui.widgets.elided import ElidedLabel
from inspector.station.handle import ShiftCounts


class Tile(QFrame):
    def __init__(self, caption: str, colour: str = theme.TEXT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.caption = QLabel(caption)
        self.caption.setObjectName("caption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.value = QLabel("0")
        self.value.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.value.setFont(theme.font(24, bold=True))
        self.value.setStyleSheet(f"color: {colour};")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)  # tight: the shift's name above the tiles fits a 768 px panel
        lay.setSpacing(0)
        lay.addWidget(self.caption)
        lay.addWidget(self.value)


class Counters(QWidget):
    """Shift counters; ``update_counts(counts, rate_per_s)`` (``counts.shift`` names the shift shown)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.total = Tile("TOTAL")
        self.ok = Tile("OK", theme.OK)
        self.ng = Tile("NG", theme.NG)
        self.yield_ = Tile("YIELD")
        self.rate = Tile("PARTS / MIN")
        self.faults = Tile("NOT INSPECTED", theme.FAULT)
        # Which count this is: the counters start at 0 at each shift start (station config ``shifts``).
        self.shift = ElidedLabel("SHIFT")
        self.shift.setObjectName("caption")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.addWidget(self.shift, 0, 0, 1, 3)
        grid.addWidget(self.total, 1, 0)
        grid.addWidget(self.ok, 1, 1)
        grid.addWidget(self.ng, 1, 2)
        grid.addWidget(self.yield_, 2, 0)
        grid.addWidget(self.rate, 2, 1)
        grid.addWidget(self.faults, 2, 2)

    def update_counts(self, counts: ShiftCounts, rate_per_s: float) -> None:
        if counts.shift:
            self.shift.setText(f"SHIFT  ·  {counts.shift}")
        self.total.value.setText(f"{counts.parts:,}")
        self.ok.value.setText(f"{counts.ok:,}")
        self.ng.value.setText(f"{counts.ng:,}")
        y = counts.yield_pct
        self.yield_.value.setText("-" if y is None else f"{y:.1f} %")
        self.rate.value.setText(f"{rate_per_s * 60:.0f}")
        self.faults.value.setText(f"{counts.faults:,}")
