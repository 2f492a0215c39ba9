"""Threshold slider with the false-reject / escape estimate on the stored samples as it moves."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.views.engineer.context import EngineerContext
from gui.views.engineer.proposal import ProposalBox
from gui.widgets.approval import ApprovalDialog
from gui.workers import run_task
from inspector.tuning.threshold import ThresholdEstimate, slider_range, threshold_estimate

STEPS = 1000


class ScoreStrip(QWidget):
    """Held-out scores of good (green, top) and defect (red, bottom) samples, the threshold, the NG side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.good = np.empty(0)
        self.defect = np.empty(0)
        self.lo, self.hi = 0.0, 1.0
        self.threshold = 0.5
        self.setMinimumHeight(150)

    def set_data(self, good: np.ndarray, defect: np.ndarray, lo: float, hi: float, threshold: float) -> None:
        self.good, self.defect, self.lo, self.hi, self.threshold = good, defect, lo, hi, threshold
        self.update()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self.update()

    def _x(self, v: float) -> float:
        return 20 + (self.width() - 40) * (v - self.lo) / max(self.hi - self.lo, 1e-12)

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), QColor(theme.PANEL))
        xt = self._x(self.threshold)
        p.fillRect(QRectF(xt, 0, w - xt, h), theme.qcolor(theme.NG, 40))
        p.setFont(theme.font(11, bold=True))
        p.setPen(QColor(theme.MUTED))
        p.drawText(QRectF(24, 6, 300, 22), "OK side")
        p.drawText(QRectF(xt + 8, 6, 300, 22), "NG side")
        rows = ((self.good, theme.OK, h * 0.36, "good samples"), (self.defect, theme.NG, h * 0.70, "defect samples"))
        for values, colour, y, label in rows:
            p.setPen(QColor(theme.MUTED))
            p.drawText(QRectF(24, y - 34, 300, 20), f"{label} ({len(values)})")
            p.setPen(QPen(QColor("#000000"), 1))
            p.setBrush(QColor(colour))
            rng = np.random.default_rng(0)
            for v in values:
                if math.isfinite(v):
                    p.drawEllipse(QPointF(self._x(float(v)), y + rng.uniform(-10, 10)), 7, 7)
        p.setPen(QPen(QColor(theme.TEXT), 3))
        p.drawLine(QPointF(xt, 0), QPointF(xt, h))
        p.setPen(QColor(theme.MUTED))
        p.setFont(theme.font(10))
        for v in np.linspace(self.lo, self.hi, 6):
            p.drawText(QRectF(self._x(v) - 40, h - 22, 80, 20), Qt.AlignmentFlag.AlignCenter, f"{v:.2f}")


class _Readout(QFrame):
    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        cap = QLabel(caption)
        cap.setObjectName("caption")
        self.value = QLabel("-")
        self.value.setFont(theme.font(26, bold=True))
        self.note = QLabel("")
        self.note.setObjectName("hint")
        lay = QVBoxLayout(self)
        lay.addWidget(cap)
        lay.addWidget(self.value)
        lay.addWidget(self.note)


