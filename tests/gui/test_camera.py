"""The engineer's camera page on a running station with a GenICam camera (the node-map double: the simulator
has no exposure or gain): live view with frame ids, exposure / gain applied to the camera, trigger test,
Save to config; each change in the audit log with who, old -> new."""

from __future__ import annotations

import yaml
from PySide6.QtCore import Qt

from tests.conftest import audit_events
from tests.gui.conftest import login, wait_parts, wait_running
from tests.station.genicam_double import FakeCamera, FakeHarvester
from tests.station.test_genicam import double_spec


def test_camera_page_adjusts_tests_and_saves(qtbot, station_config, pins) -> None:
    from gui.main_window import MainWindow
    from inspector.station.genicam import GenICamSource
    from inspector.station.handle import StationHandle

    doc = yaml.safe_load(station_config.read_text(encoding="utf-8"))
    doc["camera"] = double_spec("software").model_dump(mode="json")
    station_config.write_text("# camera page test\n" + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    fake = FakeCamera()
    handle = StationHandle(station_config)
    handle._source = GenICamSource(handle.config.camera, factory=lambda: FakeHarvester(fake))
    win = MainWindow(handle, pins, autostart=True, confirm_changeover=False, poll_s=0.2)
    qtbot.addWidget(win)
    win.resize(1600, 960)
    win.show()
    try:
        wait_running(qtbot, win)
        wait_parts(qtbot, win, 2)
        login(win)
        panel = win.engineer.camera
        win.engineer.tabs.setCurrentWidget(panel)
        panel.refresh()
        exposure, gain = panel.sliders["ExposureTime"], panel.sliders["Gain"]
        assert exposure.isEnabled() and gain.isEnabled()
        assert (exposure.low, exposure.high, exposure.unit) == (20.0, 1_000_000.0, "us")
        assert exposure.value_label.text() == "200 us"  # the config's exposure_us, read back from the camera

        qtbot.waitUntil(lambda: "frame id" in panel.frame_label.text(), timeout=10_000)

        exposure.slider.setValue(exposure._step(800.0))
        exposure.slider.sliderReleased.emit()  # what letting go of the slider does
        held = fake.nm.get_node("ExposureTime").value
        assert abs(held - 800.0) < 15  # the slider's step on a log scale
        assert not panel.apply_live("Gain", 99.0)  # out of the camera's range: refused, nothing logged
        assert fake.nm.get_node("Gain").value == 0.0
        assert panel.apply_live("Gain", 6.0) and fake.nm.get_node("Gain").value == 6.0

        panel.save()
        saved = yaml.safe_load(station_config.read_text(encoding="utf-8"))["camera"]["genicam"]
        assert saved["exposure_us"] == held and saved["gain_db"] == 6.0
        assert station_config.read_text(encoding="utf-8").startswith("# camera page test")  # comments kept

        qtbot.mouseClick(panel.trigger_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.trigger_label.text().startswith("trigger test "), timeout=30_000)
        assert "FAULT" not in panel.trigger_label.text() and " ms" in panel.trigger_label.text()
    finally:
        win.shutdown()
    events = [(e["kind"], e["who"], e["old"], e["new"]) for e in audit_events(handle.log_dir)]
    settings = [e for e in events if e[0] == "camera_setting"]
    assert [(who, old) for _, who, old, _ in settings] == [("Dana", "200.0"), ("Dana", "0.0")]
    (config_event,) = [e for e in events if e[0] == "camera_config"]
    assert config_event[1] == "Dana" and '"camera.genicam.gain_db": 6.0' in config_event[3]
