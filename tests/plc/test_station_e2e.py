"""PLC link + the real station loop (tiny ViT, synthetic camera, HDF5 audit log), over real ptys.

What the PLC was told must equal what the audit log recorded, part by part.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.plc import protocol as proto
from inspector.plc import registers as reg
from inspector.plc.base import LinkState
from inspector.plc.factory import create_plc_link
from inspector.plc.ptypair import PtyPort, VirtualNullModem
from inspector.station.loop import StationLoop
from tests.station.conftest import engines_for, fitted, make_station, text_cache_dir  # noqa: F401 (fixtures)

from .conftest import PlcEnd, fast_spec
from .test_modbus import trigger

pytestmark = pytest.mark.integration


def audit_records(folder: Path) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for path in log_files(folder):
        with AuditReader(path) as reader:
            for record in reader.records():
                assert record["part_id"] not in records, f"part {record['part_id']} logged twice"
                records[record["part_id"]] = record
    return records


def test_ascii_200_parts_match_the_audit_log(make_station, engines_for, tmp_path: Path, pty: PtyPort) -> None:  # noqa: F811
    station = make_station(trigger={"mode": "plc"})
    loop = StationLoop(station, engines=engines_for(station), trigger_mode="plc")
    told: dict[str, proto.Result] = {}
    with loop, create_plc_link(fast_spec(pty.path, result_timeout_ms=10_000), loop) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        plc = PlcEnd(pty)
        assert plc.ask("STATUS").startswith(b"STATUS,READY,ring,")
        for i in range(200):
            part_id = f"E{i:04d}"
            assert plc.ask(f"TRIG,{part_id}") == f"ACK,{part_id}".encode()
            result = proto.parse_reply(plc.line(timeout=30)).message
            assert isinstance(result, proto.Result) and result.part_id == part_id
            told[part_id] = result
        assert plc.quiet(0.05)
    records = audit_records(tmp_path / "logs")
    assert sorted(records) == sorted(told)
    for part_id, result in told.items():
        record = records[part_id]
        assert result.verdict == record["verdict"]
        assert result.score == pytest.approx(round(record["score"], 3), abs=1e-9)
        assert (result.defect or "") == (record["defect"] or "")
        assert record["trigger"] == "plc"


def test_modbus_parts_match_the_audit_log(make_station, engines_for, tmp_path: Path,  # noqa: F811
                                          modem: VirtualNullModem) -> None:
    station = make_station(trigger={"mode": "plc"})
    loop = StationLoop(station, engines=engines_for(station), trigger_mode="plc")
    told: dict[str, reg.ResultBlock] = {}
    spec = fast_spec(modem.a.path, protocol="modbus", unit_id=3, result_timeout_ms=10_000)
    with loop, create_plc_link(spec, loop) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        client = ModbusSerialClient(str(modem.b.path), baudrate=115200, timeout=1.0, retries=0)
        assert client.connect()
        try:
            for part in range(1, 51):
                told[str(part)] = trigger(client, part, timeout=30)
        finally:
            client.close()
    records = audit_records(tmp_path / "logs")
    assert sorted(records, key=int) == sorted(told, key=int)
    for part_id, block in told.items():
        record = records[part_id]
        assert block.part == int(part_id) and block.error == 0
        assert block.verdict == (1 if record["verdict"] == "OK" else 2)
        assert block.score == reg.score_register(record["score"]) and not math.isnan(record["score"])


def test_a_station_that_is_not_running_refuses_and_says_so(make_station, engines_for,  # noqa: F811
                                                          pty: PtyPort) -> None:
    station = make_station(trigger={"mode": "plc"})
    loop = StationLoop(station, engines=engines_for(station), trigger_mode="plc", log=False)
    with create_plc_link(fast_spec(pty.path), loop) as link:
        assert link.wait_for_state(LinkState.CONNECTED)
        plc = PlcEnd(pty)
        assert plc.ask("TRIG,N1").startswith(b"ERR,E05,station not ready")
        status = proto.parse_reply(plc.ask("STATUS")).message
        assert isinstance(status, proto.StatusReply) and status.state != "READY"
