"""`inspector run` and `inspector log` end to end (in process: the same main() the console script runs)."""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from inspector.audit.h5log import log_files
from inspector.cli import main
from inspector.plc import factory as plc_factory
from inspector.plc.port import PartVerdict
from tests.station.conftest import tiny_station_dict

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, cache_dir: Path, **sections) -> Path:
    data = tiny_station_dict(tmp_path, cache_dir, **sections)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_headless_then_export_lists_every_inspection(tmp_path: Path, text_cache_dir: Path, capsys) -> None:
    config = write_config(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 100})
    logs = tmp_path / "out-logs"
    assert main(["run", "--config", str(config), "--headless", "--frames", "30", "--log-dir", str(logs)]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 30 and out.startswith("seq=1 part=P000001 ")  # one line per published part
    assert "30 parts:" in err and "untrained backbone: shows the station, not its accuracy" in err
    (path,) = log_files(logs)
    csv_path = tmp_path / "export.csv"
    assert main(["log", "export", str(path), "--csv", str(csv_path), "--images", str(tmp_path / "img")]) == 0
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    assert [int(r["seq"]) for r in rows] == list(range(1, 31))
    for column in ("seq", "timestamp", "part_id", "line", "verdict", "score", "defect", "ms_total"):
        assert column in rows[0]
    assert rows[0]["timestamp"].endswith("Z") and rows[0]["line"] == "ring"
    capsys.readouterr()
    assert main(["log", "summary", str(logs)]) == 0
    summary = capsys.readouterr().out
    assert "30:" in summary and "station_start" in summary
    assert main(["log", "seal", str(logs)]) == 0
    assert "nothing to seal" in capsys.readouterr().out


def test_software_trigger_mode(tmp_path: Path, text_cache_dir: Path, capsys) -> None:
    config = write_config(tmp_path, text_cache_dir, trigger={"mode": "software", "rate_hz": 200})
    assert main(["run", "--config", str(config), "--frames", "5", "--no-log", "--plain"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == [f"part=S{i:06d}" for i in range(1, 6)]


def test_user_errors_exit_2_with_a_fix(tmp_path: Path, text_cache_dir: Path, capsys, monkeypatch) -> None:
    config = write_config(tmp_path, text_cache_dir)
    assert main(["run", "--config", str(config), "--frames", "0"]) == 2
    assert "--frames must be at least 1" in capsys.readouterr().err
    monkeypatch.setattr(plc_factory, "create_plc_link", FakeLink)
    assert main(["run", "--config", str(config), "--trigger", "plc"]) == 2
    assert "needs a plc: section" in capsys.readouterr().err
    assert main(["log", "summary", str(tmp_path / "nothing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["log", "export", str(tmp_path)]) == 2
    assert "give --csv OUT" in capsys.readouterr().err


class FakeLink:
    """A PLC link as the factory returns it: it triggers parts through the StationPort."""

    instances: ClassVar[list[FakeLink]] = []

    def __init__(self, spec, port) -> None:
        self.spec, self.port = spec, port
        self.replies: list[PartVerdict] = []
        self.state = "stopped"
        self.stopped = threading.Event()
        FakeLink.instances.append(self)

    def start(self) -> None:
        self.state = "connected"
        for i in range(4):
            self.port.submit_trigger(f"PLC{i}", self.replies.append)

    def stop(self) -> None:
        self.state = "stopped"
        self.stopped.set()


def test_plc_mode_uses_the_factory(tmp_path: Path, text_cache_dir: Path, monkeypatch) -> None:
    config = write_config(tmp_path, text_cache_dir, trigger={"mode": "plc"})
    monkeypatch.setattr(plc_factory, "create_plc_link", FakeLink)
    FakeLink.instances.clear()
    assert main(["run", "--config", str(config), "--frames", "4", "--plc-port", "/dev/ttyS9", "--plc-protocol",
                 "modbus", "--log-dir", str(tmp_path / "logs")]) == 0
    (link,) = FakeLink.instances
    assert link.spec.port == "/dev/ttyS9" and link.spec.protocol == "modbus"
    assert link.stopped.is_set()
    assert sorted(v.part_id for v in link.replies) == ["PLC0", "PLC1", "PLC2", "PLC3"]


@pytest.mark.slow
def test_demo_config_runs_headless(tmp_path: Path, capsys) -> None:
    """The acceptance command on the real demo line (ViT-B-16, random weights): minutes on 2 CPU cores."""
    logs = tmp_path / "demo-logs"
    config = REPO / "station_configs" / "demo.yaml"
    assert main(["run", "--config", str(config), "--headless", "--frames", "30", "--log-dir", str(logs)]) == 0
    (path,) = log_files(logs)
    out = tmp_path / "demo.csv"
    assert main(["log", "export", str(path), "--csv", str(out)]) == 0
    assert "30 inspections written" in capsys.readouterr().out
    with out.open() as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 30
