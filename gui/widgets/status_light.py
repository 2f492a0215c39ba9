"""A status light: coloured lamp, name and one-word state; the detail goes into the tooltip."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from gui import theme
from gui.widgets.elided import ElidedLabel


class _Lamp(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colour = QColor(theme.IDLE)
        self.setFixedSize(QSize(20, 20))

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        glow = QColor(self.colour)
        glow.setAlpha(70)
        p.setBrush(glow)
        p.drawEllipse(0, 0, 20, 20)
        p.setBrush(self.colour)
        p.drawEllipse(3, 3, 14, 14)


class StatusLight(QWidget):
    """``set_state("ok" | "warn" | "fault" | "off", "Connected", "detail ...")``."""

    # A fixed width: a long state or model version is elided (whole in the tooltip), never widening the header.
    WIDTH = 128

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = "off"
        self.setFixedWidth(self.WIDTH)
        self._lamp = _Lamp()
        self._name = ElidedLabel(name.upper())
        self._name.setObjectName("caption")
        self._value = ElidedLabel("-")
        self._value.setFont(theme.font(10, bold=True))
        text = QVBoxLayout()
        text.setSpacing(0)
        text.addWidget(self._name)
        text.addWidget(self._value)
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 0, 2, 0)
        row.setSpacing(6)
        row.addWidget(self._lamp)
        row.addLayout(text)

    @property
    def text(self) -> str:
        return self._value.text()

    def set_caption(self, caption: str) -> None:
        self._name.setText(caption.upper())

    def set_state(self, state: str, text: str, detail: str = "") -> None:
        self.state = state
        self._lamp.colour = QColor(theme.LIGHT_COLOURS.get(state, theme.IDLE))
        self._lamp.update()
        self._value.setText(text)
        self.setToolTip(detail or text)
