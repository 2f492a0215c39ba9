"""`inspector plc-sim --station CONFIG`: the real station in its own process, driven over a pty pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.cli import main
from tests.station.conftest import tiny_station_dict


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["ascii", "modbus"])
def test_plc_sim_drives_the_real_station(protocol: str, tmp_path: Path, capsys) -> None:
    data = tiny_station_dict(tmp_path, tmp_path / "cache")
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(data))
    logs = tmp_path / "logs"
    code = main(["plc-sim", "--station", str(config), "--station-log-dir", str(logs), "--protocol", protocol,
                 "--parts", "8", "--rate", "5", "--station-ready-s", "120"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out and "8 parts:" in out  # the simulator's table, then the station's own summary
    (path,) = log_files(logs)
    with AuditReader(path) as reader:
        records = reader.records()
    assert [str(r["trigger"]) for r in records] == ["plc"] * 8  # the station's log holds the PLC's parts


@pytest.mark.slow
def test_a_station_that_cannot_start_is_reported(tmp_path: Path, capsys) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("lines: []\n")
    assert main(["plc-sim", "--station", str(config), "--protocol", "ascii", "--parts", "1"]) == 2
    assert "the station exited with code" in capsys.readouterr().err
