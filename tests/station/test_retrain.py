"""Retraining from a station without Qt: the registry's versions as the panel lists them, approve / roll back
(audit-logged, also with the station stopped), and a training run's progress reports."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from inspector.station.handle import StationHandle
from inspector.station.retrain import PipelineTrainer, RegistryBook, TrainEvent
from inspector.training.errors import TrainingCancelledError
from inspector.training.registry import ModelRegistry
from tests.conftest import audit_events, tiny_line
from tests.training.conftest import tiny_adapter

DEMO = Path(__file__).resolve().parents[2] / "fewshot_data" / "demo"
METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}


@pytest.fixture
def station_config(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station YAML on the tiny architecture: two lines, four good and one scratch sample, log in tmp."""
    (tmp_path / "fewshot" / "good").mkdir(parents=True)
    for name in ("good_000.png", "good_001.png", "good_002.png", "good_003.png"):
        shutil.copy(DEMO / "good" / name, tmp_path / "fewshot" / "good" / name)
    (tmp_path / "fewshot" / "defect" / "scratch").mkdir(parents=True)
    shutil.copy(DEMO / "defect" / "scratch" / "scratch_000.png", tmp_path / "fewshot" / "defect" / "scratch")
    lines = [tiny_line(name=name, fewshot={"folder": "fewshot", "max_shots": 4, "augment": False},
                       heads={"zero_shot": 1.0, "references": 1.0, "probe": 0.0},
                       training={"max_epochs": 2, "heads": ["clip_adapter", "patch"], "validation": {"folds": 2}})
             for name in ("ring", "ring2")]
    config = {"station": "test-station", "cache_dir": str(tmp_path_factory.mktemp("inspector-cache")),
              "model_dir": "models", "lines": lines,
              "camera": {"kind": "synthetic", "synthetic": {"size": [128, 128]}},
              "trigger": {"mode": "free_run", "rate_hz": 8.0},
              "log": {"folder": "logs", "fsync_interval_s": None, "min_free_mb": 1}}
    path = tmp_path / "station.yaml"
    path.write_text("# test station\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_stopped_station_change_paths_are_audited(station_config: Path) -> None:
    handle = StationHandle(station_config)
    ModelRegistry(handle.registry_dir, handle.line).register(tiny_adapter(), METRICS, CARD)
    book = RegistryBook(handle)
    book.approve(handle, "v1", who="Dana")
    book.rollback(handle, who="Erik")
    handle.update_line({"decision.threshold": 1.75}, who="Dana", kind="threshold", what="threshold set in the GUI")
    handle.update_line({"prompts.domain_templates": ["an X-ray of {}."]}, who="Dana", kind="prompts",
                       what="prompts edited in the GUI")
    handle.changeover("ring2", who="Olga")
    handle.shutdown()

    events = {e["kind"]: e for e in audit_events(handle.log_dir)}
    expected = {
        "model_promote": ("Dana", "base", "v1"),
        "model_rollback": ("Erik", "v1", "base"),
        "changeover": ("Olga", {"line": "ring"}, {"line": "ring2"}),
    }
    for kind, (who, old, new) in expected.items():
        event = events[kind]
        assert event["who"] == who and event["timestamp"]
        assert (event["old"], event["new"]) == ((old, new) if isinstance(old, str) else (json.dumps(old),
                                                                                           json.dumps(new)))
    threshold = events["threshold"]
    assert threshold["who"] == "Dana" and json.loads(threshold["old"]) == {"decision.threshold": None}
    assert json.loads(threshold["new"]) == {"decision.threshold": 1.75}
    prompts = events["prompts"]
    assert json.loads(prompts["old"]) == {"prompts.domain_templates": []}
    assert json.loads(prompts["new"]) == {"prompts.domain_templates": ["an X-ray of {}."]}
    saved = yaml.safe_load(station_config.read_text())["lines"][0]
    assert saved["decision"]["threshold"] == 1.75 and saved["prompts"]["domain_templates"] == ["an X-ray of {}."]


def test_registry_book_lists_statuses_metrics_and_refuses_a_gate_refusal(station_config: Path) -> None:
    handle = StationHandle(station_config)
    registry = ModelRegistry(handle.registry_dir, handle.line)
    new = {"threshold": 1.2, "false_reject_rate": 0.05, "escape_rate": float("nan"), "auroc": 0.9}
    registry.register(tiny_adapter(), {**METRICS, "new": new}, CARD)
    refused = {"passed": False, "compared_to": "v1", "reasons": ["escape rate rose"]}
    registry.register(tiny_adapter(), {**METRICS, "gate": refused}, CARD)
    book = RegistryBook(handle)
    rows = {r.version: r for r in book.rows()}
    assert [r.version for r in book.rows()] == ["base", "v1", "v2"] and not book.can_rollback()
    assert (rows["base"].status, rows["v1"].status, rows["v2"].status) == ("active", "candidate", "candidate")
    assert rows["v1"].metrics == pytest.approx({"threshold": 1.2, "false reject %": 5.0, "AUROC": 0.9})
    assert rows["v1"].gate_refused == "" and rows["v2"].gate_refused == "escape rate rose"

    book.approve(handle, "v1", who="Dana")
    with pytest.raises(ValueError, match="gate refused v2: escape rate rose"):
        book.approve(handle, "v2", who="Dana")
    book.approve(handle, "v2", who="Dana", force=True)
    assert [(r.version, r.status) for r in book.rows()] == [("base", "retired"), ("v1", "retired"), ("v2", "active")]
    assert book.can_rollback() and book.rollback(handle, who="Erik") == "v1"
    assert {r.version: r.status for r in book.rows()}["v2"] == "rejected"
    handle.shutdown()
    kinds = [e["kind"] for e in audit_events(handle.log_dir)]
    assert kinds.count("model_promote") == 1 and "model_promote_forced" in kinds and "model_rollback" in kinds


def test_training_run_reports_progress_and_registers_a_candidate(station_config: Path) -> None:
    handle = StationHandle(station_config)
    events: list[TrainEvent] = []
    version = PipelineTrainer().run(handle, "Dana", events.append, threading.Event(), max_epochs=2)
    fractions = [e.fraction for e in events]
    assert len(fractions) >= 4 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "threshold" in events[-1].metrics and events[-1].message.startswith(f"candidate {version}")
    assert any(e.stage == "train" and any("loss" in k for k in e.metrics) for e in events)  # per head and epoch
    assert (handle.registry_dir / "ring" / version).is_dir()
    assert {r.version: r.status for r in RegistryBook(handle).rows()}[version] == "candidate"  # never deployed
    handle.shutdown()


def test_cancelled_training_registers_nothing(station_config: Path) -> None:
    handle = StationHandle(station_config)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelledError):
        PipelineTrainer().run(handle, "Dana", lambda _e: None, cancel)
    assert [r.version for r in RegistryBook(handle).rows()] == ["base"]
    handle.shutdown()
