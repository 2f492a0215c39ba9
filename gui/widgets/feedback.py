"""Operator feedback on a part: "not a defect" (a false reject) or "real defect" (with its class).

The part's full frame becomes a few-shot *candidate* of the line (``.candidates/good`` or
``.candidates/defect/<class>``): the engineer sees it in the samples tab and accepts it into the set, so
the station learns from its own mistakes without an operator changing what the model fits on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from gui.workers import DisplayItem


@dataclass(frozen=True)
class FeedbackPart:
    """A part from the log (History) with what feedback needs; a live DisplayItem has the same fields."""

    frame: np.ndarray | None  # the stored full frame, else the thumbnail
    part_id: str
    verdict: str
    defect: str | None
    seq: int


class FeedbackBar(QWidget):
    """``feedback(item, label)``: label "good" for a false reject, else the confirmed defect class."""

    feedback = Signal(object, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.item: DisplayItem | FeedbackPart | None = None
        caption = QLabel("WAS THIS VERDICT RIGHT?")
        caption.setObjectName("caption")
        self.good_button = QPushButton("✗ Not a defect")
        self.good_button.setToolTip("The station rejected a good part: propose it as a good sample")
        self.good_button.clicked.connect(lambda: self._send("good"))
        self.defect_button = QPushButton("✓ Real defect")
        self.defect_button.setToolTip("Confirm the defect (class on the right): propose it as a defect sample")
        self.defect_button.clicked.connect(lambda: self._send(self.defect_class.currentText().strip()))
        self.defect_class = QComboBox()
        self.defect_class.setEditable(True)
        self.defect_class.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.defect_class.setMinimumContentsLength(6)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.good_button)
        row.addWidget(self.defect_button)
        row.addWidget(self.defect_class, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(caption)
        lay.addLayout(row)
        self.set_part(None)

    def set_classes(self, classes: list[str]) -> None:
        current = self.defect_class.currentText()
        self.defect_class.clear()
        self.defect_class.addItems(classes)
        if current:
            self.defect_class.setCurrentText(current)
        elif classes:
            self.defect_class.setCurrentIndex(0)

    def set_part(self, item: DisplayItem | FeedbackPart | None) -> None:
        """The part the buttons speak about (the one on screen); None disables them."""
        self.item = item
        usable = item is not None and item.frame is not None and item.verdict in ("OK", "NG")
        self.good_button.setEnabled(usable and item.verdict == "NG")  # type: ignore[union-attr]
        self.defect_button.setEnabled(usable)
        if item is not None and item.verdict == "NG" and item.defect:
            self.defect_class.setCurrentText(item.defect)

    def _send(self, label: str) -> None:
        if self.item is not None and label:
            self.feedback.emit(self.item, label)
