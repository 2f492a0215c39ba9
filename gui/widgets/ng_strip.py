"""A strip of the latest NG thumbnails (newest first); a click opens the part large with its overlay."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.widgets.frame_view import FrameView
from gui.widgets.images import to_pixmap
from gui.workers import DisplayItem


class NgStrip(QListWidget):
    """Holds up to ``keep`` NG parts; emits ``opened(DisplayItem)`` on a click."""

    opened = Signal(object)

    def __init__(self, keep: int = 20, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.keep = keep
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setIconSize(QSize(80, 80))
        self.setSpacing(6)
        self.setFixedHeight(124)  # fits a 768 px panel with the feedback bar
        self.setMovement(QListWidget.Movement.Static)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._items: dict[int, DisplayItem] = {}
        self.itemClicked.connect(self._clicked)

    def add_parts(self, parts: list[DisplayItem]) -> None:
        for part in parts:
            if part.thumb is None:
                continue
            label = f"{part.part_id}\n{(part.defect or part.verdict)}"
            item = QListWidgetItem(QIcon(to_pixmap(part.thumb)), label)
            item.setData(Qt.ItemDataRole.UserRole, part.seq)
            item.setToolTip(f"{part.part_id}  {time.strftime('%H:%M:%S', time.localtime(part.time_ns / 1e9))}"
                            f"  {part.verdict} {part.defect or ''}  score {part.score:.3f}")
            self.insertItem(0, item)
            self._items[part.seq] = part
        while self.count() > self.keep:
            old = self.takeItem(self.count() - 1)
            self._items.pop(old.data(Qt.ItemDataRole.UserRole), None)

    def part(self, row: int) -> DisplayItem | None:
        item = self.item(row)
        return self._items.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _clicked(self, item: QListWidgetItem) -> None:
        part = self._items.get(item.data(Qt.ItemDataRole.UserRole))
        if part is not None:
            self.opened.emit(part)


class PartDialog(QDialog):
    """One part enlarged: frame, heatmap, boxes, verdict line."""

    def __init__(self, part: DisplayItem, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Part {part.part_id}")
        self.resize(900, 760)
        view = FrameView()
        view.set_frame(part.frame, part.heat, part.roi, part.regions,
                       theme.NG if part.verdict == "NG" else theme.FAULT)
        colour = theme.VERDICT_COLOURS.get(part.verdict, theme.IDLE)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(part.time_ns / 1e9))
        head = QLabel(f"<span style='color:{colour}; font-size:28pt; font-weight:bold'>{part.verdict}</span>"
                      f"&nbsp;&nbsp;<span style='font-size:18pt'>{part.defect or ''}</span>"
                      f"<br><span style='color:{theme.MUTED}'>part {part.part_id} · seq {part.seq} · {stamp} · "
                      f"score {part.score:.3f} / threshold {part.threshold:.3f} · line {part.line}</span>")
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row = QHBoxLayout()
        row.addWidget(head, 1)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(view, 1)
