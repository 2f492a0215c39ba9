"""`inspector train` and `inspector models list | promote | rollback` end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspector.cli import main
from inspector.training.registry import ModelRegistry
from tests.conftest import tiny_line
from tests.training.conftest import FAST_TRAINING, TrainedLine


def _config(tmp_path: Path, trained: TrainedLine, **training: object) -> Path:
    trained.copy(tmp_path)
    line = tiny_line(training={**FAST_TRAINING, **training},
                     fewshot={"folder": str(trained.station.lines[0].fewshot.folder)})
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"model_dir": "models", "cache_dir": "cache", "lines": [line]}))
    return path


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_models_list_promote_rollback(trained: TrainedLine, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path, trained)
    registry = ModelRegistry(tmp_path / "models", "ring")
    assert main(["models", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "deployed: v1" in out and "passed vs base" in out
    assert main(["models", "rollback", "--config", str(config), "--reason", "test"]) == 0
    assert registry.deployed() == "base"
    assert main(["models", "promote", "v1", "--config", str(config)]) == 0  # validated against base: allowed
    assert registry.deployed() == "v1"
    assert main(["models", "promote", "v9", "--config", str(config)]) == 2
    assert "no version v9" in capsys.readouterr().err


def test_train_command_registers_and_a_refused_version_needs_force(trained: TrainedLine, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path, trained, heads=["clip_adapter"])
    registry = ModelRegistry(tmp_path / "models", "ring")
    code = main(["train", "--config", str(config), "--max-epochs", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured  # the global-only adapter is worse than v1: the gate refuses it
    assert "v2 registered" in captured.out and "gate refused" in captured.out
    assert "base heads" in captured.out and "new v2" in captured.out
    assert registry.deployed() == "v1"
    assert main(["models", "promote", "v2", "--config", str(config)]) == 1
    assert "gate refuses v2" in capsys.readouterr().out
    assert main(["models", "promote", "v2", "--config", str(config), "--force", "--reason", "trial"]) == 0
    assert registry.deployed() == "v2"
    assert registry.deployment()["history"][-1]["action"] == "force-promote"


def test_promote_rollback_calibrate_keep_one_live_threshold(trained: TrainedLine, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Issue #12 through the CLI: every deployment and calibration goes through the station's one threshold path
    (the book in the log folder, one `threshold_change` event each); a rollback restores the earlier record."""
    import json

    from inspector.station.threshold import ThresholdBook
    from tests.conftest import audit_events

    config = _config(tmp_path, trained)
    v1 = ModelRegistry(tmp_path / "models", "ring").load("v1").threshold
    book = ThresholdBook(tmp_path / "logs")
    assert main(["models", "rollback", "--config", str(config), "--who", "Erik"]) == 0
    assert book.live("ring") is None  # base never fitted here: its threshold is settled at the station's start
    assert main(["calibrate", "--config", str(config), "--who", "Dana"]) == 0
    calibrated = yaml.safe_load(config.read_text())["lines"][0]["decision"]["threshold"]
    assert book.live("ring").value == calibrated and book.live("ring").method == "false_reject"
    assert main(["models", "promote", "v1", "--config", str(config), "--who", "Erik"]) == 0
    assert "live threshold" in capsys.readouterr().out
    assert (book.live("ring").version, book.live("ring").value) == ("v1", v1)
    assert main(["calibrate", "--config", str(config), "--who", "Dana"]) == 0  # recorded for base, v1 stays live
    assert book.live("ring").version == "v1" and "v1 stays live" in capsys.readouterr().out
    assert book.record("ring", "base").value == calibrated  # the same data: the same value, no change to log
    assert main(["models", "rollback", "--config", str(config), "--who", "Erik"]) == 0
    live = book.live("ring")
    assert (live.version, live.value) == ("base", calibrated)  # the base heads' record, as the YAML says
    capsys.readouterr()
    assert main(["models", "list", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert f"live threshold {calibrated:.4f} (base)" in shown and "calibrated (false_reject)" in shown
    changes = [e for e in audit_events(tmp_path / "logs") if e["kind"] == "threshold_change"]
    steps = [(json.loads(e["old"])["value"] if e["old"] else None, json.loads(e["new"])["value"],
              e["who"].split(" ")[0]) for e in changes]
    assert steps == [(None, calibrated, "Dana"), (calibrated, v1, "Erik"), (v1, calibrated, "Erik")]
