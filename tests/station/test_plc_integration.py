"""The real loop behind the real PLC link: ASCII protocol over a virtual null-modem, checked by the PLC simulator.

This is the contract of inspector.plc.port exercised from both sides: every TRIG gets one ACK and
one RES with the verdict the station logged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.plc import factory, ptypair, sim
from inspector.station.loop import StationLoop

pytestmark = pytest.mark.integration


def test_plc_triggers_through_the_real_link(make_station, engines_for, tmp_path: Path) -> None:
    from inspector.config.plc import PlcSpec
    from inspector.plc.base import LinkState

    station = make_station(trigger={"mode": "plc"})
    with tempfile.TemporaryDirectory(prefix="plc-") as short, \
            ptypair.VirtualNullModem(Path(short) / "station", Path(short) / "plc") as modem:
        station_end, plc_end = modem.paths
        with StationLoop(station, engines=engines_for(station)) as loop:
            link = factory.create_plc_link(PlcSpec(protocol="ascii", port=station_end, result_timeout_ms=10_000),
                                           loop)
            link.start()
            try:
                assert link.wait_for_state(LinkState.CONNECTED)
                report = sim.AsciiPlcSimulator(plc_end, deadline_ms=10_000).run(parts=6, rate_hz=20)
            finally:
                link.stop()
    assert report.ok, report.mismatches
    (path,) = log_files(tmp_path / "logs")
    with AuditReader(path) as reader:
        rows = reader.records()
    assert [r["part_id"] for r in rows] == [f"P{i:06d}" for i in range(1, 7)]
    assert all(r["trigger"] == "plc" for r in rows)
