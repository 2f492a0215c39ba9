"""A drawn padlock (no emoji font is needed on the station PC)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from gui import theme


class Padlock(QWidget):
    def __init__(self, size: int = 96, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(size, size)

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        s = self.width()
        colour = QColor(theme.MUTED)
        p.setPen(QPen(colour, s * 0.09, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
        p.drawArc(QRectF(s * 0.28, s * 0.08, s * 0.44, s * 0.5), 0, 180 * 16)
        p.drawLine(int(s * 0.28), int(s * 0.33), int(s * 0.28), int(s * 0.45))
        p.drawLine(int(s * 0.72), int(s * 0.33), int(s * 0.72), int(s * 0.45))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colour)
        p.drawRoundedRect(QRectF(s * 0.16, s * 0.42, s * 0.68, s * 0.5), s * 0.06, s * 0.06)
        p.setBrush(QColor(theme.BG))
        p.drawEllipse(QRectF(s * 0.44, s * 0.56, s * 0.12, s * 0.12))
        p.drawRect(QRectF(s * 0.475, s * 0.64, s * 0.05, s * 0.14))
