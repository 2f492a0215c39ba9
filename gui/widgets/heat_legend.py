"""Colour bar of the heatmap in anomaly-map units, with the region threshold (where a defect region starts)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from gui import theme
from gui.workers import heat_scale
from inspector.decision.overlay import colorize


class HeatLegend(QWidget):
    """``set_level(region_threshold)``; paints nothing but a hint while the level is unknown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = math.nan
        self.setMinimumSize(180, 40)
        self.setToolTip("Heatmap colours in anomaly-map units: transparent well below the region threshold, "
                        "opaque from it; a defect region is where the map passes the threshold")
        ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]
        rgb = np.ascontiguousarray(colorize(ramp, 0.0, 1.0))
        self._bar = QImage(rgb.data, 256, 1, 3 * 256, QImage.Format.Format_RGB888).copy()

    def sizeHint(self) -> QSize:
        return QSize(260, 40)

    def set_level(self, level: float) -> None:
        if level != self.level and not (math.isnan(level) and math.isnan(self.level)):
            self.level = level
            self.update()

    def ticks(self) -> list[tuple[float, str]]:
        """(fraction along the bar, label): the scale's ends and the region threshold."""
        if not math.isfinite(self.level):
            return []
        lo, hi = heat_scale(self.level)
        return [(0.0, f"{lo:.2f}"), (0.5, f"region {self.level:.2f}"), (1.0, f"{hi:.2f}")]

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        w, h = self.width(), self.height()
        bar = QRectF(4, 2, w - 8, 12)
        p.drawImage(bar, self._bar)
        p.setPen(QColor(theme.MUTED))
        p.setFont(theme.font(9))
        if not math.isfinite(self.level):
            p.drawText(QRectF(4, 16, w - 8, h - 16), Qt.AlignmentFlag.AlignCenter, "heat scale: no model yet")
            return
        for frac, text in self.ticks():
            x = bar.left() + frac * bar.width()
            align = (Qt.AlignmentFlag.AlignLeft if frac == 0 else Qt.AlignmentFlag.AlignRight if frac == 1
                     else Qt.AlignmentFlag.AlignHCenter)
            left = x if frac == 0 else x - 140 if frac == 1 else x - 70
            p.drawText(QRectF(left, 16, 140, h - 16), align | Qt.AlignmentFlag.AlignTop, text)
        x = bar.left() + 0.5 * bar.width()
        p.setPen(QPen(QColor(theme.TEXT), 2))
        p.drawLine(int(x), 0, int(x), 16)
