"""Prompt editor: object name, normal states, named defects; live zero-shot preview before applying."""

from __future__ import annotations

import math

from pydantic import ValidationError
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.plain import plain_errors
from gui.views.engineer.context import EngineerContext
from gui.widgets.frame_view import FrameView
from gui.workers import TaskWorker, heat_rgba, run_task
from inspector.backbone.dense import Features
from inspector.engine import FewShotSet
from inspector.tuning.prompt_preview import PromptDraft, PromptPreview, preview_prompts

DEBOUNCE_MS = 700


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


class PromptPanel(QWidget):
    """Edits the current line's prompts; ``previewed(PromptPreview)`` after each preview."""

    previewed = Signal(object)
    applied = Signal()

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.draft: PromptDraft | None = None
        self.preview: PromptPreview | None = None
        self._worker: TaskWorker | None = None
        self._again = False
        self._loading = False
        self._samples: FewShotSet | None = None
        self._sample_features: Features | None = None  # of _samples, encoded by the live engine
        self._features_key: tuple[int, int] | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.run_preview)

        self.object_name = QLineEdit()
        self.normal_states = QPlainTextEdit()
        self.normal_states.setPlaceholderText("one state per line, {} = the object: flawless {}")
        self.normal_states.setFixedHeight(130)
        self.defects = QTableWidget(0, 2)
        self.defects.setHorizontalHeaderLabels(["Defect class", "Description"])
        self.defects.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.defects.verticalHeader().setVisible(False)
        self.defects.setColumnWidth(0, 150)
        add = QPushButton("+ Defect")
        add.clicked.connect(self._add_defect)
        remove = QPushButton("− Remove selected")
        remove.clicked.connect(self._remove_defect)
        defect_buttons = QHBoxLayout()
        defect_buttons.addWidget(add)
        defect_buttons.addWidget(remove)
        defect_buttons.addStretch(1)
        form = QFormLayout()
        form.addRow("Object name", self.object_name)
        form.addRow("Normal states", self.normal_states)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.FAULT};")
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(lambda: self.refresh(force=True))
        self.preview_button = QPushButton("Preview now")
        self.preview_button.clicked.connect(self.run_preview)
        self.apply_button = QPushButton("Apply to line")
        self.apply_button.setObjectName("primary")
        self.apply_button.clicked.connect(self.apply)
        actions = QHBoxLayout()
        actions.addWidget(self.revert_button)
        actions.addStretch(1)
        actions.addWidget(self.preview_button)
        actions.addWidget(self.apply_button)
        edit_box = QGroupBox("PROMPTS OF THIS LINE")
        edit_lay = QVBoxLayout(edit_box)
        edit_lay.addLayout(form)
        edit_lay.addWidget(QLabel("Named defects"))
        edit_lay.addWidget(self.defects, 1)
        edit_lay.addLayout(defect_buttons)
        edit_lay.addWidget(self.error)
        edit_lay.addLayout(actions)

        self.view = FrameView("the current frame appears here while the line runs")
        self.frame_score = QLabel("-")
        self.frame_score.setFont(theme.font(20, bold=True))
        self.frame_score.setWordWrap(True)  # wraps on a 1280 px panel instead of widening the window
        self.separation = QLabel("")
        self.separation.setWordWrap(True)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Sample", "Class", "Before", "After", "Change"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        prev_box = QGroupBox("LIVE PREVIEW · ZERO-SHOT SCORE (THE PROMPTS' PART OF THE DECISION)")
        prev_lay = QVBoxLayout(prev_box)
        top = QHBoxLayout()
        top.addWidget(self.view, 3)
        side = QVBoxLayout()
        cap = QLabel("CURRENT FRAME  before → after")
        cap.setObjectName("caption")
        side.addWidget(cap)
        side.addWidget(self.frame_score)
        side.addWidget(self.separation)
        side.addStretch(1)
        side.addWidget(self.status)
        top.addLayout(side, 2)
        prev_lay.addLayout(top, 3)
        prev_lay.addWidget(QLabel("Few-shot samples"))
        prev_lay.addWidget(self.table, 2)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.addWidget(edit_box, 2)
        lay.addWidget(prev_box, 3)
        self.object_name.textEdited.connect(self._edited)
        self.normal_states.textChanged.connect(self._edited)
        self.defects.itemChanged.connect(self._edited)

    # ------------------------------------------------------------------ editing
    def refresh(self, force: bool = False) -> None:
        """Load the line's prompts into the editor (keeps unsaved edits unless ``force``)."""
        if self.draft is not None and self.is_dirty() and not force:
            return
        draft = PromptDraft.from_line(self.ctx.handle.line_config())
        self.draft = draft
        self._loading = True
        self.object_name.setText(draft.object_name)
        self.normal_states.setPlainText("\n".join(draft.normal_states))
        self.defects.setRowCount(0)
        for label, text in draft.defects.items():
            self._add_defect(label, text)
        self._loading = False
        self.error.setText("")
        self.invalidate_samples()
        self.run_preview()

    def invalidate_samples(self) -> None:
        self._samples = None
        self._sample_features = self._features_key = None

    def _add_defect(self, label: str = "", text: str = "") -> None:
        row = self.defects.rowCount()
        self.defects.insertRow(row)
        self.defects.setItem(row, 0, QTableWidgetItem(label if isinstance(label, str) else ""))
        self.defects.setItem(row, 1, QTableWidgetItem(text))

    def _remove_defect(self) -> None:
        rows = sorted({i.row() for i in self.defects.selectedIndexes()}, reverse=True)
        for row in rows:
            self.defects.removeRow(row)
        self._edited()

    def current_draft(self) -> PromptDraft:
        states = tuple(s.strip() for s in self.normal_states.toPlainText().splitlines() if s.strip())
        defects: dict[str, str] = {}
        for row in range(self.defects.rowCount()):
            label = (self.defects.item(row, 0) or QTableWidgetItem("")).text().strip()
            text = (self.defects.item(row, 1) or QTableWidgetItem("")).text().strip()
            if label or text:
                defects[label] = text
        return PromptDraft(self.object_name.text().strip(), states, defects)

    def is_dirty(self) -> bool:
        return self.draft is not None and self.current_draft() != self.draft

    def _edited(self, *_args: object) -> None:
        if self._loading:
            return
        self.ctx.session.touch()
        self._debounce.start()

    def _validated(self) -> PromptDraft | None:
        draft = self.current_draft()
        try:
            draft.apply(self.ctx.handle.line_config())
        except ValidationError as exc:
            self.error.setText("\n".join(plain_errors(exc)))
            return None
        self.error.setText("")
        return draft

    # ------------------------------------------------------------------ preview
    def run_preview(self) -> None:
        """Preview the draft on the current frame and the samples, in the background (one at a time)."""
        if self._worker is not None:
            self._again = True
            return
        draft = self._validated()
        inspector = self.ctx.handle.inspector
        if draft is None or inspector is None:
            return
        item = self.ctx.current_frame()
        frame = item.frame if item is not None else None
        handle = self.ctx.handle
        folder = self.ctx.sample_folder()
        max_shots = handle.line_config().fewshot.max_shots

        def compute() -> PromptPreview:
            samples = self._samples
            if samples is None:
                samples = FewShotSet.from_folder(folder, max_shots) if folder.is_dir() else None
                self._samples = samples
            key = (id(inspector), id(samples))
            cached = self._sample_features if self._features_key == key else None
            preview = handle.build_engine(draft.apply(handle.line_config()))
            result = preview_prompts(inspector, preview, frame, samples, cached)
            if self._samples is samples:  # not invalidated meanwhile
                self._sample_features, self._features_key = result.sample_features, key
            return result

        self.status.setText("computing preview ...")
        self._preview_frame = frame
        self._worker = run_task(compute, name="prompt-preview", on_done=self._show_preview,
                                on_error=self._preview_failed)

    def _finish_worker(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.run_preview()

    def _preview_failed(self, error: str) -> None:
        self.status.setText(f"preview failed: {error}")
        self.ctx.notify(f"prompt preview failed: {error}", "error")
        self._finish_worker()

    def _show_preview(self, preview: PromptPreview) -> None:
        self.preview = preview
        fp = preview.frame
        if fp is not None:
            delta = fp.after - fp.before
            colour = theme.NG if delta > 0 else theme.OK
            self.frame_score.setText(f"{_fmt(fp.before)} → {_fmt(fp.after)}  "
                                     f"<span style='color:{colour}'>({delta:+.3f})</span>")
            self.frame_score.setTextFormat(Qt.TextFormat.RichText)
            heat = heat_rgba(preview.frame_map, float("nan")) if preview.frame_map is not None else None
            self.view.set_frame(self._preview_frame, heat)
        else:
            self.frame_score.setText("no frame yet")
        if preview.auroc_before is not None:
            self.separation.setText(f"Good vs defect separation (AUROC on samples):\n"
                                    f"{preview.auroc_before:.2f} → {preview.auroc_after:.2f}")
        else:
            self.separation.setText("Capture good and defect samples to see how well the prompts separate them.")
        self.table.setRowCount(len(preview.samples))
        for row, s in enumerate(preview.samples):
            delta = s.after - s.before
            cells = [s.label, s.kind, _fmt(s.before), _fmt(s.after), f"{delta:+.3f}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(theme.qcolor(theme.OK if s.kind == "good" else theme.NG))
                self.table.setItem(row, col, item)
        self.status.setText(f"preview in {preview.seconds:.1f} s")
        self._finish_worker()
        self.previewed.emit(preview)

    # ------------------------------------------------------------------ apply
    def apply(self) -> None:
        """Write the prompts to the station YAML, re-fit the line and swap it in (audit-logged)."""
        draft = self._validated()
        if draft is None or self.draft is None:
            return
        if draft == self.draft:
            self.ctx.notify("prompts unchanged", "info")
            return
        what = f"prompts of line {self.ctx.handle.line} changed"
        self.apply_button.setEnabled(False)
        self.ctx.notify("applying prompts: re-fitting the line (it keeps inspecting meanwhile) ...", "info")
        run_task(self.ctx.handle.update_line, draft.updates(), self.ctx.who, "prompts", what, True,
                 name="prompts-apply", on_done=self._applied, on_error=self._apply_failed)

    def _applied(self, _result: object) -> None:
        self.apply_button.setEnabled(True)
        self.ctx.notify("prompts applied and logged", "ok")
        self.draft = None
        self.refresh(force=True)
        self.applied.emit()

    def _apply_failed(self, error: str) -> None:
        self.apply_button.setEnabled(True)
        self.ctx.notify(f"prompts not applied: {error}", "error")
