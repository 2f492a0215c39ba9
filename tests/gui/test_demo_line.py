"""The real demo line (station_configs/demo.yaml, ViT-B-16 with random weights) in the GUI: slow."""

from __future__ import annotations

import pytest

from tests.gui.conftest import REPO


@pytest.mark.slow
def test_demo_line_shows_verdicts_and_untrained_backbone(qtbot, tmp_path):
    from gui.main_window import MainWindow
    from gui.pin import PinStore
    from inspector.station.handle import StationHandle

    handle = StationHandle(REPO / "station_configs" / "demo.yaml", log_dir=tmp_path / "logs")
    win = MainWindow(handle, PinStore(tmp_path / "pin.json"), confirm_changeover=False, poll_s=0.2)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: handle.running and not win.busy, timeout=600_000)
        qtbot.waitUntil(lambda: win.feed.pushed >= 3, timeout=120_000)
        qtbot.waitUntil(lambda: win.operator.banner.verdict in ("OK", "NG"), timeout=30_000)
        qtbot.waitUntil(lambda: win.model_light.text.startswith("UNTRAINED"), timeout=10_000)
        assert win.model_light.state == "warn" and "UNTRAINED" in win.untrained.text()
        assert win.camera_light.state == "ok" and win.plc_light.text == "NOT USED"
        assert win.operator.last_item.untrained
    finally:
        win.shutdown()
