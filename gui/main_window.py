"""Main window: header (line, status lights, engineer login), the three screens, and the station's tasks.

The window never runs station work itself: start, stop and changeover run as TaskWorkers; figures come
from the StatusPoller; parts from the DisplayFeed (the station's observer).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.pin import PinStore
from gui.session import EngineerSession
from gui.views.engineer import EngineerView
from gui.views.history import HistoryView
from gui.views.operator import OperatorView
from gui.widgets.elided import ElidedLabel
from gui.widgets.feedback import FeedbackPart
from gui.widgets.link_bar import LinkBar
from gui.widgets.pin_dialog import LoginDialog, SetPinDialog
from gui.widgets.status_light import StatusLight
from gui.workers import DisplayFeed, DisplayItem, StationSnapshot, StatusPoller, run_task, wait_workers
from inspector.station.handle import StationHandle

_logger = logging.getLogger(__name__)

UNTRAINED = "UNTRAINED BACKBONE"


def start_refusal(error: str, log_dir: object) -> str:
    """What the operator reads when START failed: in the GUI's words (``inspector gui`` has no --standby)."""
    if error.startswith("StationBusyError"):
        holder = error.split("(", 1)[1].split(")", 1)[0] if "(" in error else "another process"
        return (f"Another station is already running on the log folder {log_dir} ({holder}). This window inspects "
                "nothing. Close the other station first, or open this GUI with its own --log-dir.")
    return f"Start failed: {error.split(': ', 1)[-1]}"


