"""Counter tiles: TOTAL, OK, NG, YIELD, RATE (and faults when there are any)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from gui import theme
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
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(0)
        lay.addWidget(self.caption)
        lay.addWidget(self.value)


class Counters(QWidget):
    """Shift counters; ``update_counts(counts, rate_per_s)``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.total = Tile("TOTAL")
        self.ok = Tile("OK", theme.OK)
        self.ng = Tile("NG", theme.NG)
        self.yield_ = Tile("YIELD")
        self.rate = Tile("PARTS / MIN")
        self.faults = Tile("NOT INSPECTED", theme.FAULT)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        grid.addWidget(self.total, 0, 0)
        grid.addWidget(self.ok, 0, 1)
        grid.addWidget(self.ng, 0, 2)
        grid.addWidget(self.yield_, 1, 0)
        grid.addWidget(self.rate, 1, 1)
        grid.addWidget(self.faults, 1, 2)

    def update_counts(self, counts: ShiftCounts, rate_per_s: float) -> None:
        self.total.value.setText(f"{counts.parts:,}")
        self.ok.value.setText(f"{counts.ok:,}")
        self.ng.value.setText(f"{counts.ng:,}")
        y = counts.yield_pct
        self.yield_.value.setText("-" if y is None else f"{y:.1f} %")
        self.rate.value.setText(f"{rate_per_s * 60:.0f}")
        self.faults.value.setText(f"{counts.faults:,}")
