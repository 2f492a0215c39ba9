"""Retraining from a station without Qt: the registry's versions as the panel lists them, approve / roll back
(the stopped-station audit paths: tests/station/test_handle.py), and a training run's progress reports."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inspector.station.handle import StationHandle
from inspector.station.retrain import PipelineTrainer, RegistryBook, TrainEvent
from inspector.training.errors import TrainingCancelledError
from inspector.training.registry import ModelRegistry
from tests.conftest import audit_events
from tests.station.conftest import write_handle_station
from tests.training.conftest import tiny_adapter

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}


@pytest.fixture
def station_config(tmp_path: Path, text_cache_dir: Path) -> Path:
    return write_handle_station(tmp_path, text_cache_dir)


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


def _arm(tp: int | None, fp: int | None, tn: int | None, fn: int | None, **extra: object) -> dict:
    counts = {} if tp is None else {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return {"auroc": 0.9, "false_reject_rate": (fp or 0) / 20, "escape_rate": (fn or 0) / 8, "threshold": 1.1,
            "n_good": 20, "n_defect": 8, **counts, **extra}


def test_approval_rows_show_the_confusion_counts_on_the_same_held_out_parts(station_config: Path) -> None:
    """Issue #17 item 9: candidate vs active, good OK / false rejects / defects NG / escapes, on the parts the
    candidate was judged on (its record judges the version deployed when it was trained there too)."""
    from inspector.station.retrain import approval_rows
    from inspector.station.threshold import ThresholdRecord

    handle = StationHandle(station_config)
    registry = ModelRegistry(handle.registry_dir, handle.line)
    old = {"new": _arm(None, None, None, None)}  # registered before the counts were kept
    registry.register(tiny_adapter(), {**METRICS, **old}, CARD)
    new = {"new": _arm(7, 1, 19, 1), "base": _arm(5, 3, 17, 3), "deployed": {**_arm(6, 2, 18, 2), "version": "v1"}}
    registry.register(tiny_adapter(), {**METRICS, **new}, CARD)
    rows = {r.version: r for r in RegistryBook(handle).rows()}
    live = ThresholdRecord(1.25, "version", "v2", who="Dana", when="2026-12-06T12:00:00")
    table, note = approval_rows(rows["v1"], rows["v2"], 0.98, live)
    got = {what: (now, after) for what, now, after in table}
    assert got["version"] == ("v1", "v2")
    assert got["live threshold"] == ("0.98", "1.25 (model v2's calibration)")
    assert got["held-out parts"] == ("20 good / 8 defect", "20 good / 8 defect")
    assert got["good judged OK"] == ("18", "19")
    assert got["good judged NG (false rejects)"] == ("2", "1")
    assert got["defect judged NG"] == ("6", "7")
    assert got["defect judged OK (escapes)"] == ("2", "1")
    assert "v2's held-out parts" in note
    # base vs the candidate: base judged on the candidate's parts too.
    got = {w: (a, b) for w, a, b in approval_rows(rows["base"], rows["v2"], 0.98, live)[0]}
    assert got["defect judged OK (escapes)"] == ("3", "1")
    assert got["escape %"] == ("37.5", "12.5") and got["false reject %"] == ("15", "5")  # the same parts' rates
    # a version registered before the counts were kept: its counts are "not recorded", the rest is shown.
    table, note = approval_rows(rows["base"], rows["v1"], 0.98, None)
    got = {w: (a, b) for w, a, b in table}
    assert got["good judged NG (false rejects)"] == ("not recorded", "not recorded")
    assert got["held-out parts"] == ("not recorded", "20 good / 8 defect") and got["AUROC"][1] == "0.9"
    assert "own held-out parts" in note
    assert handle.threshold_if_deployed("v2").value == pytest.approx(1.0)  # v2's own calibration (METRICS)
    handle.shutdown()
