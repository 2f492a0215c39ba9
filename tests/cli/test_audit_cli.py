"""CLI changes are audit-logged in the station's HDF5 log folder (who, when, old -> new), and refused
(nothing changed) when they cannot be recorded because a running station holds the folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import yaml

from inspector.audit.h5log import AuditWriter
from inspector.cli import main
from inspector.training.registry import ModelRegistry, current_user
from tests.conftest import audit_events as events
from tests.conftest import tiny_line
from tests.training.conftest import tiny_adapter

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}
LIVE = "threshold_change"  # the live threshold's own event (issue #12): checked where it is the point


def model_events(logs: Path) -> list[dict]:
    return [e for e in events(logs) if e["kind"] != LIVE]


@pytest.fixture
def station(tmp_path: Path) -> Path:
    """A station YAML (log folder logs/, model_dir models/) whose line has two registered versions."""
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"station": "hall3", "model_dir": "models", "log": {"folder": "logs",
                                    "min_free_mb": 1}, "lines": [tiny_line()]}))
    registry = ModelRegistry(tmp_path / "models", "ring")
    for _ in range(2):
        registry.register(tiny_adapter(), METRICS, CARD)
    return path


def test_promote_and_rollback_are_logged_with_who_and_old_new(station: Path) -> None:
    logs = station.parent / "logs"
    assert main(["models", "promote", "v1", "--config", str(station), "--reason", "line trial"]) == 0
    assert main(["models", "rollback", "--config", str(station), "--who", "Dana", "--reason", "too many NG"]) == 0
    got = [(e["kind"], e["who"], e["old"], e["new"]) for e in model_events(logs)]
    user = current_user()
    dana = "Dana" if user == "Dana" else f"Dana (os:{user})"
    assert got == [("model_promote", user, "base", "v1"), ("model_rollback", dana, "v1", "base")]
    live = [e for e in events(logs) if e["kind"] == LIVE]
    assert live and '"version": "v1"' in live[0]["new"] and '"value": 1.0' in live[0]["new"]  # v1's own threshold
    what = [e["what"] for e in model_events(logs)]
    assert "line trial" in what[0] and "too many NG" in what[1]
    assert all(e["timestamp"].startswith("20") for e in events(logs))  # when


def test_forced_promotion_is_logged_as_forced(station: Path) -> None:
    registry = ModelRegistry(station.parent / "models", "ring")
    registry.promote("v1", who="anna")
    # v2 was validated against base, not the deployed v1: the gate refuses it unless forced.
    assert main(["models", "promote", "v2", "--config", str(station)]) == 1
    assert events(station.parent / "logs") == []  # refused: nothing changed, nothing logged
    assert main(["models", "promote", "v2", "--config", str(station), "--force", "--reason", "customer"]) == 0
    (event,) = model_events(station.parent / "logs")
    assert event["kind"] == "model_promote_forced" and (event["old"], event["new"]) == ("v1", "v2")
    assert "customer" in event["what"]


def test_change_is_refused_while_a_station_holds_the_log(station: Path, capsys: pytest.CaptureFixture) -> None:
    registry = ModelRegistry(station.parent / "models", "ring")
    with AuditWriter(station.parent / "logs", station="running-station"):  # a running station's writer
        assert main(["models", "promote", "v1", "--config", str(station)]) == 2
        assert main(["models", "rollback", "--config", str(station)]) == 2
    err = capsys.readouterr().err
    assert "nothing was changed" in err and "in use by" in err and "Stop the station" in err
    assert registry.deployed() == "base"
    assert main(["models", "promote", "v1", "--config", str(station)]) == 0  # the station stopped: allowed
    assert registry.deployed() == "v1"



def test_promotion_is_handed_to_a_running_station(station: Path, capsys: pytest.CaptureFixture) -> None:
    """A station runs (holds the station lock and the log): a promotion goes through, its event is handed to
    the station, which writes it into its own log; a calibration is still refused."""
    from inspector.audit import inbox
    from inspector.cli.audit_log import check_writable
    from inspector.config import load_station_config
    from inspector.config.log import LogSpec
    from inspector.errors import InspectorError
    from inspector.station.sinks import AuditSink
    from inspector.station.standby import claim_station

    logs = station.parent / "logs"
    registry = ModelRegistry(station.parent / "models", "ring")
    with claim_station(logs), AuditWriter(logs, station="running-station") as writer:
        assert main(["models", "promote", "v1", "--config", str(station), "--who", "Omar"]) == 0
        assert registry.deployed() == "v1"
        assert "recorded through the running station (pid" in capsys.readouterr().err
        handed = inbox.pending(logs)
        ((path, event),) = [(p, e) for p, e in handed if e.kind != LIVE]
        assert (event.kind, event.old, event.new) == ("model_promote", "base", "v1") and "Omar" in event.who
        assert [e.kind for _, e in handed].count(LIVE) == 1  # v1's threshold, handed in the same way
        with pytest.raises(InspectorError, match="nothing was changed"):  # what calibrate / train use: refused,
            check_writable(load_station_config(station), argparse.Namespace(log_dir=None))  # not applied live
        AuditSink(writer, LogSpec(), inbox_folder=logs).idle()  # the station's log sink, idle: takes the inbox
        assert inbox.pending(logs) == [] and not path.exists()
    (logged,) = model_events(logs)
    assert (logged["kind"], logged["old"], logged["new"]) == ("model_promote", "base", "v1")
    assert logged["time_ns"] == event.time_ns  # when the change was made, not when it was written


def test_log_dir_option_and_disabled_log(station: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    assert main(["models", "promote", "v1", "--config", str(station), "--log-dir", str(other)]) == 0
    assert [e["kind"] for e in events(other)] == ["model_promote", LIVE]
    data = yaml.safe_load(station.read_text())
    data["log"]["enabled"] = False
    station.write_text(yaml.safe_dump(data))
    assert main(["models", "rollback", "--config", str(station)]) == 0  # no audit log configured: allowed
    assert not (station.parent / "logs").exists()


def test_calibration_write_back_is_logged(tmp_path: Path, repo_root: Path) -> None:
    shutil.copytree(repo_root / "fewshot_data" / "demo", tmp_path / "fewshot")
    line = tiny_line(fewshot={"folder": "fewshot", "max_shots": 4}, decision={"threshold": 0.25})
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({"station": "test", "log": {"folder": "logs", "min_free_mb": 1},
                                      "lines": [line]}))
    assert main(["calibrate", "--config", str(config), "--who", "Eve"]) == 0
    new = yaml.safe_load(config.read_text())["lines"][0]["decision"]["threshold"]
    (event,) = model_events(tmp_path / "logs")
    assert event["kind"] == "calibration" and event["who"].startswith("Eve")
    (live,) = [e for e in events(tmp_path / "logs") if e["kind"] == LIVE]
    assert live["who"].startswith("Eve") and str(new)[:6] in live["new"]
    assert '"decision.threshold": 0.25' in event["old"] and str(new)[:6] in event["new"]
    assert "false_reject" in event["new"]
