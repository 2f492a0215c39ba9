"""`inspector run --mqtt URL` end to end: the real station, a real broker killed and restarted mid-run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.cli import main
from tests.station.conftest import tiny_station_dict

from .conftest import Broker, Collector


@pytest.mark.slow
def test_run_publishes_every_logged_result_through_a_broker_restart(tmp_path: Path, text_cache_dir: Path,
                                                                    broker: Broker, collector: Collector) -> None:
    data = tiny_station_dict(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 6})
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(data))
    logs = tmp_path / "logs"
    code: list[int] = []
    run = threading.Thread(target=lambda: code.append(main(
        ["run", "--config", str(config), "--headless", "--plain", "--frames", "20", "--log-dir", str(logs),
         "--mqtt", broker.url])))
    run.start()
    try:
        assert len(collector.wait_for("/result", 4, timeout=60)) >= 4, "no results before the broker stop"
        broker.stop()  # mid-run: the station goes on, results wait on disk
        assert run.is_alive(), "the run ended before the broker went down: slow the free-run rate"
        time.sleep(0.5)
        broker.start()
    finally:
        run.join(timeout=120)
    assert code == [0]
    station = data["station"]
    got = collector.wait_for("/result", 20, timeout=20)
    (path,) = log_files(logs)
    with AuditReader(path) as reader:
        logged = [(int(r["seq"]), str(r["part_id"]), str(r["verdict"])) for r in reader.records()]
        events = [e["kind"] for e in reader.events()]
    published = {(m["seq"], m["part_id"], m["verdict"]) for m in got}
    assert len(logged) == 20 and published == set(logged), "every logged result published, none lost"
    assert all(m["station"] == station and m["config_hash"] for m in got)
    kinds = [m["kind"] for m in collector.on("/event")]
    assert "station_start" in kinds and "station_start" in events
    assert not (logs / ".mqtt-queue.sqlite").exists() or _outbox_empty(logs / ".mqtt-queue.sqlite")


def _outbox_empty(path: Path) -> bool:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


@pytest.mark.slow
def test_run_serves_opcua_from_the_config(tmp_path: Path, text_cache_dir: Path) -> None:
    import asyncio

    from asyncua import Client

    from tests.ports import free_port

    from .test_opcua import NS

    users = tmp_path / "users.txt"
    users.write_text("anna:pw:engineer\n")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    data = tiny_station_dict(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 4},
                             outputs={"opcua": {"endpoint": endpoint, "users_file": str(users),
                                                "security": ["None"]}})
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(data))
    code: list[int] = []
    run = threading.Thread(target=lambda: code.append(main(
        ["run", "--config", str(config), "--headless", "--plain", "--frames", "12", "--no-log"])))
    run.start()

    async def read_during_run() -> tuple[int, str, str]:
        client = Client(endpoint, timeout=5)
        client.set_user("anna")
        client.set_password("pw")
        for _ in range(200):  # the server starts before the line is loaded
            try:
                await client.connect()
                break
            except (OSError, TimeoutError):
                await asyncio.sleep(0.1)
        try:
            idx = await client.get_namespace_index(NS)
            vs = await client.nodes.objects.get_child([f"{idx}:VisionSystem"])
            seq_node = await vs.get_child([f"{idx}:ResultManagement", f"{idx}:LastResult", f"{idx}:Sequence"])
            for _ in range(100):
                if await seq_node.read_value() >= 2:
                    break
                await asyncio.sleep(0.1)
            part = await (await vs.get_child([f"{idx}:ResultManagement", f"{idx}:LastResult",
                                              f"{idx}:PartId"])).read_value()
            state = await (await vs.get_child([f"{idx}:VisionSystemState", f"{idx}:State"])).read_value()
            return await seq_node.read_value(), part, state
        finally:
            await client.disconnect()

    try:
        seq, part, state = asyncio.run(read_during_run())
    finally:
        run.join(timeout=120)
    assert code == [0]
    assert seq >= 2 and part.startswith("P") and state in ("READY", "BUSY")
