"""Few-shot capture: add the current frame as good or as a defect class; browse and delete samples."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.views.engineer.context import EngineerContext
from gui.widgets.frame_view import FrameView
from gui.widgets.images import to_pixmap
from inspector.frames.imaging import load_image
from inspector.tuning.samples import GOOD, Sample

THUMB = 120


PROPOSED = "proposed by operators"


class SamplePanel(QWidget):
    """Captures write PNGs into the line's few-shot folder; they count after the next retrain."""

    samples_changed = Signal()

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.confirm_delete = True
        self.captured: Path | None = None
        self.view = FrameView("the current frame appears here while the line runs")
        self.part_label = QLabel("")
        self.part_label.setFont(theme.font(14, bold=True))
        self.good_button = QPushButton("+  Add as GOOD")
        self.good_button.setStyleSheet(f"background: {theme.OK}; color: white; font-weight: bold; font-size: 14pt;")
        self.good_button.clicked.connect(lambda: self.capture(GOOD))
        self.defect_class = QComboBox()
        self.defect_class.setEditable(True)
        self.defect_button = QPushButton("+  Add as DEFECT")
        self.defect_button.setStyleSheet(f"background: {theme.NG}; color: white; font-weight: bold; font-size: 14pt;")
        self.defect_button.clicked.connect(lambda: self.capture(self.defect_class.currentText().strip()))
        self.refresh_frame_button = QPushButton("⟳ Take the latest frame")
        self.refresh_frame_button.clicked.connect(self.refresh_frame)
        defect_row = QHBoxLayout()
        defect_row.addWidget(self.defect_class, 1)
        defect_row.addWidget(self.defect_button)
        cap_box = QGroupBox("CAPTURE")
        cap_lay = QVBoxLayout(cap_box)
        cap_lay.addWidget(self.view, 1)
        cap_lay.addWidget(self.part_label)
        cap_lay.addWidget(self.refresh_frame_button)
        cap_lay.addWidget(self.good_button)
        cap_lay.addLayout(defect_row)

        self.filter = QComboBox()
        self.filter.currentIndexChanged.connect(lambda _i: self._fill())
        self.count_label = QLabel("")
        self.count_label.setObjectName("hint")
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setSpacing(8)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.accept_button = QPushButton("Accept into the set")
        self.accept_button.setObjectName("primary")
        self.accept_button.setToolTip("Move the selected operator proposals into the samples "
                                      "(the next retrain uses them)")
        self.accept_button.clicked.connect(self.accept_selected)
        self.delete_button = QPushButton("Delete selected")
        self.delete_button.setObjectName("danger")
        self.delete_button.clicked.connect(self.delete_selected)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.filter)
        top.addStretch(1)
        top.addWidget(self.count_label)
        bottom = QHBoxLayout()
        self.folder_label = QLabel("")
        self.folder_label.setObjectName("hint")
        bottom.addWidget(self.folder_label, 1)
        bottom.addWidget(self.accept_button)
        bottom.addWidget(self.delete_button)
        browse = QGroupBox("SAMPLES OF THIS LINE · used by the next retrain")
        b_lay = QVBoxLayout(browse)
        b_lay.addLayout(top)
        b_lay.addWidget(self.list, 1)
        b_lay.addLayout(bottom)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.addWidget(cap_box, 2)
        lay.addWidget(browse, 3)
        self.samples: list[Sample] = []
        self.proposals: list[Sample] = []
        self._frame = None

    def refresh(self) -> None:
        self.refresh_frame()
        classes = list(self.ctx.handle.line_config().prompts.defects)
        store = self.ctx.samples()
        self.samples = store.samples()
        self.proposals = store.candidates().samples()
        classes += sorted({s.label for s in self.samples if s.label != GOOD} - set(classes))
        current = self.defect_class.currentText()
        self.defect_class.clear()
        self.defect_class.addItems(classes)
        if current:
            self.defect_class.setCurrentText(current)
        shown = self.filter.currentText()
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItems(["all", GOOD, *classes, PROPOSED])
        self.filter.setCurrentText(shown or "all")
        self.filter.blockSignals(False)
        self.folder_label.setText(str(store.folder))
        self._fill()

    def refresh_frame(self) -> None:
        item = self.ctx.current_frame()
        self._frame = item
        if item is None or item.frame is None:
            self.view.set_placeholder("no frame yet: start the line")
            self.part_label.setText("")
            return
        self.view.set_frame(item.frame)
        colour = theme.VERDICT_COLOURS.get(item.verdict, theme.IDLE)
        self.part_label.setText(f"Part {item.part_id} · judged <span style='color:{colour}'>{item.verdict}</span>"
                                + (f" {item.defect}" if item.defect and item.verdict == "NG" else ""))

    def _fill(self) -> None:
        wanted = self.filter.currentText() or "all"
        self.list.clear()
        proposals = wanted == PROPOSED
        self.accept_button.setEnabled(proposals and bool(self.proposals))
        shown = self.proposals if proposals else [s for s in self.samples if wanted in ("all", s.label)]
        for s in shown:
            try:
                image = load_image(s.path)
            except Exception:  # an unreadable file is listed, so it can be deleted
                image = None
            item = QListWidgetItem(s.path.name if image is None else s.label)
            if image is not None:
                item.setIcon(QIcon(to_pixmap(image)))
            item.setToolTip(str(s.path))
            item.setData(Qt.ItemDataRole.UserRole, str(s.path))
            item.setForeground(theme.qcolor(theme.OK if s.label == GOOD else theme.NG))
            self.list.addItem(item)
        n_good = sum(s.label == GOOD for s in self.samples)
        self.count_label.setText(f"{n_good} good · {len(self.samples) - n_good} defect"
                                 + (f" · {len(self.proposals)} proposed by operators" if self.proposals else ""))

    def capture(self, label: str) -> Path | None:
        """Save the frame shown on the left as a sample of ``label``; returns the new file."""
        self.ctx.session.touch()
        item = self._frame
        if item is None or item.frame is None:
            self.ctx.notify("no frame to capture: start the line first", "warn")
            return None
        if not label:
            self.ctx.notify("choose or type a defect class first", "warn")
            return None
        try:
            if self.ctx.handle.line_config().fewshot.folder is None:  # first sample: the line gets a folder
                rel = f"fewshot/{self.ctx.handle.line}"
                self.ctx.handle.update_line({"fewshot.folder": rel}, self.ctx.who, "config",
                                            f"few-shot folder of line {self.ctx.handle.line} set to {rel}")
            path = self.ctx.samples().add(item.frame, label, item.part_id)
        except (OSError, ValueError) as exc:
            self.ctx.notify(f"capture failed: {exc}", "error")
            return None
        self.ctx.handle.log_event("sample_add", self.ctx.who, f"few-shot sample added to line "
                                  f"{self.ctx.handle.line} as {label}: {path.name}", "",
                                  {"file": str(path), "label": label, "part_id": item.part_id,
                                   "judged": item.verdict})
        self.captured = path
        self.ctx.notify(f"added {path.name} as {label}; retrain to use it", "ok")
        self.refresh()
        self.samples_changed.emit()
        return path

    def accept_selected(self) -> int:
        """Move the selected operator proposals into the line's samples (audited with the engineer's name)."""
        if self.filter.currentText() != PROPOSED:
            return 0
        paths = [Path(i.data(Qt.ItemDataRole.UserRole)) for i in self.list.selectedItems()]
        store = self.ctx.samples()
        for path in paths:
            target = store.accept(path)
            self.ctx.handle.log_event("sample_accept", self.ctx.who, f"operator proposal accepted into line "
                                      f"{self.ctx.handle.line}: {target.name}", {"file": str(path)},
                                      {"file": str(target)})
        if paths:
            self.ctx.notify(f"{len(paths)} proposal(s) accepted; retrain to use them", "ok")
            self.refresh()
            self.samples_changed.emit()
        return len(paths)

    def delete_selected(self) -> int:
        paths = [Path(i.data(Qt.ItemDataRole.UserRole)) for i in self.list.selectedItems()]
        if not paths:
            return 0
        if self.confirm_delete:
            answer = QMessageBox.question(self, "Delete samples", f"Delete {len(paths)} sample(s)? They are moved "
                                          "to the folder's .deleted/ and no longer used by a retrain.")
            if answer != QMessageBox.StandardButton.Yes:
                return 0
        store = self.ctx.samples()
        for path in paths:
            target = store.delete(path)
            self.ctx.handle.log_event("sample_delete", self.ctx.who, f"few-shot sample removed from line "
                                      f"{self.ctx.handle.line}: {path.name}", {"file": str(path)},
                                      {"moved_to": str(target)})
        self.ctx.notify(f"{len(paths)} sample(s) deleted; retrain to apply", "ok")
        self.refresh()
        self.samples_changed.emit()
        return len(paths)
