"""The station handle without Qt: restartable runs, shift counters, changeover, config write-back, the PLC link,
and every change path recorded in the audit log (the GUI tests drive the same handle through the widgets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from inspector.station.handle import StationHandle
from inspector.station.results import StationResult
from inspector.station.retrain import RegistryBook
from inspector.training.registry import ModelRegistry
from tests.conftest import audit_events
from tests.station.conftest import wait_for, write_handle_station, write_trained_station
from tests.training.conftest import tiny_adapter, trained  # noqa: F401 (the trained-line fixture)

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}
START_S = 120.0  # the first start fits the line (seconds on two CPU cores)


@pytest.fixture
def station_config(tmp_path: Path, text_cache_dir: Path) -> Path:
    return write_handle_station(tmp_path, text_cache_dir)


@pytest.fixture
def running(station_config: Path):
    """A started handle with an observer that keeps every published part; shut down after the test."""
    handle = StationHandle(station_config)
    seen: list[StationResult] = []
    handle.add_observer(seen.append, name="test", queue_size=256)
    handle.start()
    try:
        yield handle, seen
    finally:
        handle.shutdown()


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


def test_counts_add_up_over_runs_and_every_part_shown_is_logged(running) -> None:
    """test_operator.py's counters, without the widgets: a stop and a new start keep the shift counting."""
    handle, seen = running
    wait_for(lambda: len(seen) >= 6, timeout=START_S, what="six published parts")
    handle.stop()
    assert not handle.running
    counts = handle.counts()
    stats = handle.stats()
    assert counts.parts == stats.parts >= 6
    assert counts.parts == counts.ok + counts.ng + counts.faults
    expected_yield = 100.0 * counts.ok / counts.inspected if counts.inspected else None
    assert counts.yield_pct == expected_yield
    # Every part an observer was told about is in the log; the log never skips one.
    assert len(seen) == counts.parts
    assert stats.log.published == counts.parts
    assert not any("not logged" in reason for reason in stats.drops)

    handle.start()  # a stopped loop cannot restart: the handle builds a new one; the counters continue
    assert handle.running
    wait_for(lambda: handle.counts().parts > counts.parts, timeout=30, what="parts of the second run")
    assert handle.counts().parts >= handle.stats().parts


def test_changeover_while_running_is_logged_and_resumed_by_the_next_handle(running, station_config: Path) -> None:
    handle, seen = running
    wait_for(lambda: len(seen) >= 2, timeout=START_S, what="two published parts")
    handle.changeover("ring2")
    assert handle.line == "ring2"
    assert handle.loop is not None and handle.loop.line == "ring2"
    before = len(seen)
    wait_for(lambda: len(seen) > before + 1 and seen[-1].line == "ring2", timeout=30, what="parts of ring2")
    handle.shutdown()
    changeovers = [e for e in audit_events(handle.log_dir) if e["kind"] == "changeover"]
    assert changeovers and changeovers[-1]["who"] == "operator" and "ring2" in changeovers[-1]["what"]
    assert StationHandle(station_config).line == "ring2"  # a restarted GUI resumes the line it ran


def test_threshold_change_is_live_saved_and_logged(running) -> None:
    """The threshold panel's apply: the live engine first, then the YAML and the log (no refit)."""
    handle, seen = running
    wait_for(lambda: len(seen) >= 1, timeout=START_S, what="a published part")
    inspector = handle.inspector
    proposal = round(inspector.threshold * 1.5 + 0.125, 6)
    inspector.set_threshold(proposal)
    handle.update_line({"decision.threshold": proposal}, "Dana", "threshold", "threshold set in the GUI")
    assert handle.inspector is inspector and handle.inspector.threshold == proposal  # live on the line
    saved = yaml.safe_load(handle.config_path.read_text())["lines"][0]["decision"]["threshold"]
    assert saved == proposal
    before = len(seen)
    wait_for(lambda: any(r.result is not None and math.isclose(r.result.threshold, proposal)
                         for r in seen[before:]), timeout=30, what="a part judged on the new threshold")
    handle.shutdown()
    events = [e for e in audit_events(handle.log_dir) if e["kind"] == "threshold"]
    assert events and events[0]["who"] == "Dana" and str(proposal)[:6] in events[0]["new"]


def test_prompt_change_refits_the_running_line(running) -> None:
    """The prompt panel's apply: written back (comments kept), refitted off the line, swapped in, logged."""
    handle, seen = running
    wait_for(lambda: len(seen) >= 1, timeout=START_S, what="a published part")
    updates = {"prompts.normal_states": ["shiny {}", "immaculate {} straight from the lathe"],
               "prompts.defects": {"scratch": "a long deep scratch across the polished ring face",
                                   "dent": "a dent in the metal"}}
    handle.update_line(updates, "Dana", "prompts", "prompts edited in the GUI", True)
    saved = yaml.safe_load(handle.config_path.read_text())["lines"][0]
    assert saved["prompts"]["normal_states"] == ["shiny {}", "immaculate {} straight from the lathe"]
    assert handle.config_path.read_text().startswith("# test station")  # comments kept
    assert handle.running and handle.inspector.line.prompts.defects["scratch"].startswith("a long")
    before = len(seen)
    wait_for(lambda: len(seen) > before, timeout=30, what="a part after the refit")
    handle.shutdown()
    events = [e for e in audit_events(handle.log_dir) if e["kind"] == "prompts"]
    assert events and events[0]["who"] == "Dana" and "lathe" in events[0]["new"] and "flawless" in events[0]["old"]