class MainWindow(QMainWindow):
    """The station's one window. ``autostart`` starts the line as soon as the window exists."""

    def __init__(self, handle: StationHandle, pins: PinStore, *, autostart: bool = True,
                 confirm_changeover: bool = True, poll_s: float = 0.5, max_display_hz: float = 6.0) -> None:
        super().__init__()
        self.handle = handle
        self.confirm_changeover = confirm_changeover
        self.busy = False
        self.last_error = ""
        self.last_snapshot: StationSnapshot | None = None
        self.setWindowTitle(f"CLIP Inspector · {handle.config.station}")
        self.feed = DisplayFeed(parent=self)
        self.feed.region_level = lambda: float(getattr(handle.inspector, "region_threshold", float("nan")))
        handle.add_observer(self.feed.push, name="gui", queue_size=4)
        self.session = EngineerSession(pins, handle, parent=self)

        self.operator = OperatorView()
        self.engineer = EngineerView(handle, self.session, self.current_frame, self.notify)
        self.history = HistoryView(handle, self.notify)
        self.stack = QStackedWidget()
        for view in (self.operator, self.engineer, self.history):
            self.stack.addWidget(view)

        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._build_header())
        lay.addWidget(self.stack, 1)
        lay.addWidget(self._build_footer())
        self.setCentralWidget(central)

        self.operator.feedback.feedback.connect(self.record_feedback)
        self.history.feedback.feedback.connect(self.record_feedback)
        for bar in (self.operator.feedback, self.history.feedback):
            bar.set_classes(list(handle.line_config().prompts.defects))
        self.operator.start_requested.connect(self.start_station)
        self.operator.stop_requested.connect(self.stop_station)
        # Paint at most max_display_hz: nobody reads faster, and a fast line must not pay for pixels.
        self._paint_timer = QTimer(self)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(round(1000 / max_display_hz))
        self._paint_timer.timeout.connect(self._paint)
        self.feed.updated.connect(self._on_feed)
        self.session.changed.connect(self._on_session)
        self.poller = StatusPoller(handle, poll_s, self)
        self.poller.snapshot.connect(self._on_snapshot)
        self.poller.start()
        self._clock = QTimer(self)
        self._clock.timeout.connect(self._tick)
        self._starting_since: float | None = None
        self._clock.start(1000)
        self._closed = False
        if autostart:
            self.start_station()

    # ------------------------------------------------------------------ layout
    def _build_header(self) -> QWidget:
        bar = QFrame()
        bar.setObjectName("header")
        bar.setStyleSheet(f"QFrame#header {{ background: {theme.PANEL}; border-bottom: 1px solid {theme.BORDER}; }}")
        # Sized for a 1280 px panel: the lights sit in a 2 x 2 grid, long texts are elided (whole in tooltips).
        brand = QLabel(f"<b style='font-size:12pt'>CLIP INSPECTOR</b><br>"
                       f"<span style='color:{theme.MUTED}'>{self.handle.config.station}</span>")
        brand.setMaximumWidth(200)
        line_cap = QLabel("LINE")
        line_cap.setObjectName("caption")
        self.line_combo = QComboBox()
        self.line_combo.setObjectName("line")
        self.line_combo.addItems(self.handle.line_names())
        self.line_combo.setCurrentText(self.handle.line)
        self.line_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.line_combo.setMinimumContentsLength(8)
        self.line_combo.activated.connect(lambda _i: self.request_changeover(self.line_combo.currentText()))
        line_box = QVBoxLayout()
        line_box.setSpacing(2)
        line_box.addWidget(line_cap)
        line_box.addWidget(self.line_combo)

        self.nav = QButtonGroup(self)
        nav_row = QHBoxLayout()
        nav_row.setSpacing(0)
        self.nav_buttons: dict[str, QPushButton] = {}
        for i, name in enumerate(("OPERATOR", "ENGINEER", "HISTORY")):
            b = QPushButton(name)
            b.setObjectName("nav")
            b.setCheckable(True)
            self.nav.addButton(b, i)
            nav_row.addWidget(b)
            self.nav_buttons[name] = b
        self.nav_buttons["OPERATOR"].setChecked(True)
        self.nav.idClicked.connect(self.show_screen)

        self.station_light = StatusLight("Station")
        self.camera_light = StatusLight("Camera")
        self.plc_light = StatusLight("PLC")
        self.model_light = StatusLight("Model")
        lights = QGridLayout()
        lights.setHorizontalSpacing(6)
        lights.setVerticalSpacing(2)
        for i, light in enumerate((self.station_light, self.camera_light, self.plc_light, self.model_light)):
            lights.addWidget(light, i // 2, i % 2)
        self.engineer_button = QPushButton("Engineer login")
        self.engineer_button.clicked.connect(self.toggle_login)
        self.engineer_button.setFixedWidth(170)
        self.clock = QLabel(time.strftime("%H:%M:%S"))
        self.clock.setFont(theme.font(13, bold=True))

        row = QHBoxLayout(bar)
        row.setContentsMargins(12, 4, 12, 0)
        row.setSpacing(10)
        row.addWidget(brand)
        row.addLayout(line_box)
        row.addLayout(nav_row)
        row.addStretch(1)
        row.addLayout(lights)
        row.addWidget(self.engineer_button)
        row.addWidget(self.clock)
        return bar

    def _build_footer(self) -> QWidget:
        self.footer = ElidedLabel("")
        self.footer.setObjectName("hint")
        self.footer.setContentsMargins(16, 4, 16, 6)
        self.untrained = ElidedLabel("")
        self.untrained.setObjectName("hint")
        self.links = LinkBar()  # MQTT / OPC UA / database of the YAML's outputs; hidden when there are none
        self.links.set_states(self.handle.link_states())
        bar = QFrame()
        bar.setStyleSheet(f"background: {theme.PANEL}; border-top: 1px solid {theme.BORDER};")
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 16, 0)
        row.addWidget(self.footer, 3)
        row.addWidget(self.untrained, 2)
        row.addWidget(self.links)
        return bar

    # ------------------------------------------------------------------ screens and login
    def show_screen(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.nav.button(index).setChecked(True)
        if index == 2:
            self.history.ensure_loaded()
        self.session.touch()

    def toggle_login(self) -> None:
        if self.session.active:
            self.session.logout()
            return
        self.login()

    def login(self) -> bool:
        """Ask for the PIN (or, on a station without one, set it up); True when logged in."""
        store = self.session.store
        name = ""  # not the last engineer's: on a shared panel the next one would log in under that name
        if not store.is_set:
            setup = SetPinDialog(store, self)
            if setup.exec() != SetPinDialog.DialogCode.Accepted:
                return False
            self.session.pin_set(setup.who)
            self.session.last_name = name = setup.who  # who just set the PIN logs in now
        dialog = LoginDialog(self.session.check, name, self)
        self.login_dialog = dialog
        return dialog.exec() == LoginDialog.DialogCode.Accepted

    def _on_session(self, who: str) -> None:
        if who:
            short = who if len(who) <= 12 else who[:11] + "…"
            self.engineer_button.setText(f"{short} · log out")
            self.engineer_button.setToolTip(f"{who}: log out of engineer mode")
            self.show_screen(1)
        else:
            self.engineer_button.setText("Engineer login")
            if self.stack.currentIndex() == 1:
                self.show_screen(0)
        self.engineer.set_engineer(who)

    def notify(self, text: str, level: str = "info") -> None:
        colour = theme.level_colour(level)
        self.footer.setStyleSheet(f"color: {colour};")
        self.footer.setText(f"{time.strftime('%H:%M:%S')}  {text}")
        if level == "error":
            self.last_error = text

    def record_feedback(self, item: DisplayItem | FeedbackPart, label: str) -> Path | None:
        """An operator's word on a part: its frame becomes a few-shot candidate of the line, audited."""
        who = self.session.who or "operator"
        try:
            path = self.engineer.ctx.samples().candidates().add(item.frame, label, item.part_id)
        except (OSError, ValueError) as exc:
            self.notify(f"feedback not saved: {exc}", "error")
            return None
        what = "not a defect (false reject)" if label == "good" else f"real defect {label}"
        self.handle.log_event("operator_feedback", who, f"part {item.part_id} judged {item.verdict}: {what}; "
                              f"proposed as a {label} sample for the engineer",
                              {"verdict": item.verdict, "defect": item.defect or ""},
                              {"label": label, "part_id": item.part_id, "seq": item.seq, "file": str(path)})
        self.notify(f"thanks: part {item.part_id} marked {what}; the engineer reviews it in Few-shot samples", "ok")
        return path

    def current_frame(self):  # -> DisplayItem | None
        return self.operator.last_item

    # ------------------------------------------------------------------ station tasks
    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.busy = busy
        self.line_combo.setEnabled(not busy)
        self.operator.set_running(self.handle.running, busy)
        if text:
            self.notify(text)

    def start_station(self) -> None:
        if self.busy or self.handle.running:
            return
        self.operator.blocked = ""
        self._set_busy(True, f"starting line {self.handle.line} (loading and fitting the model) ...")
        self._starting_since = time.monotonic()
        self._tick()

        def failed(error: str) -> None:
            self.operator.blocked = start_refusal(error, self.handle.log_dir)
            self._task_failed("start failed", error)

        def started(_r: object) -> None:
            self._task_done("station running")
            if self.operator.last_item is None:
                self.operator.banner.show_idle(f"line {self.handle.line} running · waiting for the first part")

        run_task(self.handle.start, name="station-start", on_done=started, on_error=failed)

    def stop_station(self) -> None:
        if self.busy or not self.handle.running:
            return
        self._set_busy(True, "stopping: finishing queued parts and closing the log ...")
        run_task(self.handle.stop, name="station-stop", on_done=lambda _r: self._task_done("station stopped"),
                 on_error=lambda e: self._task_failed("stop failed", e))

    def request_changeover(self, line: str) -> None:
        if line == self.handle.line or self.busy:
            self.line_combo.setCurrentText(self.handle.line)
            return
        if self.confirm_changeover:
            answer = QMessageBox.question(self, "Changeover", f"Change the station to line {line}?\n"
                                          "Parts in progress finish on the current line.")
            if answer != QMessageBox.StandardButton.Yes:
                self.line_combo.setCurrentText(self.handle.line)
                return
        who = self.session.who or "operator"
        self._set_busy(True, f"changeover to {line} ...")
        run_task(self.handle.changeover, line, who, name="changeover",
                 on_done=lambda _r: self._task_done(f"line {line} running"),
                 on_error=lambda e: self._task_failed(f"changeover to {line} failed", e))

    def _tick(self) -> None:
        self.clock.setText(time.strftime("%H:%M:%S"))
        if self._starting_since is None:
            return
        if not self.busy:
            self._starting_since = None
            return
        # A first start loads the backbone and fits the line: minutes on a slow PC. Show that it moves.
        waited = time.monotonic() - self._starting_since
        step = self.handle.engines.progress.snapshot()
        banner = self.operator.banner
        if step is None:  # before the engine's first step, or after its last: the loop opens the log
            built = self.handle.engines.cached(self.handle.line) is not None
            banner.show_starting(f"line {self.handle.line}: {'opening the log' if built else 'starting'}",
                                 f"{waited:.0f} s")
            return
        index, steps, what, in_step = step
        banner.show_starting(f"step {index}/{steps}: {what}", f"{in_step:.0f} s")

    def _task_done(self, text: str) -> None:
        self._set_busy(False)
        self.line_combo.setCurrentText(self.handle.line)
        self.notify(text, "ok")
        self.engineer.station_changed()
        self.poller.poke()

    def _task_failed(self, what: str, error: str) -> None:
        self._set_busy(False)
        self.line_combo.setCurrentText(self.handle.line)
        self.notify(f"{what}: {error}", "error")
        self.poller.poke()

    # ------------------------------------------------------------------ updates
    def _on_feed(self) -> None:
        if not self._paint_timer.isActive():  # else: painted when the interval ends, with the newest part
            self._paint()

    def _paint(self) -> None:
        item, ngs = self.feed.take()
        if item is not None:
            self.operator.show_part(item, ngs)
            self._paint_timer.start()

    def _on_snapshot(self, snap: StationSnapshot) -> None:
        self.last_snapshot = snap
        self.operator.update_status(snap, self.feed.dropped)
        if not self.busy:
            self.operator.set_running(snap.running)
        st = snap.stats
        if snap.error:
            self.station_light.set_state("fault", "ERROR", snap.error)
        elif not snap.running and not self.busy and self.operator.blocked:
            self.station_light.set_state("fault", "NOT RUNNING", self.operator.blocked)
        elif self.busy:
            self.station_light.set_state("warn", "BUSY", "starting, stopping or changing over")
        elif not snap.running or st is None:
            self.station_light.set_state("off", "STOPPED", "press START on the operator screen")
        elif snap.paused:
            self.station_light.set_state("warn", "HALTED", f"{st.detail}. Start over OPC UA resumes; so do STOP "
                                                           "and START here")
        else:
            state = {"READY": "ok", "BUSY": "warn", "FAULT": "fault"}[st.state.value]
            self.station_light.set_state(state, st.state.value, st.detail)
        if st is not None and snap.running:
            cam = st.camera
            if cam.connected:
                self.camera_light.set_state("ok", "CONNECTED", f"{cam.label}: {cam.frames} frames, "
                                                               f"{cam.bad_frames} bad, {cam.losses} losses")
            else:
                self.camera_light.set_state("fault", "LOST", cam.last_error)
        else:
            self.camera_light.set_state("off", "IDLE", "station stopped")
        plc_state, plc_detail = snap.plc
        plc_map = {"connected": ("ok", "CONNECTED"), "silent": ("warn", "SILENT"), "lost": ("fault", "LOST"),
                   "connecting": ("warn", "CONNECTING"), "stopped": ("off", "STOPPED"), "off": ("off", "NOT USED")}
        light, word = plc_map.get(plc_state, ("warn", plc_state.upper()))
        self.plc_light.set_state(light, word, plc_detail)
        self.links.set_states(snap.links)
        if st is not None and st.model:
            version = st.model_version or "base"
            self.model_light.set_caption(f"Model · {version}")
            if st.untrained:
                self.model_light.set_state("warn", "UNTRAINED",
                                           f"{st.model}: untrained backbone (random weights) - shows the station, "
                                           "not its accuracy")
                self.untrained.setText(f"⚠ {UNTRAINED}: verdicts demonstrate the station, not its accuracy")
                self.untrained.setStyleSheet(f"color: {theme.FAULT}; font-weight: bold;")
            else:
                self.model_light.set_state("ok", "TRAINED", st.model)
                self.untrained.setText("")
        if not self.line_combo.hasFocus() and not self.busy:
            self.line_combo.setCurrentText(snap.line or self.handle.line)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop polling, finish tasks, stop the station and the PLC link (blocking; idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._clock.stop()
        self.poller.stop()
        self.engineer.shutdown()
        self.history.shutdown()
        wait_workers(timeout_s)
        self.handle.shutdown()
        self.handle.remove_observer(self.feed.push)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.setEnabled(False)
        self.notify("stopping the station ...")
        self.shutdown()
        event.accept()

