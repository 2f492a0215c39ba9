"""The big verdict: OK / NG / FAULT readable from across the line, with part, score vs threshold, defect."""

from __future__ import annotations

import math

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from gui import theme
from gui.widgets.elided import ElidedLabel


class ScoreGauge(QWidget):
    """A bar: the score's position against the threshold (tick), so 'how close' reads at a glance."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score = math.nan
        self.threshold = math.nan
        self.setFixedHeight(16)

    def set_values(self, score: float, threshold: float) -> None:
        self.score, self.threshold = score, threshold
        self.update()

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 70))
        p.drawRoundedRect(QRectF(0, 0, w, h), h / 2, h / 2)
        if not (math.isfinite(self.score) and math.isfinite(self.threshold)):
            return
        # Threshold at 60 % of the bar; the bar spans [thr - 1.5 d, thr + d] with d = max(|thr|, 1).
        d = max(abs(self.threshold), 1e-3) if self.threshold else 1.0
        lo, hi = self.threshold - 1.5 * d, self.threshold + 1.0 * d
        frac = min(max((self.score - lo) / (hi - lo), 0.0), 1.0)
        p.setBrush(QColor(255, 255, 255, 210))
        p.drawRoundedRect(QRectF(0, 0, max(h, w * frac), h), h / 2, h / 2)
        p.setPen(QPen(QColor(0, 0, 0, 200), 3))
        x = w * 0.6
        p.drawLine(int(x), 0, int(x), h)


class _FitWord(QLabel):
    """The verdict word, as large as its room allows (110 pt on a big panel, smaller on a 1280 x 800 one)."""

    MAX_PT = 110

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumHeight(60)
        self.setFont(theme.font(self.MAX_PT, bold=True))

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._fit()

    def _fit(self) -> None:
        f = self.font()
        f.setPointSize(self.MAX_PT)
        fm = QFontMetrics(f)
        w, h = max(fm.horizontalAdvance(self.text() or "OK"), 1), max(fm.height(), 1)
        scale = min(1.0, 0.95 * self.width() / w, 0.95 * self.height() / h)
        pt = max(12, int(self.MAX_PT * scale))
        if pt != self.font().pointSize():
            f.setPointSize(pt)
            self.setFont(f)


class VerdictBanner(QFrame):
    """Background in the verdict's colour; the verdict word fills most of it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verdict")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumHeight(170)
        self.verdict = ""
        self.word = _FitWord()
        self.word.setText("—")
        self.word.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.defect = QLabel("")
        self.defect.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.defect.setFont(theme.font(22, bold=True))
        self.part = ElidedLabel("waiting for the first part", min_chars=10)
        self.part.setFont(theme.font(13, bold=True))
        self.score = ElidedLabel("", min_chars=4)  # its minimum would take the start-up step's room
        self.score.setFont(theme.font(13))
        self.score.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.gauge = ScoreGauge()
        bottom = QHBoxLayout()
        bottom.addWidget(self.part, 1)  # the part line takes the room the score does not need (start-up steps)
        bottom.addWidget(self.score)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(18, 8, 18, 12)
        lay.setSpacing(6)
        lay.addWidget(self.word, 1)
        lay.addWidget(self.defect)
        lay.addLayout(bottom)
        lay.addWidget(self.gauge)
        self._paint("")

    def _paint(self, verdict: str) -> None:
        if getattr(self, "_painted", None) == verdict:
            return  # restyling re-polishes every child: only when the colour changes
        self._painted = verdict
        colour = theme.VERDICT_COLOURS.get(verdict, theme.IDLE)
        fg = "#111" if verdict == "FAULT" else "white"
        self.setStyleSheet(f"QFrame#verdict {{ background: {colour}; border-radius: 12px; }}"
                           f"QFrame#verdict QLabel {{ color: {fg}; background: transparent; }}")

    def show_part(self, verdict: str, part_id: str, score: float, threshold: float, defect: str | None,
                  confidence: float | None = None, fault: str | None = None) -> None:
        self.verdict = verdict
        self._paint(verdict)
        self.word.setText(verdict)
        if fault:
            self.defect.setText("NOT INSPECTED")
            self.setToolTip(fault)
        elif verdict == "NG" and defect:
            self.defect.setText(defect.upper() + (f"  {confidence:.0%}" if confidence is not None else ""))
            self.setToolTip("")
        else:
            self.defect.setText("")
            self.setToolTip("")
        self.part.setText(f"Part {part_id}")
        if math.isfinite(score):
            self.score.setText(f"score {score:.3f} / threshold {threshold:.3f}")
        else:
            self.score.setText(fault or "")
        self.gauge.set_values(score, threshold)

    def show_blocked(self, word: str, text: str) -> None:
        """The station is not inspecting because something refused it: amber, so nobody reads it as healthy."""
        self.verdict = ""
        self._paint("FAULT")
        self.word.setText(word)
        self.defect.setText("")
        self.part.setText(text)
        self.setToolTip(text)
        self.score.setText("")
        self.gauge.set_values(math.nan, math.nan)

    def show_starting(self, step: str, seconds: str) -> None:
        """A line is being started: the step it is in (elided; whole in the tooltip) and that time moves."""
        self.show_idle(step)
        self.word.setText("STARTING")
        self.score.setText(seconds)
        self.setToolTip(step)

    def show_idle(self, text: str) -> None:
        self.verdict = ""
        self._paint("")
        self.word.setText("—")
        self.defect.setText("")
        self.part.setText(text)
        self.score.setText("")
        self.gauge.set_values(math.nan, math.nan)
