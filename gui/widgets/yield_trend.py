"""The shift's NG rate per 15 minutes, bars split by defect class: is the line drifting, and with what."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QWidget

from gui import theme
from inspector.station.handle import ShiftCounts

BIN_S = 15 * 60
# Class colours: distinct from the verdict colours' meanings (red stays "NG" in general).
PALETTE = ("#e05252", "#e8a33d", "#b05ad8", "#3fb5c9", "#d8d84a", "#8fd14f", "#e06fb0")


@dataclass
class TrendBin:
    start: float  # epoch seconds of the bin start
    parts: int = 0
    ng: int = 0
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def ng_rate(self) -> float | None:
        return self.ng / self.parts if self.parts else None


class YieldTrend(QWidget):
    """``add_counts(counts)`` with every status poll (the totals grow; deltas go into the current bin; a new
    shift starts an empty trend), ``add_ng(defect)`` per NG part shown; keeps the last ``keep`` bins (a 12-hour
    shift: 48)."""

    def __init__(self, keep: int = 48, clock: Callable[[], float] = time.time, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.keep = keep
        self.clock = clock
        self.bins: list[TrendBin] = []
        self._last: ShiftCounts | None = None
        self.colours: dict[str, str] = {}
        self.setMinimumSize(220, 90)

    def sizeHint(self) -> QSize:
        return QSize(380, 124)

    def _bin(self) -> TrendBin:
        start = self.clock() // BIN_S * BIN_S
        if not self.bins or self.bins[-1].start != start:
            self.bins.append(TrendBin(start))
            del self.bins[:-self.keep]
        return self.bins[-1]

    def add_counts(self, counts: ShiftCounts) -> None:
        last, self._last = self._last, counts
        if last is not None and 0 != last.since_ns != counts.since_ns != 0:  # a new shift: its own trend
            self.bins.clear()
            self.update()
            return
        if last is None or counts.parts < last.parts:  # first poll, or a new count (restart): no delta
            return
        b = self._bin()
        b.parts += (counts.ok + counts.ng) - (last.ok + last.ng)
        b.ng += counts.ng - last.ng
        self._tooltip()
        self.update()

    def add_ng(self, defect: str | None) -> None:
        name = defect or "anomaly"
        b = self._bin()
        b.classes[name] = b.classes.get(name, 0) + 1
        self.colours.setdefault(name, PALETTE[len(self.colours) % len(PALETTE)])

    def _tooltip(self) -> None:
        lines = []
        for b in self.bins[-8:]:
            rate = "-" if b.ng_rate is None else f"{100 * b.ng_rate:.1f} %"
            classes = ", ".join(f"{k} {v}" for k, v in sorted(b.classes.items(), key=lambda kv: -kv[1]))
            lines.append(f"{time.strftime('%H:%M', time.localtime(b.start))}  NG {rate} of {b.parts}"
                         + (f"  ({classes})" if classes else ""))
        self.setToolTip("NG rate per 15 min (latest last)\n" + "\n".join(lines))

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), QColor(theme.PANEL))
        p.setPen(QColor(theme.MUTED))
        p.setFont(theme.font(9))
        rates = [b.ng_rate for b in self.bins if b.ng_rate is not None]
        top = max([0.05, *rates])  # at least a 5 % scale: a quiet line does not fill the box
        p.drawText(QRectF(6, 2, w - 12, 14), Qt.AlignmentFlag.AlignLeft, f"NG / 15 min · max {100 * top:.0f} %")
        if not self.bins:
            p.drawText(QRectF(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, "no parts yet")
            return
        area = QRectF(6, 18, w - 12, h - 22)
        n = max(len(self.bins), 8)
        bw = area.width() / n
        for i, b in enumerate(self.bins):
            if b.ng_rate is None:
                continue
            x = area.left() + (n - len(self.bins) + i) * bw
            bar_h = area.height() * b.ng_rate / top
            y = area.bottom()
            total = sum(b.classes.values())
            for name, k in sorted(b.classes.items()):  # stacked by class, in proportion to the NG parts shown
                seg = bar_h * k / total if total else 0
                p.fillRect(QRectF(x + 1, y - seg, bw - 2, seg), QColor(self.colours.get(name, theme.NG)))
                y -= seg
            if not total and bar_h:
                p.fillRect(QRectF(x + 1, y - bar_h, bw - 2, bar_h), QColor(theme.NG))
