"""The real station loop end to end: tiny ViT engine, real threads, real HDF5 audit files."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.plc.port import PartVerdict, StationPort, StationState, TriggerRejected, UnknownLineError
from inspector.station.engines import EngineCache
from inspector.station.loop import StationLoop
from inspector.station.results import StationResult
from tests.station.conftest import SIZE, FlakySource, GateSource, ScriptedSource, good_frame, wait_for

TIMEOUT = 60.0


def read_log(folder: Path) -> tuple[list[dict], list[dict]]:
    records, events = [], []
    for path in log_files(folder):
        with AuditReader(path) as reader:
            records += reader.records()
            events += reader.events()
    return records, events


def assert_never_ok_when_faulty(v: PartVerdict) -> None:
    assert v.verdict == "NG" and v.defect == "FAULT" and math.isnan(v.score) and v.fault


def test_free_run_synthetic_end_to_end(make_station, engines_for, tmp_path: Path) -> None:
    station = make_station(trigger={"mode": "free_run", "rate_hz": 100})
    loop = StationLoop(station, engines=engines_for(station), max_parts=12)
    port: StationPort = loop  # the contract the PLC link is written against
    assert all(callable(getattr(port, m)) for m in ("submit_trigger", "status", "changeover", "line_names"))
    seen: list[StationResult] = []
    loop.add_observer(seen.append, queue_size=64, policy="block")
    with loop:
        assert loop.wait_done(TIMEOUT)
    stats = loop.stats()
    assert stats.parts == 12 and stats.faults == 0 and stats.ok + stats.ng == 12
    assert [r.seq for r in seen] == list(range(1, 13))
    for r in seen:
        assert r.verdict.seq == r.seq and r.part_id.startswith("P") and r.truth is not None
        for stage in ("trigger_queue", "capture", "inspect_queue", "preprocess", "backbone", "references",
                      "inspect", "publish", "total"):
            assert stage in r.timings_ms, stage
        assert r.timings_ms["total"] >= r.timings_ms["inspect"] > 0
        assert r.verdict.verdict == r.result.verdict and r.verdict.score == pytest.approx(r.result.score)
    if stats.drops:  # the clock outran the engine: counted, never silent
        assert all(k.startswith("free-run") for k in stats.drops)

    records, events = read_log(tmp_path / "logs")
    assert [r["seq"] for r in records] == list(range(1, 13))
    assert [r["part_id"] for r in records] == [r.part_id for r in seen]
    assert [r["verdict"] for r in records] == [r.verdict.verdict for r in seen]
    assert all(r["trigger"] == "free_run" and r["model_name"] == "inspector-tiny-vit" for r in records)
    assert [e["kind"] for e in events] == ["station_start", "station_stop"]
    (path,) = log_files(tmp_path / "logs")
    with h5py.File(path, "r") as f:  # closed at stop: plain HDF5
        assert f["embedding"].shape == (12, 64) and f["heatmap"].shape == (12, 8, 8)
    assert loop.status().state is StationState.FAULT and "stopped" in loop.status().detail


def test_folder_source_with_corrupt_and_wrong_frames(make_station, engines_for, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_good.png"), good_frame(1))
    (folder / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    cv2.imwrite(str(folder / "c_tiny.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(folder / "d_wide.png"), np.zeros((SIZE, SIZE + 16, 3), np.uint8))
    cv2.imwrite(str(folder / "e_good.png"), good_frame(2))
    station = make_station(camera={"kind": "folder", "path": str(folder), "loop": False, "frame_size": [SIZE, SIZE]},
                           trigger={"mode": "free_run", "rate_hz": 50})
    loop = StationLoop(station, engines=engines_for(station))
    seen: list[StationResult] = []
    loop.add_observer(seen.append, queue_size=64, policy="block")
    with loop:
        assert loop.wait_done(TIMEOUT)
        assert loop.status().state is StationState.BUSY and "all 5 images read" in loop.status().detail
        with pytest.raises(TriggerRejected) as rejected:
            loop.trigger("late")
        assert rejected.value.code == "E05"
    by_part = {r.part_id: r for r in seen}
    assert list(by_part) == ["a_good", "b_corrupt", "c_tiny", "d_wide", "e_good"]
    for name, fragment in (("b_corrupt", "not a decodable image"), ("c_tiny", "smaller than 16 px"),
                           ("d_wide", f"{SIZE + 16}x{SIZE} px, expected {SIZE}x{SIZE}")):
        assert_never_ok_when_faulty(by_part[name].verdict)
        assert fragment in by_part[name].verdict.fault
    assert by_part["a_good"].result is not None and by_part["e_good"].result is not None
    assert loop.stats().camera.bad_frames == 3
    records, _ = read_log(tmp_path / "logs")
    assert [r["fault"] != "" for r in records] == [False, True, True, True, False]
    assert all(r["verdict"] == "NG" for r in records if r["fault"])


def test_bad_frames_from_a_camera_are_faults(make_station, engines_for) -> None:
    items = [np.zeros((0, 0, 3), np.uint8), np.zeros((SIZE, SIZE, 3), np.int32), "not an image",
             np.zeros((SIZE, SIZE, 5), np.uint8), good_frame(3)]
    station = make_station()
    with StationLoop(station, source=ScriptedSource(items), engines=engines_for(station), log=False) as loop:
        verdicts = [loop.trigger(f"T{i}").result(TIMEOUT) for i in range(5)]
    for v, fragment in zip(verdicts, ("empty frame", "unsupported pixel type int32", "expected a numpy image",
                                      "expected HxW or HxWx3"), strict=False):
        assert_never_ok_when_faulty(v)
        assert fragment in v.fault
    assert verdicts[4].fault is None and verdicts[4].part_id == "T4"
    assert [v.seq for v in verdicts] == [1, 2, 3, 4, 5]


def test_camera_fails_mid_run_and_comes_back(make_station, engines_for, tmp_path: Path) -> None:
    source = FlakySource()
    station = make_station()
    with StationLoop(station, source=source, engines=engines_for(station)) as loop:
        first = loop.trigger("A1").result(TIMEOUT)
        assert first.fault is None
        source.down.set()
        lost = loop.trigger("A2").result(TIMEOUT)
        assert_never_ok_when_faulty(lost)
        assert "cable pulled" in lost.fault
        status = loop.status()
        assert status.state is StationState.FAULT and "flaky camera" in status.detail
        with pytest.raises(TriggerRejected) as rejected:
            loop.trigger("A3")
        assert rejected.value.code == "E05"
        source.down.clear()
        wait_for(lambda: loop.status().state is StationState.READY, what="camera reconnect")
        back = loop.trigger("A4").result(TIMEOUT)
        assert back.fault is None and back.seq == 3
        stats = loop.stats()
    assert (stats.camera.losses, stats.camera.reconnects, stats.rejected) == (1, 1, {"E05": 1})
    records, events = read_log(tmp_path / "logs")
    assert [(r["part_id"], r["defect"] == "FAULT") for r in records] == [("A1", False), ("A2", True), ("A4", False)]
    kinds = [e["kind"] for e in events]
    assert kinds.index("camera_lost") < kinds.index("camera_restored")
    assert records[1]["fault"] in events[kinds.index("camera_lost")]["what"]


def test_trigger_queue_full_is_e04_and_every_part_is_answered_once(make_station, engines_for) -> None:
    source = GateSource()
    station = make_station(trigger={"queue_size": 2}, camera={"grab_timeout_s": 30})
    loop = StationLoop(station, source=source, engines=engines_for(station), log=False)
    replies: list[PartVerdict] = []
    with pytest.raises(TriggerRejected) as early:
        loop.submit_trigger("X0", replies.append)
    assert early.value.code == "E05"  # not started
    with loop:
        loop.submit_trigger("X1", replies.append)
        assert source.entered.wait(TIMEOUT)  # X1 is being grabbed; X2 and X3 wait in the queue
        loop.submit_trigger("X2", replies.append)
        loop.submit_trigger("X3", replies.append)
        with pytest.raises(TriggerRejected) as full:
            loop.submit_trigger("X4", replies.append)
        assert full.value.code == "E04" and "trigger.queue_size" in str(full.value)
        with pytest.raises(ValueError, match="printable ASCII"):
            loop.submit_trigger("bad id", replies.append)
        source.gate.set()
        wait_for(lambda: len(replies) == 3, what="three replies")
    assert sorted(v.part_id for v in replies) == ["X1", "X2", "X3"]
    assert all(v.fault is None for v in replies)
    assert loop.stats().rejected == {"E05": 1, "E04": 1}


def test_stop_answers_queued_parts_as_faults(make_station, engines_for) -> None:
    source = GateSource()
    station = make_station(camera={"grab_timeout_s": 0.5})
    loop = StationLoop(station, source=source, engines=engines_for(station), log=False).start()
    replies: list[PartVerdict] = []
    for i in range(3):
        loop.submit_trigger(f"Q{i}", replies.append)
    assert source.entered.wait(TIMEOUT)
    loop.stop()  # Q0's grab times out; Q1 and Q2 never reach the camera
    assert sorted(v.part_id for v in replies) == ["Q0", "Q1", "Q2"]
    for v in replies:
        assert_never_ok_when_faulty(v)
    assert "no frame within" in replies[0].fault
    assert all("station stopped" in v.fault for v in replies[1:])


def test_engine_error_is_a_fault_never_ok(make_station, engines_for, fitted, monkeypatch) -> None:
    def boom(frames):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(fitted, "inspect_batch", boom)
    station = make_station()
    with StationLoop(station, engines=engines_for(station), log=False) as loop:
        verdict = loop.trigger("E1").result(TIMEOUT)
    assert_never_ok_when_faulty(verdict)
    assert "inspection failed: RuntimeError: CUDA out of memory" in verdict.fault


def test_slow_sinks_never_delay_the_reply(make_station, engines_for) -> None:
    release, entered = threading.Event(), threading.Event()
    station = make_station()
    loop = StationLoop(station, engines=engines_for(station))

    def hang(result: StationResult) -> None:
        entered.set()
        release.wait(TIMEOUT)

    stuck = loop.add_sink(hang, name="stuck-display", queue_size=2)
    observer = loop.add_observer(lambda r: release.wait(TIMEOUT), name="stuck-gui", queue_size=1)
    with loop:
        verdicts = [loop.trigger("S0").result(TIMEOUT)]
        assert entered.wait(TIMEOUT)  # the display sink now hangs on part 1
        verdicts += [loop.trigger(f"S{i}").result(TIMEOUT) for i in range(1, 6)]  # answered all the same
        assert stuck.stats().dropped == 3 and stuck.stats().queued == 3  # 1 in hand + 2 queued
        assert loop.stats().drops["sink stuck-display"] == 3
        assert loop.wait_published(6, TIMEOUT)  # the log is not held up by the hung GUI either
        release.set()
    assert [v.seq for v in verdicts] == list(range(1, 7))
    assert observer.stats().dropped >= 4  # room for 1 queued + 1 in hand


def test_log_overflow_is_counted_and_recorded(make_station, engines_for, tmp_path: Path, monkeypatch) -> None:
    gate = threading.Event()
    station = make_station(log={"queue_size": 2})
    loop = StationLoop(station, engines=engines_for(station))
    published: list[int] = []
    loop.add_observer(lambda r: published.append(r.seq), queue_size=64, policy="block")
    loop.start()
    writer = loop.audit.writer
    real_write = writer.write
    blocked = threading.Event()

    def slow_write(records, events=()):
        if records and not blocked.is_set():
            blocked.set()
            gate.wait(TIMEOUT)  # the disk hangs on the first record
        real_write(records, events)

    monkeypatch.setattr(writer, "write", slow_write)
    verdicts = [loop.trigger("L0").result(TIMEOUT)]
    assert blocked.wait(TIMEOUT)  # the log thread hangs on part 1
    verdicts += [loop.trigger(f"L{i}").result(TIMEOUT) for i in range(1, 8)]  # the PLC still hears every part
    assert loop.stats().drops["records not logged: log queue full"] == 5  # 1 being written + 2 queued
    gate.set()
    loop.stop()
    assert [v.seq for v in verdicts] == list(range(1, 9))
    assert sorted(published) == list(range(1, 9))  # observers still saw every part
    records, events = read_log(tmp_path / "logs")
    assert [r["seq"] for r in records] == [1, 2, 3]
    (gap,) = [e for e in events if e["kind"] == "log_gap"]
    assert gap["what"] == "5 record(s) not logged: the log queue was full (log.queue_size) - seq 4-8"


@pytest.mark.parametrize("required", [True, False])
def test_log_that_cannot_write(make_station, engines_for, tmp_path: Path, required: bool) -> None:
    station = make_station(log={"min_free_mb": 1e12, "required": required})
    with StationLoop(station, engines=engines_for(station)) as loop:
        wait_for(lambda: loop.stats().log.failed is not None, what="log failure")
        assert "free disk space" in loop.stats().log.failed
        if required:
            assert loop.status().state is StationState.FAULT and "audit log" in loop.status().detail
            with pytest.raises(TriggerRejected):
                loop.trigger("N1")
        else:
            assert loop.status().state is StationState.READY
            assert loop.trigger("N1").result(TIMEOUT).fault is None
            wait_for(lambda: loop.stats().drops.get("records not logged: log write failed") == 1,
                     what="counted lost record")
            audit = loop.audit
            audit.retry_s = 0.01
            audit.writer.spec = audit.writer.spec.model_copy(update={"min_free_mb": 0})  # disk space freed
            wait_for(lambda: loop.stats().log.failed is None, what="log recovery")
            assert loop.trigger("N2").result(TIMEOUT).fault is None
    if not required:
        records, events = read_log(tmp_path / "logs")
        assert [r["part_id"] for r in records] == ["N2"]
        (gap,) = [e for e in events if e["kind"] == "log_gap"]
        assert gap["what"].startswith("1 record(s) not logged: write failed (audit log folder")
        assert gap["what"].endswith("- seq 1")
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "station_start" and "log_retry" in kinds  # events of the outage were kept


def test_a_required_log_resumes_within_a_second_of_space_returning(make_station, engines_for) -> None:
    """While a required log cannot write the station refuses parts, so it retries often (faults.py disk)."""
    station = make_station(log={"min_free_mb": 1e12, "required": True})
    with StationLoop(station, engines=engines_for(station)) as loop:
        wait_for(lambda: loop.stats().log.failed is not None, what="log failure")
        time.sleep(0.3)  # a retry or two fail meanwhile
        audit = loop.audit
        audit.writer.spec = audit.writer.spec.model_copy(update={"min_free_mb": 0})  # disk space freed
        freed = time.monotonic()
        wait_for(lambda: loop.status().state is StationState.READY, timeout=10, what="log recovery")
        assert time.monotonic() - freed < 1.5
        assert loop.trigger("R1").result(TIMEOUT).fault is None


def test_changeover_without_restart_or_backbone_reload(make_station, fitted, tmp_path: Path) -> None:
    station = make_station(lines=("ring", "ring-b"))
    engines = EngineCache(station, fit=False)
    engines.put(fitted)
    seen_states = []
    real_get = engines.get

    def get(name):
        seen_states.append(loop.status())
        return real_get(name)

    engines.get = get  # type: ignore[method-assign]
    loop = StationLoop(station, engines=engines)
    with loop:
        assert loop.trigger("C1").result(TIMEOUT).fault is None
        with pytest.raises(UnknownLineError, match="ring, ring-b"):
            loop.changeover("nope")
        loop.changeover("ring-b", who="operator jo")
        assert seen_states[-1].state is StationState.BUSY and "changeover to ring-b" in seen_states[-1].detail
        assert loop.status() == loop.status().__class__(StationState.READY, "ring-b", "base", "")
        assert engines.backbone_loads == 0  # ring-b runs on the backbone ring already had
        assert engines.cached("ring-b").backbone is fitted.backbone
        v = loop.trigger("C2").result(TIMEOUT)
        loop.changeover("ring")  # back: cached, instant
        assert loop.trigger("C3").result(TIMEOUT).fault is None
    assert v.fault is None
    records, events = read_log(tmp_path / "logs")
    assert [r["line"] for r in records] == ["ring", "ring-b", "ring"]
    changes = [e for e in events if e["kind"] == "changeover"]
    assert [(e["who"], e["what"]) for e in changes] == [("operator jo", "line ring -> ring-b"),
                                                        ("station", "line ring-b -> ring")]
    assert changes[0]["after_seq"] == 1


def test_events_handed_in_are_written_by_the_running_station(make_station, engines_for, tmp_path: Path) -> None:
    """Another process (the CLI) posts an event while the station idles: it lands in the station's log."""
    from inspector.audit import inbox
    from inspector.audit.records import AuditEvent

    station = make_station()  # software trigger: no part comes, the log sink is idle
    with StationLoop(station, engines=engines_for(station)) as loop:
        inbox.post(loop.log_folder, AuditEvent("model_promote", "anna", "line ring: base -> v3", "base", "v3",
                                               time_ns=time.time_ns()))
        wait_for(lambda: not inbox.pending(loop.log_folder), what="the inbox taken")
    (path,) = log_files(tmp_path / "logs")
    with AuditReader(path) as reader:
        kinds = [(e["kind"], e["who"], e["new"]) for e in reader.events()]
    assert ("model_promote", "anna", "v3") in kinds


