"""The camera image with the anomaly heatmap and defect boxes painted over it (each toggleable)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from gui import theme
from gui.widgets.images import to_qimage
from inspector.decision.result import Region


class FrameView(QWidget):
    """Paints a frame scaled to fit (aspect kept), the heat layer over its ROI and region boxes."""

    def __init__(self, placeholder: str = "no image", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 180)
        self._frame: QImage | None = None
        self._heat: QImage | None = None
        self._roi: tuple[int, int, int, int] | None = None
        self._regions: list[Region] = []
        self._box_colour = QColor(theme.NG)
        self.placeholder = placeholder
        self.show_heatmap = True
        self.show_boxes = True
        self.heat_opacity = 0.6

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def set_frame(self, frame: np.ndarray | None, heat: np.ndarray | None = None,
                  roi: tuple[int, int, int, int] | None = None, regions: Sequence[Region] = (),
                  box_colour: str = theme.NG) -> None:
        self._frame = to_qimage(frame) if frame is not None else None
        self._heat = to_qimage(heat) if heat is not None else None
        if roi is None and frame is not None:
            roi = (0, 0, frame.shape[1], frame.shape[0])
        self._roi = roi
        self._regions = list(regions)
        self._box_colour = QColor(box_colour)
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._frame = self._heat = None
        self.placeholder = text
        self.update()

    def set_show_heatmap(self, on: bool) -> None:
        self.show_heatmap = on
        self.update()

    def set_show_boxes(self, on: bool) -> None:
        self.show_boxes = on
        self.update()

    def has_frame(self) -> bool:
        return self._frame is not None

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#0d1014"))
        if self._frame is None:
            p.setPen(QColor(theme.MUTED))
            p.setFont(theme.font(16))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        fw, fh = self._frame.width(), self._frame.height()
        scale = min(self.width() / fw, self.height() / fh)
        ox, oy = (self.width() - fw * scale) / 2, (self.height() - fh * scale) / 2
        target = QRectF(ox, oy, fw * scale, fh * scale)
        p.drawImage(target, self._frame)
        if self.show_heatmap and self._heat is not None and self._roi is not None:
            x, y, w, h = self._roi
            p.setOpacity(self.heat_opacity)
            p.drawImage(QRectF(ox + x * scale, oy + y * scale, w * scale, h * scale), self._heat)
            p.setOpacity(1.0)
        if self.show_boxes and self._regions:
            pen = QPen(self._box_colour, max(2.0, 3.0 * scale / 2))
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            for r in self._regions:
                p.drawRect(QRectF(ox + r.x * scale, oy + r.y * scale, r.width * scale, r.height * scale))
