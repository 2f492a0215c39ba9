"""MQTT publishing against a real mosquitto: order, schema, broker killed and back, restart, full outbox."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jsonschema
import pytest

from inspector.config.plant import MqttSpec, parse_mqtt_url
from inspector.plant import messages as msgs
from inspector.plant.diskqueue import DiskQueue
from inspector.plant.mqtt import MqttError, MqttPublisher, MqttState

from .conftest import Broker, Collector

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "plant-result.schema.json").read_text())


def facts(seq: int, line: str = "ring", verdict: str = "OK") -> msgs.ResultFacts:
    inspected = seq % 7 != 0
    return msgs.ResultFacts(station="st1", seq=seq, part_id=f"P{seq}", time_ns=1_765_000_000_000_000_000 + seq,
                            line=line, verdict=verdict if inspected else "NG",
                            score=0.25 * seq if inspected else math.nan,
                            threshold=0.5 if inspected else math.nan,
                            defect=None if verdict == "OK" and inspected else ("scratch" if inspected else "FAULT"),
                            fault=None if inspected else "camera timeout", model_version="base",
                            config_hash="abc123", trigger="plc")


def publisher(broker: Broker, tmp_path: Path, **spec: object) -> MqttPublisher:
    return MqttPublisher(MqttSpec(url=broker.url, **spec), "st1", tmp_path / "outbox.sqlite",
                         status_source=lambda: {"state": "READY", "line": "ring", "parts": 3})


def test_results_arrive_in_order_and_match_the_schema(broker: Broker, collector: Collector, tmp_path: Path) -> None:
    with publisher(broker, tmp_path) as pub:
        for seq in range(1, 31):
            pub.publish_result(facts(seq))
        pub.publish_event("changeover", "plc", "line ring -> gear", "ring", "gear")
        got = collector.wait_for("/ring/result", 30)
        assert pub.wait_drained(10)
    assert [m["seq"] for m in got] == list(range(1, 31))
    for m in got:
        jsonschema.validate(m, SCHEMA)
    assert got[6]["score"] is None and got[6]["defect"] == "FAULT" and got[6]["verdict"] == "NG"
    assert got[0]["part_id"] == "P1" and got[0]["time"].endswith("Z")
    event = collector.wait_for("st1/event", 1)[0]
    assert event["kind"] == "changeover" and event["new"] == "gear"
    statuses = collector.wait_for("st1/status", 2)
    assert statuses[0]["state"] == "READY" and statuses[0]["mqtt"]["dropped"] == 0
    assert statuses[-1]["state"] == msgs.OFFLINE  # a clean stop says goodbye


def test_broker_killed_mid_run_and_restarted_loses_nothing(broker: Broker, collector: Collector,
                                                           tmp_path: Path) -> None:
    with publisher(broker, tmp_path) as pub:
        assert _wait(lambda: pub.state == MqttState.CONNECTED)
        for seq in range(1, 11):
            pub.publish_result(facts(seq))
        broker.stop()
        assert _wait(lambda: pub.state == MqttState.DOWN)
        t0 = time.perf_counter()
        for seq in range(11, 41):  # the station goes on while the broker is away
            pub.publish_result(facts(seq))
        assert time.perf_counter() - t0 < 5  # (generous: 30 inserts; the benchmark measures the real cost)
        assert pub.stats().pending >= 30
        broker.start()
        assert _wait(lambda: pub.state == MqttState.CONNECTED, 20), pub.detail
        assert pub.wait_drained(20)
        got = collector.wait_for("/ring/result", 40, timeout=20)
        assert pub.stats().reconnects == 1
    seqs = [m["seq"] for m in got]
    assert sorted(set(seqs)) == list(range(1, 41)), "every result arrives"
    assert _first_seen(seqs) == list(range(1, 41)), "in order (repeats, if any, identifiable by seq)"


def test_outbox_survives_a_station_restart(broker: Broker, tmp_path: Path) -> None:
    broker.stop()  # the broker is down while the station runs and stops
    pub = publisher(broker, tmp_path).start()
    for seq in range(1, 6):
        pub.publish_result(facts(seq))
    pub.stop(drain_s=0.1)
    assert len(DiskQueue(tmp_path / "outbox.sqlite", 100)) == 5
    broker.start()
    collector = Collector(broker.port)
    try:
        with publisher(broker, tmp_path) as again:  # the restarted station sends what the last one could not
            again.publish_result(facts(6))
            got = collector.wait_for("/ring/result", 6)
            assert again.wait_drained(10)
    finally:
        collector.close()
    assert [m["seq"] for m in got] == [1, 2, 3, 4, 5, 6]


def test_a_full_outbox_drops_the_oldest_with_a_gap_event(broker: Broker, tmp_path: Path) -> None:
    broker.stop()
    pub = publisher(broker, tmp_path, queue_max=10).start()
    for seq in range(1, 26):
        pub.publish_result(facts(seq))
    stats = pub.stats()
    assert stats.pending == 10 and stats.dropped > 0
    pub.stop(drain_s=0.1)
    broker.start()
    collector = Collector(broker.port)
    try:
        with publisher(broker, tmp_path, queue_max=10) as again:
            assert again.wait_drained(10)
            time.sleep(0.2)
    finally:
        collector.close()
    results = [m["seq"] for m in collector.on("/ring/result")]
    gaps = [m for m in collector.on("st1/event") if m["kind"] == "mqtt_gap"]
    assert results == list(range(16, 26)), "the newest 10 kept, in order"
    assert len(gaps) == 1 and gaps[0]["new"] == "15" and "result seq 1-15" in gaps[0]["what"]
    order = [t for t, _, _ in collector.messages if not t.endswith("status")]
    assert order[0].endswith("/event"), "the gap is reported before what came after it"


def test_the_last_will_marks_a_vanished_station_offline(broker: Broker, collector: Collector,
                                                        tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path, keepalive_s=5).start()
    assert collector.wait_for("st1/status", 1)[0]["state"] == "READY"
    pub._client._sock.close()  # the station's network vanishes without a DISCONNECT (a crash, a pulled cable)
    pub._client.loop_stop()
    statuses = collector.wait_for("st1/status", 2, timeout=15)
    assert statuses[-1] == {"schema": msgs.STATUS_SCHEMA, "station": "st1", "state": "offline"}
    pub._halt.set()
    pub.queue.close()  # type: ignore[union-attr]


def test_credentials_are_checked_and_errors_name_the_file(tmp_path: Path) -> None:
    broker = Broker(tmp_path, extra="allow_anonymous false\n")
    passwords = tmp_path / "passwd"
    import subprocess

    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "station", "s3cret"], check=True)
    broker.conf.write_text(broker.conf.read_text() + f"password_file {passwords}\n")
    broker.start()
    try:
        missing = tmp_path / "nope.pw"
        with pytest.raises(MqttError, match=r"nope\.pw"):
            publisher(broker, tmp_path, username="station", password_file=missing).start()
        wrong = tmp_path / "wrong.pw"
        wrong.write_text("guess\n")
        with publisher(broker, tmp_path, username="station", password_file=wrong) as pub:
            assert _wait(lambda: "refused" in pub.detail, 10), pub.detail
            assert pub.state != MqttState.CONNECTED
        right = tmp_path / "right.pw"
        right.write_text("s3cret\n")
        with publisher(broker, tmp_path, username="station", password_file=right) as pub:
            assert _wait(lambda: pub.state == MqttState.CONNECTED, 10), pub.detail
    finally:
        broker.stop()


def test_urls_and_tls_settings_are_validated() -> None:
    assert parse_mqtt_url("mqtt://broker") == (False, "broker", 1883)
    assert parse_mqtt_url("mqtts://broker:9999") == (True, "broker", 9999)
    for bad in ("tcp://broker", "mqtt://", "mqtt://u:p@broker", "broker:1883"):
        with pytest.raises(ValueError, match="mqtt"):
            parse_mqtt_url(bad)
    with pytest.raises(ValueError, match="mqtts"):
        MqttSpec(url="mqtt://b", cert_file="c.pem", key_file="k.pem")
    with pytest.raises(ValueError, match="together"):
        MqttSpec(url="mqtts://b", cert_file="c.pem")


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _first_seen(seqs: list[int]) -> list[int]:
    seen: list[int] = []
    for s in seqs:
        if s not in seen:
            seen.append(s)
    return seen
