"""Safe approvals: before a model or threshold goes live, the engineer sees what changes and says why.

A side-by-side of what runs now and what will run (the threshold that will be live, held-out AUROC, false reject
and escape at the operating threshold, the confusion counts on the held-out parts), and a required reason that
goes into the audit event.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


class ApprovalDialog(QDialog):
    """``rows``: (what, now, after) triples; OK stays disabled until a reason is typed."""

    def __init__(self, title: str, rows: Sequence[tuple[str, str, str]], note: str = "",
                 columns: tuple[str, str] = ("running now", "after this change"),
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setModal(True)
        heading = QLabel(title)
        heading.setObjectName("title")
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["", *columns])
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setWordWrap(True)  # a threshold's source is a sentence: wrapped, never cut
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)  # read-only figures, not a form
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        header.sectionResized.connect(lambda *_: self._fit_rows())
        self.table.setMinimumHeight(40 + 36 * len(rows))
        self.note = QLabel(note)
        self.note.setWordWrap(True)
        self.note.setObjectName("hint")
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("reason (required; recorded in the audit log with your name)")
        self.ok_button = QPushButton("Confirm")
        self.ok_button.setObjectName("primary")
        self.ok_button.setEnabled(False)
        self.ok_button.clicked.connect(self.accept)
        self.reason.textChanged.connect(lambda t: self.ok_button.setEnabled(bool(t.strip())))
        self.reason.returnPressed.connect(lambda: self.ok_button.isEnabled() and self.accept())
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(cancel)
        buttons.addStretch(1)
        buttons.addWidget(self.ok_button)
        lay = QVBoxLayout(self)
        lay.addWidget(heading)
        lay.addWidget(self.table)
        lay.addWidget(self.note)
        lay.addWidget(self.reason)
        lay.addLayout(buttons)
        self.resize(760, self.sizeHint().height())

    def _fit_rows(self) -> None:
        """Rows as high as their wrapped text at the columns' width; the table as high as its rows (to a cap)."""
        self.table.resizeRowsToContents()
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(min(520, self.table.horizontalHeader().height() + rows + 2 * self.table.frameWidth()))
        self.resize(self.width(), self.sizeHint().height())

    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        self._fit_rows()

    def reason_text(self) -> str:
        return self.reason.text().strip()