# ---------------------------------------------------------------- last-resort branches (issue #12, item 6)
def test_capture_thread_crash_is_fault_and_answers_every_trigger(make_station, engines_for, monkeypatch) -> None:
    """A bug in the capture thread: the station goes FAULT (the PLC hears it), takes no new triggers, and every
    accepted trigger - the one in hand included - is answered NG/FAULT naming the crash."""
    station = make_station()
    loop = StationLoop(station, engines=engines_for(station), log=False)

    def boom() -> None:
        raise RuntimeError("driver bug (simulated)")

    monkeypatch.setattr(loop.camera, "grab", boom)
    replies: list[PartVerdict] = []
    with loop:
        for i in range(3):
            loop.submit_trigger(f"X{i}", replies.append)
        wait_for(lambda: len(replies) == 3, TIMEOUT, "three answers")
        status = loop.status()
        assert status.state is StationState.FAULT and "capture failed" in status.detail
        with pytest.raises(TriggerRejected):
            loop.submit_trigger("X9", replies.append)
    assert sorted(v.part_id for v in replies) == ["X0", "X1", "X2"]
    for v in replies:
        assert_never_ok_when_faulty(v)
        assert "capture failed" in v.fault


def test_inspect_thread_crash_answers_fault_and_keeps_inspecting(make_station, engines_for, monkeypatch) -> None:
    """A bug around the engine call (not the engine itself): the batch is answered FAULT, the thread lives on."""
    station = make_station()
    loop = StationLoop(station, engines=engines_for(station), log=False)
    real = loop._process
    calls = {"n": 0}

    def first_fails(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bookkeeping bug (simulated)")
        return real(batch)

    monkeypatch.setattr(loop, "_process", first_fails)
    with loop:
        first = loop.trigger("I1").result(TIMEOUT)
        second = loop.trigger("I2").result(TIMEOUT)
    assert_never_ok_when_faulty(first)
    assert first.part_id == "I1" and "station error" in first.fault
    assert second.fault is None and second.verdict in ("OK", "NG")  # the inspect thread survived
    assert loop.stats().faults == 1 and loop.stats().parts == 2


def test_result_building_failure_falls_back_to_a_logged_fault(make_station, engines_for, monkeypatch,
                                                              tmp_path: Path) -> None:
    """Building the StationResult of an inspected part fails: the part is still numbered, answered FAULT
    (never OK) and logged, and the next part is normal."""
    station = make_station()
    loop = StationLoop(station, engines=engines_for(station))
    real = loop._results.build

    def fails_when_inspected(job, seq, result, fault, t_inspect, inspector):
        if result is not None and job.trigger.part_id == "R1":
            raise ValueError("result with a broken map (simulated)")
        return real(job, seq, result, fault, t_inspect, inspector)

    monkeypatch.setattr(loop._results, "build", fails_when_inspected)
    with loop:
        first = loop.trigger("R1").result(TIMEOUT)
        second = loop.trigger("R2").result(TIMEOUT)
    assert_never_ok_when_faulty(first)
    assert "station error" in first.fault and second.fault is None
    records, _events = read_log(tmp_path / "logs")
    assert [(r["part_id"], r["seq"], r["defect"]) for r in records][:1] == [("R1", 1, "FAULT")]
    assert [r["part_id"] for r in records] == ["R1", "R2"]


def test_changeover_waits_for_parts_in_flight(make_station, fitted, tmp_path: Path) -> None:
    """Parts already triggered finish on the old line; the changeover waits for them, then switches."""
    station = make_station(lines=("ring", "ring-b"), camera={"grab_timeout_s": 30})
    engines = EngineCache(station, fit=False)
    engines.put(fitted)
    engines.get("ring-b")  # prepared: the wait below is for the part, not for a fit
    source = GateSource()
    loop = StationLoop(station, source=source, engines=engines)
    with loop:
        pending = loop.trigger("F1")
        assert source.entered.wait(TIMEOUT)  # F1 is in the camera: in flight on line ring
        changing = threading.Thread(target=loop.changeover, args=("ring-b",), name="test-changeover")
        changing.start()
        wait_for(lambda: loop.status().state is StationState.BUSY, TIMEOUT, "changeover under way")
        time.sleep(0.3)
        assert changing.is_alive() and loop.line == "ring"  # still waiting for F1
        source.gate.set()
        assert pending.result(TIMEOUT).fault is None
        changing.join(TIMEOUT)
        assert not changing.is_alive() and loop.line == "ring-b"
        assert loop.trigger("F2").result(TIMEOUT).fault is None
    records, _events = read_log(tmp_path / "logs")
    assert [(r["part_id"], r["line"]) for r in records] == [("F1", "ring"), ("F2", "ring-b")]


def test_changeover_abandoned_when_parts_stay_in_flight(make_station, fitted, monkeypatch) -> None:
    import inspector.station.loop as loop_module
    from inspector.errors import InspectorError

    monkeypatch.setattr(loop_module, "CHANGEOVER_DRAIN_S", 0.3)
    station = make_station(lines=("ring", "ring-b"), camera={"grab_timeout_s": 30})
    engines = EngineCache(station, fit=False)
    engines.put(fitted)
    source = GateSource()
    loop = StationLoop(station, source=source, engines=engines, log=False)
    with loop:
        pending = loop.trigger("G1")
        assert source.entered.wait(TIMEOUT)
        with pytest.raises(InspectorError, match="still in flight"):
            loop.changeover("ring-b")
        assert loop.line == "ring" and loop.status().state is StationState.READY  # stays on the old line
        source.gate.set()
        assert pending.result(TIMEOUT).fault is None


# ---------------------------------------------------------------- pause / resume (OPC UA Stop / Start, issue #15)
def test_a_paused_station_refuses_triggers_keeps_its_counters_and_resumes(make_station, engines_for,
                                                                          tmp_path: Path) -> None:
    from inspector.plc.port import StationStateError

    station = make_station()
    loop = StationLoop(station, engines=engines_for(station))
    with pytest.raises(StationStateError, match="not started"):
        loop.pause("anna (OPC UA)")  # not started: nothing to pause
    replies: list[PartVerdict] = []
    with loop:
        assert loop.trigger("A1").result(TIMEOUT).fault is None
        loop.pause("anna (OPC UA)")
        status = loop.status()
        assert status.halted and loop.paused and status.state is StationState.BUSY
        assert "paused by anna (OPC UA)" in status.detail and "Start" in status.detail
        with pytest.raises(TriggerRejected, match="paused by anna") as refused:
            loop.submit_trigger("A2", replies.append)
        assert refused.value.code == "E05" and not replies
        loop.pause("anna (OPC UA)")  # a second Stop changes nothing and logs nothing
        loop.resume("ben (OPC UA)")
        assert not loop.status().halted
        assert loop.trigger("A3").result(TIMEOUT).fault is None
        stats = loop.stats()
        assert stats.parts == 2 and stats.rejected == {"E05": 1}
        loop.resume("ben (OPC UA)")  # running already: nothing to do
    with pytest.raises(StationStateError, match="stopped"):
        loop.resume("ben (OPC UA)")
    records, events = read_log(tmp_path / "logs")
    assert [r["part_id"] for r in records] == ["A1", "A3"]
    assert [(e["kind"], e["who"]) for e in events] == [
        ("station_start", "station"), ("station_paused", "anna (OPC UA)"), ("station_resumed", "ben (OPC UA)"),
        ("station_stop", "station")]


def test_a_paused_free_run_station_takes_no_frames_and_stops_cleanly(make_station, engines_for) -> None:
    station = make_station(trigger={"mode": "free_run", "rate_hz": 20})
    with StationLoop(station, engines=engines_for(station)) as loop:
        assert loop.wait_published(2, TIMEOUT)
        loop.pause("anna (OPC UA)")
        wait_for(lambda: loop._flow.inflight == 0, TIMEOUT, "the parts in flight finished")
        before = loop.stats().parts
        time.sleep(0.5)  # 10 ticks of the clock
        assert loop.stats().parts == before, "no free-run frame while paused"
        loop.resume("anna (OPC UA)")
        assert loop.wait_published(before + 2, TIMEOUT)
        loop.pause("anna (OPC UA)")
    assert loop.stats().faults == 0  # stopped while paused: nothing was cut off
