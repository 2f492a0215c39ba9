"""Operator screen: live image with overlay, the big verdict, shift counters, recent NG parts, start / stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.widgets.counters import Counters
from gui.widgets.elided import ElidedLabel
from gui.widgets.feedback import FeedbackBar
from gui.widgets.frame_view import FrameView
from gui.widgets.heat_legend import HeatLegend
from gui.widgets.ng_strip import NgStrip, PartDialog
from gui.widgets.verdict_banner import VerdictBanner
from gui.widgets.yield_trend import YieldTrend
from gui.workers import DisplayItem, StationSnapshot


class OperatorView(QWidget):
    """Shows what the station publishes; Start / Stop are requests the main window carries out."""

    start_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.last_item: DisplayItem | None = None
        self.view = FrameView("starting the station ...")
        self.heat_box = QCheckBox("Heatmap")
        self.heat_box.setChecked(True)
        self.heat_box.toggled.connect(self.view.set_show_heatmap)
        self.boxes_box = QCheckBox("Defect boxes")
        self.boxes_box.setChecked(True)
        self.boxes_box.toggled.connect(self.view.set_show_boxes)
        self.display_note = ElidedLabel("")
        self.display_note.setObjectName("hint")
        toggles = QHBoxLayout()
        toggles.addWidget(self.heat_box)
        toggles.addSpacing(16)
        toggles.addWidget(self.boxes_box)
        toggles.addSpacing(16)
        self.legend = HeatLegend()
        toggles.addWidget(self.legend)
        toggles.addSpacing(12)
        toggles.addWidget(self.display_note, 1)
        camera = QFrame()
        camera.setObjectName("panel")
        cam_lay = QVBoxLayout(camera)
        cam_lay.setContentsMargins(8, 8, 8, 8)
        cam_lay.addWidget(self.view, 1)
        cam_lay.addLayout(toggles)

        self.banner = VerdictBanner()
        self.counters = Counters()
        self.start_button = QPushButton("▶  START")
        self.start_button.setObjectName("start")
        self.start_button.setMinimumHeight(56)
        self.start_button.clicked.connect(self.start_requested)
        self.stop_button = QPushButton("■  STOP")
        self.stop_button.setObjectName("stop")
        self.stop_button.setMinimumHeight(56)
        self.stop_button.clicked.connect(self.stop_requested)
        run_row = QHBoxLayout()
        run_row.addWidget(self.start_button)
        run_row.addWidget(self.stop_button)
        self.feedback = FeedbackBar()
        self.state_note = QLabel("")
        self.state_note.setObjectName("hint")
        self.state_note.setWordWrap(True)
        # The mutual head's warm-up on lines that run it: the operator sees why early parts are judged
        # without it and when it joins (the core's LoopStats.mutual; hidden on lines without the head).
        self.mutual_note = QLabel("")
        self.mutual_note.setObjectName("hint")
        self.mutual_note.setWordWrap(True)
        self.mutual_note.hide()
        right = QVBoxLayout()
        right.setSpacing(8)
        right.addWidget(self.banner, 3)
        right.addWidget(self.counters, 2)
        right.addLayout(run_row)
        right.addWidget(self.feedback)
        right.addWidget(self.state_note)
        right.addWidget(self.mutual_note)
        right_w = QWidget()
        right_w.setLayout(right)
        # Up to 620 px on a wide panel, down to 440 on a 1280 px one; the camera takes the rest.
        right_w.setMinimumWidth(440)
        right_w.setMaximumWidth(620)
        right_w.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

        top = QHBoxLayout()
        top.setSpacing(12)
        top.addWidget(camera, 3)
        top.addWidget(right_w, 2)

        ng_caption = QLabel("RECENT NG  ·  click to enlarge")
        ng_caption.setObjectName("caption")
        self.ng_strip = NgStrip()
        self.ng_strip.opened.connect(self.open_part)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        lay.addLayout(top, 1)
        lay.addWidget(ng_caption)
        self.trend = YieldTrend()
        self.trend.setFixedHeight(self.ng_strip.height())
        bottom = QHBoxLayout()
        bottom.setSpacing(12)
        bottom.addWidget(self.ng_strip, 1)
        bottom.addWidget(self.trend)
        lay.addLayout(bottom)
        self.blocked = ""  # why the station could not start (shown instead of "stopped")
        self.set_running(False, busy=True)
        self.dialog: PartDialog | None = None

    # ------------------------------------------------------------------ feed
    def show_part(self, item: DisplayItem, ngs: list[DisplayItem]) -> None:
        """Paint the newest part (called on the GUI thread with what the feed kept)."""
        self.last_item = item
        colour = theme.NG if item.verdict == "NG" else theme.FAULT
        self.view.set_frame(item.frame, item.heat, item.roi, item.regions if item.verdict == "NG" else [], colour)
        if item.frame is None:
            self.view.set_placeholder(item.fault or "no frame")
        self.banner.show_part(item.verdict, item.part_id, item.score, item.threshold, item.defect, item.confidence,
                              item.fault)
        self.ng_strip.add_parts(ngs)
        for ng in ngs:
            if ng.verdict == "NG":
                self.trend.add_ng(ng.defect)
        self.feedback.set_part(item)
        self.legend.set_level(item.region_threshold)

    def update_status(self, snap: StationSnapshot, dropped: int) -> None:
        rate = snap.stats.rate_fps if (snap.stats is not None and snap.running) else 0.0
        self.counters.update_counts(snap.counts, rate)
        self.trend.add_counts(snap.counts)
        self.display_note.setText(f"{dropped} part(s) not painted: the screen keeps up to a few per second; "
                                  "every part is inspected and logged" if dropped else "")
        if snap.stats is not None and snap.running and snap.stats.detail:
            self.state_note.setText(f"{snap.stats.state.value}: {snap.stats.detail}")
        elif not snap.running:
            self.state_note.setText("Station stopped: no part is inspected. Press START.")
        else:
            self.state_note.setText("")
        self.set_mutual(snap.stats.mutual if snap.stats is not None and snap.running else "")

    def set_mutual(self, text: str) -> None:
        """Show the mutual head's state ("mutual head warming up: 9/16 OK parts buffered"); "" hides it."""
        self.mutual_note.setText(text[:1].upper() + text[1:])
        self.mutual_note.setVisible(bool(text))

    def set_running(self, running: bool, busy: bool = False) -> None:
        self.start_button.setEnabled(not running and not busy)
        self.stop_button.setEnabled(running and not busy)
        if not running and not busy and self.blocked:
            self.banner.show_blocked("NOT RUNNING", self.blocked)
            self.state_note.setText(self.blocked)
        elif not running and not busy:
            # A stopped station shows no verdict: the last part's big OK would read as "this part is good".
            last = self.last_item
            if last is None:
                self.view.set_placeholder("station stopped")
            self.banner.show_idle("station stopped" if last is None else
                                  f"station stopped · last part {last.part_id} {last.verdict}")

    def open_part(self, part: DisplayItem) -> None:
        self.dialog = PartDialog(part, self)
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.show()