def test_the_plc_link_starts_with_the_station_and_stops_with_the_handle(station_config: Path) -> None:
    handle = StationHandle(station_config, trigger_mode="plc")  # plc: default spec, pyserial loop:// port
    try:
        assert handle.plc_state()[0] == "stopped"
        handle.start()
        assert handle.link is not None
        wait_for(lambda: handle.plc_state()[0] in ("connected", "silent"), timeout=10, what="PLC link up")
    finally:
        handle.shutdown()
    assert handle.link is None  # stopped with the handle
    assert StationHandle(station_config, trigger_mode="free_run").plc_state()[0] == "off"


def _one_live(handle: StationHandle, seen: list[StationResult], value: float, version: str) -> None:
    """Exactly one live threshold: the book's record, the engine and the parts judged next all agree."""
    record = handle.threshold_record()
    assert record is not None and record.version == version and record.value == pytest.approx(value)
    assert handle.inspector.model_version == version and handle.inspector.threshold == pytest.approx(value)
    n = len(seen)
    wait_for(lambda: len(seen) >= n + 3, 60, "parts after the change")
    last = seen[-1]
    assert last.result is not None and last.result.threshold == pytest.approx(value) and last.model.version == version


@pytest.mark.slow  # trains a line once per session (tests.training's ``trained``) and fits it twice
def test_threshold_sequence_leaves_one_live_threshold(trained, tmp_path: Path) -> None:  # noqa: F811
    """Issue #12: apply, approve, roll back, prompt apply, restart - one live threshold at each step, each change
    one `threshold_change` event (who, old -> new), none for steps that change nothing."""
    config = write_trained_station(tmp_path, trained)
    registry = ModelRegistry(tmp_path / "models", "ring")
    v1_threshold = registry.load("v1").threshold
    handle = StationHandle(config)
    seen: list[StationResult] = []
    handle.add_observer(seen.append, name="test", queue_size=256)
    handle.start()
    try:
        fitted = handle.inspector.threshold
        _one_live(handle, seen, fitted, "base")
        applied = round(fitted * 0.5 + 0.01, 6)  # the engineer's own value (neither calibration)
        handle.set_threshold(applied, "Dana", "set in the GUI")
        _one_live(handle, seen, applied, "base")
        assert yaml.safe_load(config.read_text())["lines"][0]["decision"]["threshold"] == applied  # file agrees
        book = RegistryBook(handle)
        book.approve(handle, "v1", who="Erik", force=True)
        _one_live(handle, seen, v1_threshold, "v1")  # the version's own calibrated threshold
        book.rollback(handle, who="Erik")
        _one_live(handle, seen, applied, "base")  # exactly the state before the approval
        handle.update_line({"prompts.domain_templates": ["a photo of {}."]}, who="Dana", kind="prompts",
                           what="prompts edited", refit=True)
        _one_live(handle, seen, applied, "base")  # a refit does not recalibrate behind anyone's back
    finally:
        handle.shutdown()
    restarted = StationHandle(config)
    seen.clear()
    restarted.add_observer(seen.append, name="test", queue_size=256)
    restarted.start()
    try:
        _one_live(restarted, seen, applied, "base")  # a restart comes up with what was live
    finally:
        restarted.shutdown()
    changes = [e for e in audit_events(handle.log_dir) if e["kind"] == "threshold_change"]
    steps = [(json.loads(e["old"])["value"] if e["old"] else None, json.loads(e["new"])["value"], e["who"])
             for e in changes]
    assert steps == [(pytest.approx(fitted), applied, "Dana"), (applied, pytest.approx(v1_threshold), "Erik"),
                     (pytest.approx(v1_threshold), applied, "Erik")]


def test_shift_counters_survive_a_restart_from_the_log(station_config: Path) -> None:
    """Issue #17 item 3: a restarted application shows the current shift's parts (from the log), not 0; the
    previous shift's parts are not counted."""
    import datetime as dt

    from inspector.audit.h5log import AuditWriter
    from inspector.config import load_station_config
    from inspector.station.shifts import current_shift
    from tests.audit.conftest import make_record

    data = yaml.safe_load(station_config.read_text())
    data["shifts"] = ["06:00 early", "14:00 late", "22:00 night"]
    station_config.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_station_config(station_config)
    shift = current_shift(config.shifts, dt.datetime.now().astimezone())
    # M = 5 parts at the end of the previous shift, N = 7 in this one (2 NG, 1 not inspected).
    before = [make_record(i, time_ns=shift.start_ns - (10 - i) * 10**9) for i in range(1, 6)]
    verdicts = ["OK", "OK", "NG", "OK", "NG", "OK", None]
    during = [make_record(6 + i, time_ns=shift.start_ns + i * 10**9, verdict=v or "OK", fault="no frame" if v is None
                          else None) for i, v in enumerate(verdicts)]
    with AuditWriter(config.resolve(config.log.folder), config.log, station=config.station, embedding_dim=16) as w:
        w.write(before + during)

    handle = StationHandle(station_config)
    counts = handle.counts()
    assert (counts.parts, counts.ok, counts.ng, counts.faults) == (7, 4, 2, 1)
    assert counts.shift == shift.label and counts.since_ns == shift.start_ns
    handle.start()  # the running station adds its parts to the shift's count
    try:
        wait_for(lambda: handle.counts().parts >= 10, timeout=START_S, what="parts of this run")
    finally:
        handle.shutdown()
    counts = handle.counts()
    assert counts.parts == 7 + handle.stats().parts
    restarted = StationHandle(station_config).counts()  # the application starts again: the log has them all
    assert (restarted.parts, restarted.ok, restarted.ng, restarted.faults) == (counts.parts, counts.ok, counts.ng,
                                                                                counts.faults)
