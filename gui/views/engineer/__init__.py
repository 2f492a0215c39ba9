"""Engineer screen: prompts, threshold, few-shot samples, retrain and model versions, camera; locked without a PIN."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from gui.session import EngineerSession
from gui.views.camera import CameraPanel
from gui.views.engineer.context import EngineerContext
from gui.views.engineer.prompts import PromptPanel
from gui.views.engineer.retrain import RetrainPanel
from gui.views.engineer.samples import SamplePanel
from gui.views.engineer.threshold import ThresholdPanel
from gui.widgets.padlock import Padlock
from gui.workers import DisplayItem
from inspector.station.handle import StationHandle

__all__ = ["EngineerContext", "EngineerView"]


class EngineerView(QStackedWidget):
    """Page 0: the lock screen; page 1: the panels (only while an engineer is logged in)."""

    def __init__(self, handle: StationHandle, session: EngineerSession,
                 current_frame: Callable[[], DisplayItem | None], notify: Callable[[str, str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = EngineerContext(handle, session, current_frame, notify)
        lock = QWidget()
        lay = QVBoxLayout(lock)
        lay.addStretch(1)
        icon = Padlock(110)
        text = QLabel("Engineer mode is locked.\nLog in with the engineer PIN (top right) to change prompts, "
                      "thresholds, samples and models.\nEvery change is written to the audit log with your name.")
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setStyleSheet("font-size: 15pt;")
        self.login_button = QPushButton("Log in")
        self.login_button.setObjectName("primary")
        self.login_button.setFixedWidth(220)
        lay.addWidget(icon, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(text)
        lay.addSpacing(16)
        lay.addWidget(self.login_button, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addStretch(2)
        self.prompts = PromptPanel(self.ctx)
        self.threshold = ThresholdPanel(self.ctx)
        self.samples = SamplePanel(self.ctx)
        self.retrain = RetrainPanel(self.ctx)
        self.camera = CameraPanel(self.ctx)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.prompts, "Prompts")
        self.tabs.addTab(self.threshold, "Threshold")
        self.tabs.addTab(self.samples, "Few-shot samples")
        self.tabs.addTab(self.retrain, "Retrain && models")
        self.tabs.addTab(self.camera, "Camera")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.samples.samples_changed.connect(self.prompts.invalidate_samples)
        # A model swap changes the live threshold (the version's record): show the new one and where it came from.
        self.retrain.version_changed.connect(self.threshold.refresh)
        self.prompts.applied.connect(self.threshold.refresh)
        self.addWidget(lock)
        self.addWidget(self.tabs)
        self.login_button.clicked.connect(self._ask_login)

    def _ask_login(self) -> None:
        window = self.window()
        if hasattr(window, "login"):
            window.login()

    def set_engineer(self, who: str) -> None:
        self.setCurrentIndex(1 if who else 0)
        if who:
            self.station_changed()

    def station_changed(self) -> None:
        """The line or its engine changed: reload what the panels show."""
        if not self.ctx.session.active:
            return
        for panel in (self.prompts, self.threshold, self.samples, self.retrain, self.camera):
            panel.refresh()

    def _tab_changed(self, _index: int) -> None:
        self.ctx.session.touch()
        self.tabs.currentWidget().refresh()

    def shutdown(self) -> None:
        self.retrain.cancel()
