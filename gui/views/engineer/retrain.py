"""Retrain in the background with progress and live metrics; approve or roll back model versions."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.views.engineer.context import EngineerContext
from gui.widgets.approval import ApprovalDialog
from gui.widgets.fit_table import FitTable
from gui.workers import TaskWorker, run_task
from inspector.station.retrain import PipelineTrainer, RegistryBook, TrainEvent, VersionRow, approval_rows

METRIC_COLUMNS = ("AUROC", "threshold", "false reject %", "escape %")
# The versions table's headers: short, so the table fits half a 1280 px panel; the whole name in the tooltip.
VERSION_HEADERS = (("Version", "model version (registry folder vN)"), ("Status", "active, candidate, retired or "
                   "rejected (rolled back)"), ("Created", "when the version was registered"),
                   ("AUROC", "held-out AUROC"), ("Thr.", "operating threshold (median over the validation folds)"),
                   ("FR %", "false reject %: good parts judged NG on held-out parts"),
                   ("Esc. %", "escape %: defects judged OK on held-out parts"))
STATUS_COLOURS = {"active": theme.OK, "candidate": theme.INFO, "retired": theme.MUTED, "rejected": theme.NG}


class RetrainPanel(QWidget):
    """``progressed(TrainEvent)`` per progress report, ``finished_run(str | None)`` (the candidate) at the end."""

    progressed = Signal(object)
    finished_run = Signal(object)
    version_changed = Signal()

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.confirm_force = True
        # Approve and roll back show active vs new and need a reason (issue #17 item 9); tests replace this.
        self.ask_reason: Callable[[str, list[tuple[str, str, str]], str], str | None] = self._reason_dialog
        self.trainer = PipelineTrainer()
        self.book: RegistryBook | None = None
        self.rows: list[VersionRow] = []
        self.events: list[TrainEvent] = []
        self.candidate: str | None = None
        self._worker: TaskWorker | None = None
        self._last_event = 0.0
        self._heartbeat = QTimer(self)  # a long step still shows that it is alive
        self._heartbeat.setInterval(1000)
        self._heartbeat.timeout.connect(self._tick)

        self.run_button = QPushButton("▶  Retrain line")
        self.run_button.setObjectName("primary")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setPrefix("epochs ")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.stage = QLabel("idle")
        self.stage.setFont(theme.font(14, bold=True))
        self.stage.setWordWrap(True)
        self.metrics = QTableWidget(0, 2)
        self.metrics.setHorizontalHeaderLabels(["Metric", "Value"])
        self.metrics.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.log = QListWidget()
        info = QLabel(f"Trainer: <b>{self.trainer.name}</b>. The line keeps inspecting with the active model "
                      "while this runs; a finished run is a candidate until you approve it.")
        info.setWordWrap(True)
        info.setObjectName("hint")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.epochs)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        run_box = QGroupBox("RETRAIN")
        r_lay = QVBoxLayout(run_box)
        r_lay.addWidget(info)
        r_lay.addLayout(buttons)
        r_lay.addWidget(self.stage)
        r_lay.addWidget(self.progress)
        r_lay.addWidget(QLabel("Live metrics"))
        r_lay.addWidget(self.metrics, 3)
        r_lay.addWidget(self.log, 2)

        # Fits half a 1280 px panel: no sideways scrolling (issue #17); long cells end in "…", whole in the tooltip.
        self.versions = FitTable(0, len(VERSION_HEADERS), stretch=2)
        for col, (text, tip) in enumerate(VERSION_HEADERS):
            header_item = QTableWidgetItem(text)
            header_item.setToolTip(tip)
            self.versions.setHorizontalHeaderItem(col, header_item)
        self.versions.verticalHeader().setVisible(False)
        self.versions.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.versions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.approve_button = QPushButton("✔ Approve selected")
        self.approve_button.setStyleSheet(f"background: {theme.OK}; color: white; font-weight: bold;")
        self.approve_button.clicked.connect(self.approve_selected)
        self.rollback_button = QPushButton("↶ Roll back")
        self.rollback_button.clicked.connect(self.rollback)
        v_buttons = QHBoxLayout()
        self.gate_note = QLabel("")
        self.gate_note.setObjectName("hint")
        self.gate_note.setWordWrap(True)
        v_buttons.addWidget(self.gate_note, 1)
        v_buttons.addWidget(self.rollback_button)
        v_buttons.addWidget(self.approve_button)
        self.versions.itemSelectionChanged.connect(self._selection_changed)
        ver_box = QGroupBox("MODEL VERSIONS OF THIS LINE")
        v_lay = QVBoxLayout(ver_box)
        v_lay.addWidget(self.versions, 1)
        v_lay.addLayout(v_buttons)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.addWidget(run_box, 1)
        lay.addWidget(ver_box, 1)

    # ------------------------------------------------------------------ runs
    @property
    def running(self) -> bool:
        return self._worker is not None

    def refresh(self) -> None:
        self.epochs.setValue(self.ctx.handle.line_config().training.max_epochs)
        self._fill_versions()

    def start(self) -> None:
        if self._worker is not None:
            return
        self.ctx.session.touch()
        self.events.clear()
        self.log.clear()
        self.metrics.setRowCount(0)
        self.progress.setValue(0)
        self.stage.setText("starting ...")
        self.stage.setStyleSheet("")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._last_event = time.monotonic()
        self._cancel_requested = False
        self._heartbeat.start()
        handle, who = self.ctx.handle, self.ctx.who
        handle.log_event("retrain_start", who, f"retrain of line {handle.line} started ({self.trainer.name}, "
                                               f"{self.epochs.value()} epochs)")
        self._worker = run_task(self._run, handle, who, self.epochs.value(), name="retrain", pass_control=True,
                                on_progress=self._on_progress, on_done=self._on_done, on_error=self._on_error)

    def _run(self, handle: object, who: str, epochs: int, progress: Callable[[TrainEvent], None],
             cancel: object) -> str:
        return self.trainer.run(handle, who, progress, cancel, epochs)  # type: ignore[arg-type]

    def cancel(self) -> None:
        if self._worker is not None:
            self._cancel_requested = True
            self._worker.cancel.set()
            self.stage.setText("cancelling at the next step ...")

    def _tick(self) -> None:
        quiet = time.monotonic() - self._last_event
        if self.events and quiet >= 3:
            self.stage.setText(f"{self.events[-1].stage} · working, {quiet:.0f} s since the last report")

    def _on_progress(self, event: TrainEvent) -> None:
        self.events.append(event)
        self._last_event = time.monotonic()
        self.progress.setValue(round(100 * event.fraction))
        self.stage.setText(f"{event.stage}: {event.message}" if event.message else event.stage)
        self.log.addItem(f"{time.strftime('%H:%M:%S')}  {event.stage}  {event.message}")
        while self.log.count() > 500:
            self.log.takeItem(0)
        self.log.scrollToBottom()
        self.metrics.setRowCount(len(event.metrics))
        for row, (key, value) in enumerate(sorted(event.metrics.items())):
            self.metrics.setItem(row, 0, QTableWidgetItem(key))
            self.metrics.setItem(row, 1, QTableWidgetItem(f"{value:.4g}"))
        self.progressed.emit(event)

    def _end(self) -> None:
        self._worker = None
        self._heartbeat.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_done(self, version: str) -> None:
        self._end()
        self.candidate = version
        self.stage.setText(f"done: candidate {version} — review it and approve")
        final = self.events[-1].metrics if self.events else {}
        self.ctx.handle.log_event("retrain_done", self.ctx.who, f"retrain of line {self.ctx.handle.line} finished: "
                                  f"candidate {version}", "", {k: round(v, 4) for k, v in final.items()})
        self._fill_versions(select=version)
        self.ctx.notify(f"retrain finished: candidate {version}", "ok")
        self.finished_run.emit(version)

    def _on_error(self, error: str) -> None:
        self._end()
        if getattr(self, "_cancel_requested", False) and "Cancel" in error:
            # Asked for: not a failure. No red, no full bar; the active model and the samples are unchanged.
            self.progress.setValue(0)
            self.stage.setText("cancelled: no candidate was made; the running model is unchanged")
            self.stage.setStyleSheet(f"color: {theme.MUTED};")
            self.ctx.handle.log_event("retrain_cancelled", self.ctx.who,
                                      f"retrain of line {self.ctx.handle.line} cancelled")
            self.ctx.notify("retrain cancelled; the running model is unchanged", "info")
            self.finished_run.emit(None)
            return
        self.stage.setText(f"not finished: {error}")
        self.stage.setStyleSheet(f"color: {theme.NG};")
        self.ctx.handle.log_event("retrain_failed", self.ctx.who, f"retrain of line {self.ctx.handle.line}: {error}")
        self.ctx.notify(f"retrain failed: {error}", "error")
        self.finished_run.emit(None)

    # ------------------------------------------------------------------ versions
    def _fill_versions(self, select: str | None = None) -> None:
        try:
            self.book = self.trainer.book(self.ctx.handle)
            self.rows = list(reversed(self.book.rows()))
        except Exception as exc:  # an unreadable registry is shown, not fatal
            self.rows = []
            self.gate_note.setText(f"model registry unreadable: {exc}")
        self.versions.setRowCount(len(self.rows))
        for row, v in enumerate(self.rows):
            # The gate's refusal is the version's amber colour and "⚠" (its reasons in the tooltip and under the
            # table when selected); the date drops the year (the whole time in the tooltip).
            cells = [("⚠ " if v.gate_refused else "") + v.version, v.status.upper(), v.created[5:16]]
            cells += [f"{v.metrics[k]:.3g}" if k in v.metrics else "-" for k in METRIC_COLUMNS]
            tips = [f"{v.version}: gate refused: {v.gate_refused}" if v.gate_refused else v.version, v.status,
                    v.created, *cells[3:]]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tips[col])
                if col == 1:
                    item.setForeground(theme.qcolor(STATUS_COLOURS.get(v.status, theme.TEXT)))
                if col == 0 and v.gate_refused:
                    item.setForeground(theme.qcolor(theme.FAULT))
                self.versions.setItem(row, col, item)
            if v.version == select:
                self.versions.selectRow(row)
        self.versions.fit()
        self.rollback_button.setEnabled(self.book is not None and self.book.can_rollback())

    def _selection_changed(self) -> None:
        row = self.selected_row()
        self.gate_note.setText(f"Gate refused {row.version}: {row.gate_refused}" if row and row.gate_refused else "")

    def selected_row(self) -> VersionRow | None:
        rows = {i.row() for i in self.versions.selectedIndexes()}
        return self.rows[min(rows)] if rows else None

    def approve_selected(self) -> None:
        row = self.selected_row()
        if row is None or row.status == "active" or self.book is None:
            self.ctx.notify("select a version that is not active to approve it", "warn")
            return
        force = False
        if row.gate_refused:
            if self.confirm_force and QMessageBox.question(
                    self, "Gate refused", f"The promotion gate refused {row.version}:\n{row.gate_refused}\n\n"
                    "Deploy it anyway? This is logged as a forced promotion with your name.") \
                    != QMessageBox.StandardButton.Yes:
                return
            force = True
        reason = self.ask_reason(*self.approve_text(row))
        if reason is None:
            return
        book, handle, who = self.book, self.ctx.handle, self.ctx.who
        self._swap(lambda: book.approve(handle, row.version, who, force, reason),
                   f"model {row.version} approved and running")

    def approve_text(self, row: VersionRow) -> tuple[str, list[tuple[str, str, str]], str]:
        """Title, side-by-side rows and note of the approval of ``row`` (active vs it)."""
        rows, note = self.compare(self.active_row(), row)
        return (f"Approve model {row.version}", rows,
                f"The new version goes live on the line at once, with the live threshold shown. {note}")

    def rollback(self) -> None:
        if self.book is None or not self.book.can_rollback():
            self.ctx.notify("no earlier version to roll back to", "warn")
            return
        previous = next((r for r in self.rows if r.status == "retired"), None)
        rows, note = self.compare(self.active_row(), previous)
        reason = self.ask_reason("Roll back the model", rows,
                                 f"The version deployed before the active one goes live again, with the threshold it "
                                 f"ran with. {note}")
        if reason is None:
            return
        book, handle, who = self.book, self.ctx.handle, self.ctx.who
        self._swap(lambda: book.rollback(handle, who, reason), "rolled back")

    def active_row(self) -> VersionRow | None:
        return next((r for r in self.rows if r.status == "active"), None)

    def compare(self, now: VersionRow | None, after: VersionRow | None) -> tuple[list[tuple[str, str, str]], str]:
        """Side-by-side rows (the live thresholds, held-out figures and confusion counts) and what they are."""
        handle = self.ctx.handle
        inspector = handle.inspector
        live_after = None
        if after is not None:
            try:
                live_after = handle.threshold_if_deployed(after.version)
            except Exception:  # a damaged version: the swap itself reports it
                live_after = None
        return approval_rows(now, after, inspector.threshold if inspector is not None else None, live_after)

    def _reason_dialog(self, title: str, rows: list[tuple[str, str, str]], note: str) -> str | None:
        dialog = ApprovalDialog(title, rows, note, parent=self)
        if dialog.exec() != ApprovalDialog.DialogCode.Accepted:
            return None
        return dialog.reason_text()

    def _swap(self, action: Callable[[], object], text: str) -> None:
        self.approve_button.setEnabled(False)
        self.rollback_button.setEnabled(False)

        def done(_r: object) -> None:
            self.approve_button.setEnabled(True)
            self._fill_versions()
            self.ctx.notify(text, "ok")
            self.version_changed.emit()

        def failed(error: str) -> None:
            self.approve_button.setEnabled(True)
            self._fill_versions()
            self.ctx.notify(f"model swap failed: {error}", "error")
            self.version_changed.emit()

        run_task(action, name="model-swap", on_done=done, on_error=failed)
