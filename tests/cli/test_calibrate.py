"""`inspector calibrate` prints and records how sure its threshold is."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from inspector.cli import main
from inspector.config import load_station_config
from tests.conftest import tiny_line


def test_calibrate_prints_and_records_the_false_reject_interval(tmp_path: Path, repo_root: Path, capsys) -> None:
    shutil.copytree(repo_root / "fewshot_data" / "demo", tmp_path / "fewshot")
    line = tiny_line(fewshot={"folder": "fewshot", "max_shots": 4})
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({"station": "test", "lines": [line]}))
    assert main(["calibrate", "--config", str(station)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "false rejects with 4 good parts (90 % interval)" in out
    record = load_station_config(station).line().decision.calibration.record
    lo, hi = record["false_reject_interval"]
    assert 0.0 <= lo < record["expected_false_reject"] < hi <= 1.0
    assert record["interval_level"] == 0.9 and "bootstrap" in record["interval_method"]


def test_the_live_threshold_record_carries_the_calibration_interval(tmp_path: Path, repo_root: Path) -> None:
    """The station's live record (what the GUI shows) says how sure the calibrated threshold is."""
    from inspector.station.threshold import ThresholdBook

    shutil.copytree(repo_root / "fewshot_data" / "demo", tmp_path / "fewshot")
    line = tiny_line(fewshot={"folder": "fewshot", "max_shots": 4})
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({"station": "test", "lines": [line], "log": {"folder": "logs"}}))
    assert main(["calibrate", "--config", str(station)]) == 0
    record = ThresholdBook(tmp_path / "logs").live(line["name"])
    calibration = load_station_config(station).line().decision.calibration.record
    assert record is not None and record.interval is not None
    assert list(record.interval) == calibration["false_reject_interval"]
    assert "expected" in record.source()
