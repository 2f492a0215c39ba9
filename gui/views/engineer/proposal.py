"""The station's production check of the live threshold: before -> after, apply or dismiss (audited)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QInputDialog, QLabel, QPushButton, QVBoxLayout, QWidget

from gui.views.engineer.context import EngineerContext
from gui.widgets.approval import ApprovalDialog
from gui.workers import run_task
from inspector.station.recalibration import ThresholdProposal


def _pct(value: float) -> str:
    return f"{100 * value:.2g} %" if value < 0.01 else f"{100 * value:.1f} %"


class ProposalBox(QGroupBox):
    """What the parts judged OK with margin say: the live threshold's false rejects now, the proposal's after."""

    preview = Signal(float)  # show the proposed value on the slider
    applied = Signal(float)

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__("FROM PRODUCTION · PARTS JUDGED OK WITH MARGIN", parent)
        self.ctx = ctx
        # Apply shows now vs proposed and needs a reason, like every threshold change (tests replace this).
        self.ask_reason: Callable[[str, list[tuple[str, str, str]], str], str | None] = self._reason_dialog
        self.proposal: ThresholdProposal | None = None
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.before = QLabel("")
        self.after = QLabel("")
        for label in (self.before, self.after):
            label.setWordWrap(True)
        self.preview_button = QPushButton("Show on slider")
        self.preview_button.clicked.connect(lambda: self.proposal and self.preview.emit(self.proposal.proposed))
        self.apply_button = QPushButton("Apply proposal")
        self.apply_button.setObjectName("primary")
        self.apply_button.clicked.connect(self.apply)
        self.dismiss_button = QPushButton("Dismiss…")
        self.dismiss_button.clicked.connect(self.dismiss)
        row = QHBoxLayout()
        row.addWidget(self.before, 1)
        row.addWidget(self.after, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.preview_button, self.dismiss_button, self.apply_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addLayout(row)
        lay.addLayout(buttons)

    def refresh(self) -> None:
        try:
            self.proposal = self.ctx.handle.threshold_proposal()
        except Exception as exc:  # a damaged file must not take the panel down
            self.proposal = None
            self.summary.setText(f"production check unavailable: {exc}")
        p = self.proposal
        spec = self.ctx.handle.line_config().decision.recalibration
        actionable = p is not None and p.actionable
        for b in (self.preview_button, self.apply_button, self.dismiss_button):
            b.setEnabled(actionable)
        if p is None:
            self.summary.setText("No production check yet: the station checks the live threshold every "
                                 f"{spec.after_parts} parts" if spec.after_parts else
                                 "Production checks are off (decision.recalibration.after_parts: 0).")
            self.before.setText("")
            self.after.setText("")
            return
        state = {"pending": "PROPOSAL", "consistent": "LIVE THRESHOLD CONFIRMED", "applied": "APPLIED",
                 "dismissed": "DISMISSED"}.get(p.status, p.status.upper())
        decided = f" by {p.decided_by} {p.decided_when.replace('T', ' ')[:16]}" if p.decided_by else ""
        self.summary.setText(f"{state}{decided} · {p.when.replace('T', ' ')[:16]} · model {p.version} · "
                             f"{p.parts} parts, {p.used} OK with margin used ({p.ng} NG, {p.faults} FAULT not used)")
        self.before.setText(f"NOW: {p.live:.4f}\nrejects ~{_pct(p.live_false_reject)} of good parts "
                            f"({_pct(p.live_interval[0])}-{_pct(p.live_interval[1])})")
        self.after.setText(f"PROPOSED: {p.proposed:.4f}\ntarget {_pct(p.target)} "
                           f"({_pct(p.interval[0])}-{_pct(p.interval[1])})")

    def compare(self) -> list[tuple[str, str, str]]:
        """Live vs proposed, as the production parts estimate them."""
        p = self.proposal
        assert p is not None
        return [("threshold", f"{p.live:.4f}", f"{p.proposed:.4f}"),
                ("false reject (good → NG), estimated",
                 f"{_pct(p.live_false_reject)} ({_pct(p.live_interval[0])}-{_pct(p.live_interval[1])})",
                 f"{_pct(p.target)} ({_pct(p.interval[0])}-{_pct(p.interval[1])})"),
                ("from", f"{p.used} parts judged OK with margin", f"model {p.version}")]

    def apply(self) -> None:
        p = self.proposal
        if p is None or not p.actionable:
            return
        reason = self.ask_reason("Apply the production proposal", self.compare(),
                                 "The proposed threshold is live on the line at once and written to its record.")
        if reason is None:
            return
        why = f"{reason}; applied in the station GUI" if reason else "applied in the station GUI"
        run_task(self.ctx.handle.apply_threshold_proposal, self.ctx.who, why,
                 name="proposal-apply", on_done=lambda _r: self._applied(p.proposed),
                 on_error=lambda e: self.ctx.notify(f"proposal not applied: {e}", "error"))

    def _reason_dialog(self, title: str, rows: list[tuple[str, str, str]], note: str) -> str | None:
        dialog = ApprovalDialog(title, rows, note, parent=self)
        if dialog.exec() != ApprovalDialog.DialogCode.Accepted:
            return None
        return dialog.reason_text()

    def _applied(self, value: float) -> None:
        self.ctx.notify(f"threshold {value:.4f} from production applied and logged", "ok")
        self.refresh()
        self.applied.emit(value)

    def dismiss(self, reason: str | None = None) -> None:
        if self.proposal is None or not self.proposal.actionable:
            return
        if reason is None:
            reason, ok = QInputDialog.getText(self, "Dismiss proposal", "Why keep the live threshold?")
            if not ok or not reason.strip():
                return
        run_task(self.ctx.handle.dismiss_threshold_proposal, self.ctx.who, reason.strip(), name="proposal-dismiss",
                 on_done=lambda _r: (self.ctx.notify("proposal dismissed and logged", "ok"), self.refresh()),
                 on_error=lambda e: self.ctx.notify(f"proposal not dismissed: {e}", "error"))
