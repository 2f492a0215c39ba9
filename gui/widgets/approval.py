"""Safe approvals: before a model or threshold goes live, the engineer sees what changes and says why.

A side-by-side of what runs now and what will run (held-out AUROC, false reject and escape at the operating
threshold, the threshold that will be live), and a required reason that goes into the audit event.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
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
        self.resize(640, self.sizeHint().height())

    def reason_text(self) -> str:
        return self.reason.text().strip()
