"""Retrain in the background with progress and live metrics; approve or roll back model versions."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.training import ModelVersion, TrainEvent, VersionBook, find_trainer
from gui.views.engineer.context import EngineerContext
from gui.workers import TaskWorker, run_task

METRIC_COLUMNS = ("threshold", "false reject %", "escape %", "AUROC")
STATUS_COLOURS = {"active": theme.OK, "candidate": theme.INFO, "retired": theme.MUTED, "rejected": theme.NG}


class RetrainPanel(QWidget):
    """``progressed(TrainEvent)`` for every progress report, ``finished_run(ModelVersion | None)`` at the end."""

    progressed = Signal(object)
    finished_run = Signal(object)
    version_changed = Signal()

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.trainer = find_trainer()
        self.book = VersionBook()
        self.events: list[TrainEvent] = []
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
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.stage = QLabel("idle")
        self.stage.setFont(theme.font(14, bold=True))
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
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        run_box = QGroupBox("RETRAIN")
        r_lay = QVBoxLayout(run_box)
        r_lay.addWidget(info)
        r_lay.addLayout(buttons)
        r_lay.addWidget(self.stage)
        r_lay.addWidget(self.progress)
        r_lay.addWidget(QLabel("Live metrics"))
        r_lay.addWidget(self.metrics, 2)
        r_lay.addWidget(self.log, 1)

        self.versions = QTableWidget(0, 3 + len(METRIC_COLUMNS))
        self.versions.setHorizontalHeaderLabels(["Version", "Status", "Created", *METRIC_COLUMNS])
        self.versions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.versions.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
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
        v_buttons.addStretch(1)
        v_buttons.addWidget(self.rollback_button)
        v_buttons.addWidget(self.approve_button)
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
        inspector = self.ctx.handle.inspector
        if inspector is not None:
            if self.book.versions and self.book.versions[0].inspector.line.name != inspector.line.name:
                self.book = VersionBook()  # another line: its own versions
            self.book.seed(inspector)
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
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.stage.setStyleSheet("")
        self._last_event = time.monotonic()
        self._heartbeat.start()
        self.ctx.handle.log_event("retrain_start", self.ctx.who, f"retrain of line {self.ctx.handle.line} "
                                  f"started ({self.trainer.name})")
        self._worker = run_task(self.trainer.run, self.ctx.handle, name="retrain", pass_control=True,
                                on_progress=self._on_progress, on_done=self._on_done, on_error=self._on_error)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel.set()
            self.stage.setText("cancelling after the current step ...")

    def _tick(self) -> None:
        if self.events:
            step = self.events[-1].stage
            self.stage.setText(f"{step} · next step running for {time.monotonic() - self._last_event:.0f} s")

    def _on_progress(self, event: TrainEvent) -> None:
        self.events.append(event)
        self._last_event = time.monotonic()
        self.progress.setValue(round(100 * event.fraction))
        self.stage.setText(event.stage)
        note = f": {event.message}" if event.message else ""
        self.log.addItem(f"{time.strftime('%H:%M:%S')}  {event.stage}{note}")
        self.log.scrollToBottom()
        self.metrics.setRowCount(len(event.metrics))
        for row, (key, value) in enumerate(event.metrics.items()):
            self.metrics.setItem(row, 0, QTableWidgetItem(key))
            self.metrics.setItem(row, 1, QTableWidgetItem(f"{value:.4g}"))
        self.progressed.emit(event)

    def _end(self) -> None:
        self._worker = None
        self._heartbeat.stop()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_done(self, version: ModelVersion) -> None:
        self._end()
        self.book.add(version)
        self.stage.setText(f"done: candidate {version.version} — review and approve")
        self.ctx.handle.log_event("retrain_done", self.ctx.who, f"retrain of line {self.ctx.handle.line} finished: "
                                  f"candidate {version.version}", "", {k: round(v, 4) for k, v in
                                                                         version.metrics.items()})
        self._fill_versions(select=version)
        self.ctx.notify(f"retrain finished: candidate {version.version}", "ok")
        self.finished_run.emit(version)

    def _on_error(self, error: str) -> None:
        self._end()
        self.stage.setText(f"failed: {error}")
        self.stage.setStyleSheet(f"color: {theme.NG};")
        self.ctx.notify(f"retrain failed: {error}", "error")
        self.finished_run.emit(None)

    # ------------------------------------------------------------------ versions
    def _fill_versions(self, select: ModelVersion | None = None) -> None:
        versions = list(reversed(self.book.versions))
        self.versions.setRowCount(len(versions))
        for row, v in enumerate(versions):
            cells = [v.version, v.status.upper(), time.strftime("%H:%M:%S", time.localtime(v.created))]
            cells += [f"{v.metrics[k]:.3g}" if k in v.metrics else "-" for k in METRIC_COLUMNS]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(theme.qcolor(STATUS_COLOURS.get(v.status, theme.TEXT)))
                self.versions.setItem(row, col, item)
            if v is select:
                self.versions.selectRow(row)
        self.rollback_button.setEnabled(self.book.previous() is not None)

    def selected_version(self) -> ModelVersion | None:
        rows = {i.row() for i in self.versions.selectedIndexes()}
        if not rows:
            return None
        versions = list(reversed(self.book.versions))
        return versions[min(rows)]

    def approve_selected(self) -> None:
        version = self.selected_version()
        if version is None or version.status == "active":
            self.ctx.notify("select a candidate version to approve", "warn")
            return
        self._swap(lambda: self.book.approve(self.ctx.handle, version, self.ctx.who),
                   f"model {version.version} approved and running")

    def rollback(self) -> None:
        if self.book.previous() is None:
            self.ctx.notify("no earlier version to roll back to", "warn")
            return
        self._swap(lambda: self.book.rollback(self.ctx.handle, self.ctx.who), "rolled back")

    def _swap(self, action: object, text: str) -> None:
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

        run_task(action, name="model-swap", on_done=done, on_error=failed)  # type: ignore[arg-type]
