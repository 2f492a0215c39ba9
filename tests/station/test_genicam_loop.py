"""The station on GenICam cameras end to end (tiny engine, real threads, real HDF5 audit files): the
simulator's frame ids in the log; with the node-map double, the software trigger fired on accept, a
missed hardware pulse and a camera that vanishes mid-part answered FAULT, never OK."""

from __future__ import annotations

import math
import time
from pathlib import Path

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.plc.port import PartVerdict, StationState
from inspector.station.genicam import GenICamSource
from inspector.station.loop import StationLoop
from tests.station.conftest import wait_for
from tests.station.genicam_double import FakeCamera, FakeHarvester
from tests.station.test_genicam import double_spec

TIMEOUT = 60.0


def read_log(folder: Path) -> tuple[list[dict], list[dict]]:
    records, events = [], []
    for path in log_files(folder):
        with AuditReader(path) as reader:
            records += reader.records()
            events += reader.events()
    return records, events


def assert_fault(v: PartVerdict) -> None:
    assert v.verdict == "NG" and v.defect == "FAULT" and math.isnan(v.score) and v.fault


def test_free_run_on_the_simulator_logs_the_cameras_frame_ids(make_station, engines_for, tmp_path: Path) -> None:
    station = make_station(
        camera={"kind": "genicam", "fps": 50, "frame_size": [320, 240],
                "genicam": {"cti": ["genicam-simulator"], "serial": "2", "roi": [0, 0, 320, 240]}},
        trigger={"mode": "free_run", "rate_hz": 10})
    with StationLoop(station, engines=engines_for(station), max_parts=5) as loop:
        assert loop.wait_done(TIMEOUT)
        stats = loop.stats()
    assert stats.parts == 5 and stats.faults == 0
    records, _ = read_log(tmp_path / "logs")
    ids = [r["camera_frame_id"] for r in records]
    assert len(ids) == 5 and all(i > 0 for i in ids) and ids == sorted(set(ids))
    assert [r["frame_ref"] for r in records] == [f"frame {i}" for i in ids]
    assert all(r["camera_time_ns"] == -1 for r in records)  # the simulator has no timestamps


def test_software_trigger_and_a_camera_that_vanishes_mid_part(make_station, engines_for, tmp_path: Path) -> None:
    fake = FakeCamera()
    spec = double_spec("software")
    station = make_station(camera=spec.model_dump(mode="json"))
    source = GenICamSource(station.camera, factory=lambda: FakeHarvester(fake))
    with StationLoop(station, source=source, engines=engines_for(station)) as loop:
        first = loop.trigger("A1").result(TIMEOUT)
        assert first.fault is None and fake.software_triggers == 1
        fake.unplugged.set()
        lost = loop.trigger("A2").result(TIMEOUT)
        assert_fault(lost)
        assert "device lost" in lost.fault
        assert loop.status().state is StationState.FAULT
        fake.unplugged.clear()
        wait_for(lambda: loop.status().state is StationState.READY, what="camera reconnect")
        back = loop.trigger("A3").result(TIMEOUT)
        assert back.fault is None
    records, events = read_log(tmp_path / "logs")
    assert [(r["part_id"], r["defect"] == "FAULT") for r in records] == [("A1", False), ("A2", True), ("A3", False)]
    assert records[0]["camera_frame_id"] == 1 and records[1]["camera_frame_id"] == -1
    assert records[2]["camera_frame_id"] == 2 and fake.software_triggers == 3  # A2 fired into a dead camera
    assert all(r["camera_time_ns"] > 0 for r in (records[0], records[2]))  # the camera's own timestamps
    kinds = [e["kind"] for e in events]
    assert kinds.index("camera_lost") < kinds.index("camera_restored")


def test_a_missed_hardware_pulse_is_that_parts_fault_only(make_station, engines_for, tmp_path: Path) -> None:
    fake = FakeCamera()
    station = make_station(camera=double_spec("hardware").model_dump(mode="json"))
    source = GenICamSource(station.camera, factory=lambda: FakeHarvester(fake))
    verdicts = []
    with StationLoop(station, source=source, engines=engines_for(station)) as loop:
        for part, pulse in (("B1", True), ("B2", False), ("B3", True)):
            future = loop.trigger(part)
            if pulse:
                fake.pulse()  # the PLC's line pulse, a moment after its message
            verdicts.append(future.result(TIMEOUT))
            time.sleep(0.05)
    assert verdicts[0].fault is None and verdicts[2].fault is None
    assert_fault(verdicts[1])
    assert verdicts[1].fault.startswith("missing frame: ") and "no frame for this trigger" in verdicts[1].fault
    records, _ = read_log(tmp_path / "logs")
    assert [r["camera_frame_id"] for r in records] == [1, -1, 2]  # B3 judged on its own frame, not shifted


def test_inspector_run_on_the_simulator_then_export(tmp_path: Path, text_cache_dir: Path, capsys) -> None:
    """The done-when of issue #14 on the tiny model: `inspector run --headless --frames N` from the simulator
    into the audit log, each part with the camera's frame id, and the CSV export carries it."""
    import csv

    import yaml

    from inspector.cli import main
    from tests.station.conftest import tiny_station_dict

    camera = {"kind": "genicam", "fps": 40, "genicam": {"cti": ["genicam-simulator"], "serial": "0",
                                                         "roi": [0, 0, 256, 256], "pixel_format": "Mono8"}}
    config = tmp_path / "station.yaml"
    data = tiny_station_dict(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 10})
    data["camera"] = camera
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    logs = tmp_path / "run-logs"
    assert main(["run", "--config", str(config), "--headless", "--frames", "8", "--log-dir", str(logs)]) == 0
    assert "8 parts:" in capsys.readouterr().err
    assert main(["log", "export", str(logs), "--csv", str(tmp_path / "parts.csv")]) == 0
    with (tmp_path / "parts.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    ids = [int(r["camera_frame_id"]) for r in rows]
    assert len(ids) == 8 and all(i > 0 for i in ids) and ids == sorted(set(ids))
    assert all(r["frame_ref"] == f"frame {r['camera_frame_id']}" and r["fault"] == "" for r in rows)

    data["camera"]["genicam"]["exposure_us"] = 100  # the simulator has no ExposureTime: the start is refused
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["run", "--config", str(config), "--headless", "--frames", "2", "--log-dir", str(logs)]) == 2
    assert "camera Viky has no feature ExposureTime (camera.genicam.exposure_us)" in capsys.readouterr().err
