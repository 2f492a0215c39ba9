"""The GUI station's plant links (MQTT, OPC UA, results database) through the handle: attached from the YAML,
kept across STOP / START, their states in words - with a real broker, a real PostgreSQL and a real asyncua client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from asyncua import Client, ua

from inspector.audit.plant_db import PlantDatabase
from inspector.plc.port import StationStateError, TriggerRejected
from inspector.station.handle import StationHandle
from inspector.station.plant_links import LinkState, database_state, mqtt_state
from tests.audit.postgres import PostgresServer
from tests.conftest import audit_events
from tests.plant.conftest import Broker, broker  # noqa: F401 - the real mosquitto fixture
from tests.plant.test_opcua import NS
from tests.ports import free_port
from tests.station.conftest import wait_for, write_handle_station

pytestmark = pytest.mark.integration


def with_outputs(config: Path, outputs: dict) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["outputs"] = outputs
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config


def link(handle: StationHandle, name: str) -> LinkState:
    (state,) = [s for s in handle.link_states() if s.name == name]
    return state


async def call(endpoint: str, method: str, user: str = "anna", password: str = "pw") -> list:
    client = Client(endpoint, timeout=10)
    client.set_user(user)
    client.set_password(password)
    await client.connect()
    try:
        idx = await client.get_namespace_index(NS)
        vs = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
        out = await vs.call_method(f"{idx}:{method}")
        state = await (await vs.get_child([f"{idx}:VisionSystemState", f"{idx}:SystemState"])).read_value()
        return [out, state]
    finally:
        await client.disconnect()


@pytest.mark.slow
def test_the_handle_runs_the_yaml_links_and_says_how_each_is_doing(tmp_path: Path, text_cache_dir: Path,
                                                                   broker: Broker) -> None:  # noqa: F811
    users = tmp_path / "users.txt"
    users.write_text("anna:pw:engineer\nolaf:op:operator\n")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    pg = PostgresServer()
    pg.start()
    config = with_outputs(write_handle_station(tmp_path, text_cache_dir), {
        "mqtt": {"url": broker.url},
        "opcua": {"endpoint": endpoint, "users_file": str(users), "security": ["None"]},
        "database": {"url": pg.url, "retry_max_s": 1}})
    handle = StationHandle(config)
    try:
        assert [(s.name, s.level, s.text) for s in handle.link_states()] == [
            ("MQTT", "off", "stopped"), ("OPC UA", "off", "stopped"), ("Database", "off", "stopped")]
        handle.start()
        wait_for(lambda: link(handle, "MQTT").text == "connected", 30, "MQTT connected")
        wait_for(lambda: link(handle, "Database").text.startswith("connected"), 30, "database connected")
        assert link(handle, "OPC UA") == LinkState("OPC UA", "ok", "listening",
                                                   f"OPC UA server on {endpoint} (security None)")

        # OPC UA Stop: the running station refuses parts, keeps its counters; Start resumes it.
        wait_for(lambda: handle.counts().parts >= 2, 60, "parts")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            asyncio.run(call(endpoint, "Stop", "olaf", "op"))
        assert asyncio.run(call(endpoint, "Stop")) == [None, "Halted"]
        assert handle.paused and handle.status().halted and handle.running
        with pytest.raises(TriggerRejected, match="paused by anna"):
            handle.trigger("P-while-halted")
        parts = handle.counts().parts
        assert asyncio.run(call(endpoint, "Start")) == [None, "Operational"]
        wait_for(lambda: handle.counts().parts >= parts + 2, 60, "parts after Start")

        # The broker and the database go down: the labels say so, with what waits; both catch up when back.
        broker.stop()
        pg.kill()
        wait_for(lambda: link(handle, "MQTT").level == "fault" and link(handle, "MQTT").waiting > 0, 30, "MQTT down")
        wait_for(lambda: link(handle, "Database").level == "fault" and link(handle, "Database").waiting > 0, 30,
                 "database down")
        assert link(handle, "MQTT").text == f"down · {link(handle, 'MQTT').waiting} waiting"
        assert "wait in" in link(handle, "MQTT").detail and "audit log" in link(handle, "Database").detail
        broker.start()
        pg.start()
        wait_for(lambda: link(handle, "MQTT").text == "connected", 30, "MQTT back, outbox sent")
        wait_for(lambda: link(handle, "Database").level == "ok", 30, "database back")

        # STOP at the panel: MQTT and the database end with the run, the OPC UA server stays and says Halted;
        # a remote Start does not override the panel.
        handle.stop()
        assert link(handle, "MQTT").level == "off" and link(handle, "Database").text == "stopped"
        assert link(handle, "OPC UA").text == "listening"
        with pytest.raises(ua.uaerrors.BadInvalidState):
            asyncio.run(call(endpoint, "Start"))
        with pytest.raises(StationStateError, match="stopped at its panel"):
            handle.resume("anna")
        handle.start()  # START at the panel: the links come back on the new run
        wait_for(lambda: link(handle, "MQTT").text == "connected", 30, "MQTT on the second run")
    finally:
        handle.shutdown()
        pg.close()
    assert link(handle, "OPC UA").text == "stopped"
    kinds = [(e["kind"], e["who"]) for e in audit_events(handle.log_dir)]
    assert ("station_paused", "anna (OPC UA)") in kinds and ("station_resumed", "anna (OPC UA)") in kinds


def test_link_words_for_each_state(tmp_path: Path) -> None:
    """The words of each state, on real objects: a publisher with no broker behind its port, a database that had
    pushed up to seq 7 and then failed (the public figures the results-database sink keeps)."""
    from inspector.config.plant import MqttSpec
    from inspector.plant.mqtt import MqttPublisher

    url = f"mqtt://127.0.0.1:{free_port()}"
    publisher = MqttPublisher(MqttSpec(url=url), "st1", tmp_path / "outbox.sqlite").start()
    try:
        publisher.publish_event("test", "me", "one message for the outbox")
        state = mqtt_state(publisher, url)
        assert (state.level, state.text, state.waiting) == ("warn", "connecting · 1 waiting", 1)
        assert str(tmp_path / "outbox.sqlite") in state.detail
    finally:
        publisher.stop(drain_s=0)
    assert mqtt_state(publisher, url).text == "stopped · 1 waiting"
    assert mqtt_state(None, url, error="MqttError: password file missing").level == "fault"

    db = PlantDatabase(f"postgresql://inspector@127.0.0.1:{free_port()}/postgres", "st1", tmp_path)
    assert database_state(db, "pg", 12).text == "connecting"
    db.sent_seq = 7
    assert database_state(db, "pg", 12) == LinkState("Database", "ok", "connected",  # 5 in flight: normal
                                                     "results database pg: 0 record(s) sent by this run", 5)
    assert database_state(db, "pg", 30).text == "connected · 23 waiting"  # catching up after an outage
    db.last_error = "results database pg: connection refused"
    state = database_state(db, "pg", 12)
    assert (state.level, state.text) == ("fault", "down · 5 waiting") and "wait in the audit log" in state.detail
    assert database_state(None, "pg", 0).text == "stopped"
