"""The status bar's plant links on the real window: one label per configured link, live, in plain words."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.gui.conftest import make_window, wait_running
from tests.plant.conftest import Broker, broker  # noqa: F401 - the real mosquitto fixture
from tests.ports import free_port
from tests.station.conftest import write_handle_station
from tests.station.test_plant_links import call, with_outputs

pytestmark = pytest.mark.integration


def test_a_station_without_plant_links_shows_none(idle_window) -> None:
    assert not idle_window.links.labels and not idle_window.links.isVisibleTo(idle_window)


@pytest.mark.slow
def test_each_link_has_a_live_label_and_an_opcua_stop_shows_halted(qtbot, tmp_path: Path, fitted_cache: Path, pins,
                                                                   broker: Broker) -> None:  # noqa: F811
    users = tmp_path / "users.txt"
    users.write_text("anna:pw:engineer\n")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    config = with_outputs(write_handle_station(tmp_path, fitted_cache), {
        "mqtt": {"url": broker.url}, "opcua": {"endpoint": endpoint, "users_file": str(users), "security": ["None"]}})
    window = make_window(qtbot, config, pins)
    try:
        assert list(window.links.labels) == ["MQTT", "OPC UA"]  # one label per configured link, from the start
        wait_running(qtbot, window)
        qtbot.waitUntil(lambda: window.links.text("MQTT") == "MQTT connected", timeout=30_000)
        # The OPC UA server starts on its own thread: on a loaded machine after MQTT has connected.
        qtbot.waitUntil(lambda: window.links.text("OPC UA") == "OPC UA listening", timeout=30_000)
        assert window.links.labels["MQTT"].isVisible() and endpoint in window.links.labels["OPC UA"].toolTip()

        broker.stop()
        qtbot.waitUntil(lambda: window.links.text("MQTT").startswith("MQTT down"), timeout=30_000)
        assert "broker" in window.links.labels["MQTT"].toolTip() or "connection" in window.links.labels[
            "MQTT"].toolTip()
        broker.start()
        qtbot.waitUntil(lambda: window.links.text("MQTT") == "MQTT connected", timeout=30_000)

        assert asyncio.run(call(endpoint, "Stop"))[1] == "Halted"
        qtbot.waitUntil(lambda: window.station_light.text == "HALTED", timeout=10_000)
        assert "anna (OPC UA)" in window.station_light.toolTip()
        asyncio.run(call(endpoint, "Start"))
        qtbot.waitUntil(lambda: window.station_light.text != "HALTED", timeout=10_000)
    finally:
        window.shutdown()
    assert window.handle.link_states()[1].text == "stopped"  # the OPC UA server went with the window
