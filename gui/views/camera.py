"""Engineer camera page: live view with the camera's frame ids, exposure / gain applied to the running camera,
a trigger test, and *Save to config* (the YAML's camera section); every change goes to the audit log."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from gui import theme
from gui.views.engineer.context import EngineerContext
from gui.widgets.frame_view import FrameView
from gui.workers import run_task
from inspector.config.loading import update_station_in_file
from inspector.errors import InspectorError

STEPS = 1000
# feature -> (config key under camera.genicam, label, logarithmic slider)
CONTROLS = {"ExposureTime": ("exposure_us", "Exposure", True), "Gain": ("gain_db", "Gain", False)}


class FeatureSlider(QWidget):
    """One numeric camera feature: a slider over the camera's own range (log scale for exposure)."""

    def __init__(self, feature: str, label: str, log_scale: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feature, self.log_scale = feature, log_scale
        self.low, self.high, self.unit = 0.0, 1.0, ""
        self.title = QLabel(label)
        self.title.setFont(theme.font(12, bold=True))
        self.value_label = QLabel("-")
        self.value_label.setFont(theme.font(14, bold=True))
        self.range_label = QLabel("")
        self.range_label.setStyleSheet(f"color: {theme.MUTED};")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, STEPS)
        self.slider.valueChanged.connect(lambda _: self.value_label.setText(self.text(self.value())))
        lay = QGridLayout(self)
        lay.addWidget(self.title, 0, 0)
        lay.addWidget(self.value_label, 0, 1, Qt.AlignmentFlag.AlignRight)
        lay.addWidget(self.slider, 1, 0, 1, 2)
        lay.addWidget(self.range_label, 2, 0, 1, 2)

    def set_range(self, value: float, low: float, high: float, unit: str) -> None:
        self.low, self.high, self.unit = low, high, unit
        self.range_label.setText(f"camera range {low:g} - {high:g} {unit}")
        self.slider.blockSignals(True)
        self.slider.setValue(self._step(value))
        self.slider.blockSignals(False)
        self.value_label.setText(self.text(value))

    def value(self) -> float:
        f = self.slider.value() / STEPS
        if self.log_scale and self.low > 0:
            return float(round(math.exp(math.log(self.low) + f * (math.log(self.high) - math.log(self.low))), 1))
        return float(round(self.low + f * (self.high - self.low), 2))

    def _step(self, value: float) -> int:
        if self.high <= self.low:
            return 0
        if self.log_scale and self.low > 0:
            f = (math.log(max(value, self.low)) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            f = (value - self.low) / (self.high - self.low)
        return round(min(max(f, 0.0), 1.0) * STEPS)

    def text(self, value: float) -> str:
        return f"{value:g} {self.unit}".strip()


class CameraPanel(QWidget):
    """What the line engineer commissions a camera with, while the line runs."""

    def __init__(self, ctx: EngineerContext, parent: QWidget | None = None, refresh_ms: int = 250) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.view = FrameView("the camera's frames appear here while the line runs")
        self.frame_label = QLabel("")
        self.frame_label.setFont(theme.font(12, bold=True))
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet(f"color: {theme.MUTED};")
        self.sliders = {name: FeatureSlider(name, label, log) for name, (_, label, log) in CONTROLS.items()}
        for slider in self.sliders.values():
            slider.slider.sliderReleased.connect(lambda s=slider: self.apply_live(s.feature, s.value()))
        self.save_button = QPushButton("Save to config")
        self.save_button.setObjectName("primary")
        self.save_button.clicked.connect(self.save)
        self.trigger_button = QPushButton("Trigger test")
        self.trigger_button.clicked.connect(self.trigger_test)
        self.trigger_label = QLabel("")
        self.trigger_label.setWordWrap(True)
        self.trigger_label.setFont(theme.font(12, bold=True))
        live = QGroupBox("LIVE VIEW")
        live_lay = QVBoxLayout(live)
        live_lay.addWidget(self.view, 1)
        live_lay.addWidget(self.frame_label)
        settings = QGroupBox("CAMERA")
        set_lay = QVBoxLayout(settings)
        set_lay.addWidget(self.status_label)
        for slider in self.sliders.values():
            set_lay.addWidget(slider)
        set_lay.addWidget(self.hint)
        buttons = QHBoxLayout()
        buttons.addWidget(self.trigger_button)
        buttons.addWidget(self.save_button)
        set_lay.addLayout(buttons)
        set_lay.addWidget(self.trigger_label)
        set_lay.addStretch(1)
        row = QHBoxLayout(self)
        row.addWidget(live, 3)
        row.addWidget(settings, 2)
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh_frame)  # runs only while the page is shown
        self._trigger_pending = False
        self.refresh()

    # ------------------------------------------------------------------ what the camera is and holds
    def source(self) -> Any:
        """The running station's frame source (None while stopped)."""
        loop = self.ctx.handle.loop
        return loop.camera.source if loop is not None else None

    def refresh(self) -> None:
        source = self.source()
        stats = self.ctx.handle.stats()
        if stats is not None:
            cam = stats.camera
            state = "connected" if cam.connected else f"NOT connected: {cam.last_error}"
            extra = ""
            if hasattr(source, "frames_lost"):
                extra = f" · frame ids lost {source.frames_lost} · extra frames {source.extra_frames}"
            self.status_label.setText(f"{cam.label} ({getattr(source, 'model', '') or 'camera'}): {state}\n"
                                      f"frames {cam.frames} · bad {cam.bad_frames} · lost {cam.losses} · "
                                      f"reconnects {cam.reconnects}{extra}")
        else:
            self.status_label.setText(f"camera: {self.ctx.handle.config.camera.kind} (station stopped)")
        live = hasattr(source, "live_range")
        reasons = []
        for name, slider in self.sliders.items():
            rng = source.live_range(name) if live else None
            slider.setEnabled(rng is not None and rng.writable)
            if rng is not None:
                slider.set_range(rng.value, rng.low, rng.high, rng.unit)
            elif live:
                reasons.append(f"the camera has no {name}")
        if not live:
            reasons.append("exposure and gain are set on GenICam cameras while the station runs"
                           if source is None or self.ctx.handle.config.camera.kind != "genicam"
                           else "the camera is not open")
        self.hint.setText("; ".join(reasons) + ("." if reasons else "Changes apply to the running camera at once "
                                                "and are logged; Save to config keeps them for the next start."))
        self.save_button.setEnabled(bool(getattr(source, "live", None)))
        self.trigger_button.setEnabled(self.ctx.handle.running and not self._trigger_pending)

    def refresh_frame(self) -> None:
        item = self.ctx.current_frame()
        if item is None or item.part.frame is None:
            return
        part = item.part
        self.view.set_frame(part.frame)
        fid = f"frame id {part.camera_frame_id}" if part.camera_frame_id is not None else part.frame_ref
        stamp = f" · camera time {part.camera_time_ns / 1e9:.6f} s" if part.camera_time_ns is not None else ""
        self.frame_label.setText(f"part {part.part_id} · {fid}{stamp} · {part.frame.shape[1]}x{part.frame.shape[0]}")

    # ------------------------------------------------------------------ changes (each one audited)
    def apply_live(self, feature: str, value: float) -> bool:
        """Set ``feature`` on the running camera; logged as a ``camera_setting`` event (old -> new)."""
        self.ctx.session.touch()
        source = self.source()
        if not hasattr(source, "set_live"):
            self.ctx.notify("start the station with a GenICam camera to adjust it", "error")
            return False
        before = source.live_range(feature)
        try:
            held = source.set_live(feature, value)
        except InspectorError as exc:
            self.ctx.notify(str(exc), "error")
            self.refresh()
            return False
        unit = before.unit if before is not None else ""
        self.ctx.handle.log_event("camera_setting", self.ctx.who, f"{feature} of {source.label} set live ({unit})",
                                  before.value if before is not None else "", held)
        self.ctx.notify(f"{feature} = {held:g} {unit} on the camera (not yet saved to the config)", "ok")
        self.refresh()
        return True

    def save(self) -> None:
        """Write the live settings to the YAML's camera.genicam section (comments kept); logged."""
        self.ctx.session.touch()
        source = self.source()
        live = dict(getattr(source, "live", {}) or {})
        updates = {f"camera.genicam.{CONTROLS[name][0]}": float(value) for name, value in live.items()
                   if name in CONTROLS}
        if not updates:
            self.ctx.notify("nothing changed on the camera", "info")
            return
        handle = self.ctx.handle
        before = handle.config.camera.genicam.model_dump()
        old = {k: before.get(k.rsplit(".", 1)[1]) for k in updates}
        try:
            handle.config = update_station_in_file(handle.config_path, updates)
        except InspectorError as exc:
            self.ctx.notify(f"not saved: {exc}", "error")
            return
        handle.log_event("camera_config", self.ctx.who, f"camera settings saved to {handle.config_path.name}",
                         old, updates)
        self.ctx.notify(f"saved to {handle.config_path.name}: " + ", ".join(f"{k} = {v:g}" for k, v in updates.items()),
                        "ok")

    def trigger_test(self) -> None:
        """One software trigger through the station's own path: the verdict, its time and the frame it got."""
        self.ctx.session.touch()
        try:
            future = self.ctx.handle.trigger()
        except InspectorError as exc:
            self.trigger_label.setText(f"trigger refused: {exc}")
            return
        t0 = time.perf_counter()
        self._trigger_pending = True
        self.trigger_button.setEnabled(False)
        timeout = self.ctx.handle.config.camera.grab_timeout_s + 30.0
        run_task(lambda: (future.result(timeout), (time.perf_counter() - t0) * 1000.0), name="camera-trigger-test",
                 on_done=self._triggered, on_error=self._trigger_failed)

    def _triggered(self, outcome: tuple[Any, float]) -> None:
        verdict, ms = outcome
        self._trigger_pending = False
        item = self.ctx.current_frame()
        frame = ""
        if item is not None and item.part.part_id == verdict.part_id and item.part.camera_frame_id is not None:
            frame = f", frame id {item.part.camera_frame_id}"
        what = f"FAULT ({verdict.fault})" if verdict.fault else verdict.verdict
        self.trigger_label.setText(f"trigger test {verdict.part_id}: {what} in {ms:.0f} ms{frame}")
        self.refresh()

    def _trigger_failed(self, error: str) -> None:
        self._trigger_pending = False
        self.trigger_label.setText(f"trigger test failed: {error}")
        self.refresh()

    def hideEvent(self, event: object) -> None:
        self.timer.stop()
        super().hideEvent(event)  # type: ignore[arg-type]

    def showEvent(self, event: object) -> None:
        self.timer.start()
        self.refresh()
        super().showEvent(event)  # type: ignore[arg-type]