class ThresholdPanel(QWidget):
    """The slider moves a proposal; Apply sets it live on the line and writes it to the YAML (audit-logged)."""

    estimated = Signal(object)  # ThresholdEstimate after each slider move
    applied = Signal(float)

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        # Apply shows live vs proposed and needs a reason (issue #17 item 9); tests replace this.
        self.ask_reason: Callable[[str, list[tuple[str, str, str]], str], str | None] = self._reason_dialog
        self.good = np.empty(0)
        self.defect = np.empty(0)
        self.lo, self.hi = 0.0, 1.0
        self.live = math.nan
        self.estimate: ThresholdEstimate | None = None
        self.strip = ScoreStrip()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, STEPS)
        self.slider.valueChanged.connect(self._moved)
        self.value = _Readout("PROPOSED THRESHOLD")
        self.false_reject = _Readout("FALSE REJECT (good parts → NG)")
        self.escape = _Readout("ESCAPE (defects → OK)")
        readouts = QHBoxLayout()
        for r in (self.value, self.false_reject, self.escape):
            readouts.addWidget(r)
        self.revert_button = QPushButton("Back to live value")
        self.revert_button.clicked.connect(lambda: self.set_proposal(self.live))
        self.apply_button = QPushButton("Apply threshold")
        self.apply_button.setObjectName("primary")
        self.apply_button.clicked.connect(self.apply)
        actions = QHBoxLayout()
        self.live_label = QLabel("")
        self.live_label.setObjectName("hint")
        self.live_label.setWordWrap(True)  # a long provenance must not widen the window past a 1280 px panel
        actions.addWidget(self.live_label, 1)
        actions.addWidget(self.revert_button)
        actions.addWidget(self.apply_button)
        note = QLabel("Estimates use the line's stored samples, each scored by a model fitted without it "
                      "(held-out), so they predict what the line will do on new parts. Few samples give "
                      "coarse estimates: capture more to sharpen them.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        self.production = ProposalBox(ctx)
        self.production.preview.connect(self.set_proposal)
        self.production.applied.connect(lambda _v: self.refresh())
        box = QGroupBox("DECISION THRESHOLD · NG WHEN SCORE ≥ THRESHOLD")
        lay = QVBoxLayout(box)
        lay.addWidget(self.strip, 1)
        lay.addWidget(self.slider)
        lay.addLayout(readouts)
        lay.addWidget(note)
        lay.addLayout(actions)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 12, 12, 12)
        outer.addWidget(box, 1)
        outer.addWidget(self.production)

    def refresh(self) -> None:
        inspector = self.ctx.handle.inspector
        if inspector is None:
            return
        self.good = np.asarray(inspector.good_scores, float)
        self.defect = np.asarray(inspector.defect_scores, float)
        self.live = float(inspector.threshold)
        self.lo, self.hi = slider_range(self.good, self.defect, self.live)
        self.strip.set_data(self.good, self.defect, self.lo, self.hi, self.live)
        self._show_live()
        self.set_proposal(self.live)
        self.production.refresh()

    def live_text(self) -> str:
        """The live threshold, the model version it belongs to, where it came from, and the config file's value."""
        handle = self.ctx.handle
        inspector = handle.inspector
        version = inspector.model_version if inspector is not None else "?"
        record = handle.threshold_record()
        source = record.source() if record is not None else "not recorded yet"
        fixed = handle.line_config().decision.threshold
        in_file = f"{fixed:.4f}" if fixed is not None else "not set"
        note = "" if version == "base" else " (used by the base heads only)"
        return (f"Live threshold on line {handle.line}, model {version}: {self.live:.4f} · {source}\n"
                f"config file decision.threshold: {in_file}{note}")

    def _show_live(self) -> None:
        self.live_label.setText(self.live_text())

    def proposal(self) -> float:
        return self.lo + (self.hi - self.lo) * self.slider.value() / STEPS

    def set_proposal(self, threshold: float) -> None:
        if not math.isfinite(threshold):
            return
        pos = round((threshold - self.lo) / max(self.hi - self.lo, 1e-12) * STEPS)
        self.slider.blockSignals(True)
        self.slider.setValue(max(0, min(STEPS, pos)))
        self.slider.blockSignals(False)
        self._show(threshold)

    def _moved(self, _pos: int) -> None:
        self.ctx.session.touch()
        self._show(self.proposal())

    def _show(self, t: float) -> None:
        est = threshold_estimate(self.good, self.defect, t)
        self.estimate = est
        self.strip.set_threshold(t)
        self.value.value.setText(f"{t:.4f}")
        self.value.note.setText(f"live: {self.live:.4f}")
        for readout, rate, n, bad in ((self.false_reject, est.false_reject, est.n_good, theme.FAULT),
                                      (self.escape, est.escape, est.n_defect, theme.NG)):
            if rate is None:
                readout.value.setText("n/a")
                readout.value.setStyleSheet(f"color: {theme.MUTED};")
                readout.note.setText("no samples of this kind")
            else:
                readout.value.setText(f"{100 * rate:.1f} %")
                readout.value.setStyleSheet(f"color: {bad if rate > 0 else theme.OK};")
                readout.note.setText(f"{round(rate * n)} of {n} samples")
        self.estimated.emit(est)

    def apply(self) -> None:
        inspector = self.ctx.handle.inspector
        if inspector is None:
            return
        new = round(self.proposal(), 6)
        est = self.estimate
        reason = self.ask_reason("Apply the threshold", self.compare(new), "The new threshold is live on the line at "
                                 "once and written to the line's threshold record.")
        if reason is None:
            return
        why = "applied in the station GUI" + (f" (estimated false reject {100 * est.false_reject:.1f} %)"
                                              if est is not None and est.false_reject is not None else "")
        why = f"{reason}; {why}" if reason else why
        # The one path (station/threshold.py): engine, the line's threshold book, the audit event.
        run_task(self.ctx.handle.set_threshold, new, self.ctx.who, why, name="threshold-apply",
                 on_done=lambda _r: self._applied(new),
                 on_error=lambda e: self.ctx.notify(f"threshold not applied: {e}", "error"))

    def compare(self, new: float) -> list[tuple[str, str, str]]:
        """Live vs proposed: the threshold and its held-out false reject / escape on the stored samples."""
        def pct(v: float | None, n: int) -> str:
            return "-" if v is None else f"{100 * v:.1f} % ({round(v * n)} of {n})"

        now = threshold_estimate(self.good, self.defect, self.live) if math.isfinite(self.live) else None
        after = threshold_estimate(self.good, self.defect, new)
        return [("threshold", f"{self.live:.4f}" if math.isfinite(self.live) else "-", f"{new:.4f}"),
                ("false reject (good → NG)", pct(now.false_reject, now.n_good) if now else "-",
                 pct(after.false_reject, after.n_good)),
                ("escape (defect → OK)", pct(now.escape, now.n_defect) if now else "-",
                 pct(after.escape, after.n_defect))]

    def _reason_dialog(self, title: str, rows: list[tuple[str, str, str]], note: str) -> str | None:
        dialog = ApprovalDialog(title, rows, note, parent=self)
        if dialog.exec() != ApprovalDialog.DialogCode.Accepted:
            return None
        return dialog.reason_text()

    def _applied(self, value: float) -> None:
        self.live = value
        self._show_live()
        self.ctx.notify(f"threshold {value:.4f} applied and logged", "ok")
        self.applied.emit(value)
