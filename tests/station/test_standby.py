"""Warm standby: the station lock, and a standby process that replaces a killed station at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from inspector.audit.h5log import AuditWriter
from inspector.config import load_station_config
from inspector.errors import InspectorError
from inspector.station.process import StationProcess, kill_all
from inspector.station.standby import (
    StationBusyError,
    StationLock,
    claim_station,
    line_fingerprint,
    wait_writer_free,
)
from tests.station.conftest import tiny_station_dict

# --- the lock (in-process: flock locks belong to open file descriptions, so two StationLocks conflict) --------


def test_claim_refuses_a_second_station_and_names_the_first(tmp_path: Path) -> None:
    with claim_station(tmp_path / "logs") as first:
        assert first.held
        with pytest.raises(StationBusyError, match=rf"pid {os.getpid()} on .*--standby"):
            claim_station(tmp_path / "logs")
    with claim_station(tmp_path / "logs"):  # released: free again
        pass


def test_a_waiting_standby_gets_the_lock_when_the_holder_releases(tmp_path: Path) -> None:
    active = claim_station(tmp_path)
    standby = StationLock(tmp_path)
    assert not standby.try_acquire()
    got = threading.Event()

    def wait() -> None:
        standby.acquire()
        got.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert not got.wait(0.2)  # still held
    active.release()
    assert got.wait(10)
    assert standby.held and standby.holder().startswith(f"pid {os.getpid()}")
    standby.release()


def test_the_station_loop_holds_the_lock_while_it_runs(make_station, engines_for) -> None:
    from inspector.station.loop import StationLoop

    station = make_station()
    engines = engines_for(station)
    with StationLoop(station, engines=engines) as loop:
        assert loop.station_lock is not None and loop.station_lock.held
        with pytest.raises(StationBusyError, match="already running"):
            StationLoop(station, engines=engines).start()  # refused before it loads or opens anything
        assert loop.station_lock.held
    assert not loop.station_lock.held
    with StationLoop(station, engines=engines):  # free again after a clean stop
        pass


def test_wait_writer_free(tmp_path: Path) -> None:
    assert wait_writer_free(tmp_path)  # no log yet
    with AuditWriter(tmp_path, embedding_dim=8):
        assert not wait_writer_free(tmp_path, timeout_s=0.05)
    assert wait_writer_free(tmp_path, timeout_s=0.05)


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InspectorError, match=r"station lock .*log\.folder"):
        StationLock(blocker / "logs")


def test_fingerprint_follows_the_config_and_the_fewshot_folder(tmp_path: Path, text_cache_dir: Path) -> None:
    config = tmp_path / "station.yaml"
    data = tiny_station_dict(tmp_path, text_cache_dir)
    folder = tmp_path / "fewshot" / "ring"
    (folder / "good").mkdir(parents=True)
    (folder / "good" / "a.png").write_bytes(b"png")
    data["lines"][0]["fewshot"] = {"folder": str(folder)}
    config.write_text(yaml.safe_dump(data))
    station = load_station_config(config)
    before = line_fingerprint(station, "ring")
    assert line_fingerprint(station, "ring") == before
    (folder / "good" / "new.png").write_bytes(b"png")
    after_sample = line_fingerprint(station, "ring")
    assert after_sample != before
    config.write_text(config.read_text() + "\n# edited\n")
    assert line_fingerprint(station, "ring") != after_sample


# --- the real thing: two `inspector run` processes ---------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_standby_takes_over_a_killed_station(tmp_path: Path, text_cache_dir: Path) -> None:
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader

    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir,
                                                       trigger={"mode": "free_run", "rate_hz": 20})))
    active = StationProcess(config)
    standby: StationProcess | None = None
    try:
        active.wait(lambda: len(active.published) >= 3, what="3 parts")
        second = StationProcess(config)  # a second plain station is refused, naming the first
        assert second.finish() != 0
        assert second.said("already running on log folder") and second.said("--standby")
        standby = StationProcess(config, "--standby")
        standby.wait(lambda: standby.said("standby ready"), what="standby ready")
        assert not standby.published
        active.wait(lambda: len(active.published) >= 8, what="8 parts")
        config.write_text(config.read_text() + "# edited while the standby waited\n")
        killed_at = time.monotonic()
        assert active.finish(signal.SIGKILL) == -signal.SIGKILL
        standby.wait(lambda: len(standby.published) >= 5, what="5 parts after the takeover")
        assert standby.finish(signal.SIGINT) == 0, standby.stderr_text[-2000:]
    finally:
        kill_all([active, standby])
    assert standby.said("taking over") and standby.said("changed while waiting; reloading the line")
    assert standby.first_part_at is not None and standby.first_part_at > killed_at

    logged: dict[int, tuple[str, str]] = {}
    events: list[dict] = []
    files = log_files(tmp_path / "logs")
    assert len(files) == 2
    for path in files:
        with AuditReader(path) as reader:
            logged.update({r["seq"]: (r["part_id"], r["verdict"]) for r in reader.records()})
            events += reader.events()
    for proc in (active, standby):
        assert all(logged.get(s) == v for s, v in proc.published.items()), "a published part is not in the log"
    seqs = sorted(logged)
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # the standby continued the sequence
    kinds = [e["kind"] for e in events]
    assert kinds.count("standby_takeover") == 1 and "log_recovered" in kinds
    takeover = next(e for e in events if e["kind"] == "standby_takeover")
    assert f"pid {active.pid}" in takeover["what"]
