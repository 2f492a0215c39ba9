"""`inspector calibrate` prints and records how sure its threshold is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_production_proposal_is_shown_applied_and_refused_twice(tmp_path: Path, repo_root: Path, capsys) -> None:
    """`calibrate --production`: before -> after; `--apply` makes it live (audited); nothing pending -> exit 2."""
    from inspector.station.recalibration import ProposalBook, ThresholdProposal
    from inspector.station.threshold import ThresholdBook
    from tests.conftest import audit_events

    shutil.copytree(repo_root / "fewshot_data" / "demo", tmp_path / "fewshot")
    line = tiny_line(fewshot={"folder": "fewshot", "max_shots": 4})
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({"station": "test", "lines": [line], "log": {"folder": "logs"}}))
    args = ["calibrate", "--config", str(station), "--production"]
    assert main(args) == 0 and "no production check yet" in capsys.readouterr().out
    proposal = ThresholdProposal(line["name"], "base", 3.0, 2.25, 0.05, (0.04, 0.06), 0.004, (0.003, 0.005), 1000,
                                 900, 5, 1, 2.5, "2026-12-06T10:00:00+00:00")
    ProposalBook(tmp_path / "logs").update(line["name"], proposal=proposal.to_json())
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(pending)" in out and "proposed 2.2500 for 5.0 % (4.0 %-6.0 %)" in out and "5 NG and 1 FAULT" in out
    assert main([*args, "--apply", "--who", "Dana"]) == 0
    assert ThresholdBook(tmp_path / "logs").live(line["name"]).value == 2.25
    assert load_station_config(station).line().decision.threshold == 2.25
    assert main([*args, "--apply"]) == 2 and "no pending threshold proposal" in capsys.readouterr().out
    change = [e for e in audit_events(tmp_path / "logs") if e["kind"] == "threshold_change"][-1]
    assert "Dana" in change["who"] and "production" in change["what"]
