"""Warm standby: the station lock, and a standby process that replaces a killed station at once."""

from __future__ import annotations

import io
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
    LINE_MEMORY_NAME,
    StationBusyError,
    claim_station,
    remember_line,
    remembered_line,
    station_fingerprint,
    station_lock,
    wait_writer_free,
)
from tests.station.conftest import tiny_station_dict

# --- the lock (in-process: flock locks belong to open file descriptions, so two station locks conflict) --------


def test_claim_refuses_a_second_station_and_names_the_first(tmp_path: Path) -> None:
    with claim_station(tmp_path / "logs") as first:
        assert first.held
        with pytest.raises(StationBusyError, match=rf"pid {os.getpid()} on .*--standby"):
            claim_station(tmp_path / "logs")
    with claim_station(tmp_path / "logs"):  # released: free again
        pass


def test_a_waiting_standby_gets_the_lock_when_the_holder_releases(tmp_path: Path) -> None:
    active = claim_station(tmp_path)
    standby = station_lock(tmp_path)
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



def test_line_memory_round_trip_and_damage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert remembered_line(tmp_path) is None
    remember_line(tmp_path, "gear")
    assert remembered_line(tmp_path) == "gear"
    (tmp_path / LINE_MEMORY_NAME).write_text("{not json")
    assert remembered_line(tmp_path) is None
    assert "starting on the configured line" in caplog.text
    (tmp_path / "a-file").write_text("")
    remember_line(tmp_path / "a-file" / "logs", "ring")  # cannot write: a warning, never an exception
    assert "cannot record the running line" in caplog.text


def test_a_restarted_station_resumes_the_line_it_ran(make_station, engines_for) -> None:
    from inspector.station.loop import StationLoop

    station = make_station(lines=("ring", "gear"))
    engines = engines_for(station)
    with StationLoop(station, engines=engines) as loop:
        assert loop.line == "ring"
        loop.changeover("gear")
    assert StationLoop(station, engines=engines, resume_line=True).line == "gear"
    assert StationLoop(station, engines=engines).line == "ring"  # only when asked (inspector run without --line)
    assert StationLoop(station, engines=engines, line="ring", resume_line=True).line == "ring"  # --line wins
    remember_line(StationLoop(station, engines=engines).log_folder, "press")  # a line this config no longer has
    assert StationLoop(station, engines=engines, resume_line=True).line == "ring"


def test_wait_writer_free(tmp_path: Path) -> None:
    assert wait_writer_free(tmp_path)  # no log yet
    with AuditWriter(tmp_path, embedding_dim=8):
        assert not wait_writer_free(tmp_path, timeout_s=0.05)
    assert wait_writer_free(tmp_path, timeout_s=0.05)


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InspectorError, match=r"station lock .*log\.folder"):
        station_lock(blocker / "logs")


def test_fingerprint_follows_the_config_and_the_fewshot_folder(tmp_path: Path, text_cache_dir: Path) -> None:
    config = tmp_path / "station.yaml"
    data = tiny_station_dict(tmp_path, text_cache_dir)
    folder = tmp_path / "fewshot" / "ring"
    (folder / "good").mkdir(parents=True)
    (folder / "good" / "a.png").write_bytes(b"png")
    data["lines"][0]["fewshot"] = {"folder": str(folder)}
    config.write_text(yaml.safe_dump(data))
    station = load_station_config(config)
    before = station_fingerprint(station)
    assert station_fingerprint(station) == before
    (folder / "good" / "new.png").write_bytes(b"png")
    after_sample = station_fingerprint(station)
    assert after_sample != before
    config.write_text(config.read_text() + "\n# edited\n")
    assert station_fingerprint(station) != after_sample



def test_a_standby_keeps_its_config_when_the_file_turned_invalid(tmp_path: Path, text_cache_dir: Path) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from inspector.cli.run_cmd import _config_at_takeover

    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir)))
    station = load_station_config(config)
    loaded = station_fingerprint(station)
    standby = SimpleNamespace(engines=object())
    calls: list[tuple[object, object]] = []

    def make_loop(cfg: object, engines: object = None) -> str:
        calls.append((cfg, engines))
        return "loop"

    err = Console(file=io.StringIO())
    assert _config_at_takeover(standby, station, loaded, make_loop, config, err) == ("loop", station, "")
    assert calls[-1] == (station, standby.engines)  # unchanged: the loaded lines are reused

    config.write_text("lines: 5\n")  # a tired engineer's push
    _, kept, note = _config_at_takeover(standby, station, loaded, make_loop, config, err)
    assert kept is station and calls[-1] == (station, standby.engines)
    assert "changed config refused" in note and "kept the loaded one" in note

    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir, lines=("ring", "gear"))))
    _, fresh, note = _config_at_takeover(standby, station, loaded, make_loop, config, err)
    assert [x.name for x in fresh.lines] == ["ring", "gear"]
    assert calls[-1] == (fresh, None) and "reloaded" in note



def test_a_standby_covers_its_line_when_another_line_cannot_load(tmp_path: Path, text_cache_dir: Path) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from inspector.cli.run_cmd import _wait_as_standby

    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir, lines=("ring", "gear"))))
    loaded: dict[str, str] = {}

    class Engines:
        def get(self, name: str) -> str:
            if name == "gear":
                msg = "few-shot folder fewshot/gear is empty"
                raise InspectorError(msg)
            loaded[name] = "engine"
            return "engine"

        def cached(self, name: str) -> str | None:
            return loaded.get(name)

    loop = SimpleNamespace(line="ring", line_names=lambda: ("ring", "gear"), engines=Engines(),
                           station=load_station_config(config), log_folder=tmp_path / "logs")
    out = io.StringIO()
    with claim_station(tmp_path / "logs") as active:
        result: list = []
        waiter = threading.Thread(target=lambda: result.append(_wait_as_standby(loop, Console(file=out))))
        waiter.start()
        deadline = time.monotonic() + 10
        while "standby ready" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "standby ready: 1 line(s) loaded" in out.getvalue()
        assert "line gear could not be loaded (few-shot folder fewshot/gear is empty)" in out.getvalue()
        assert active.held
    waiter.join(timeout=10)
    ((lock, previous, _),) = result
    assert lock.held and previous.startswith(f"pid {os.getpid()}")
    lock.release()


# --- the real thing: two `inspector run` processes ---------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_standby_takes_over_a_killed_station(tmp_path: Path, text_cache_dir: Path) -> None:
    """Station A runs; B (standby) takes over A's line after kill -9; C (standby) reloads a changed config."""
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader

    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir, lines=("ring", "gear"),
                                                       trigger={"mode": "free_run", "rate_hz": 20})))
    a = StationProcess(config)
    b = c = None
    try:
        a.wait(lambda: len(a.published) >= 3, what="3 parts")
        second = StationProcess(config)  # a second plain station is refused, naming the first
        assert second.finish() != 0
        assert second.said("already running on log folder") and second.said("--standby")
        b = StationProcess(config, "--standby")
        b.wait(lambda: b.said("standby ready: 2 line(s) loaded"), what="standby ready")
        assert not b.published
        a.wait(lambda: len(a.published) >= 8, what="8 parts")
        remember_line(tmp_path / "logs", "gear")  # as a changeover of the active station records it
        killed_at = time.monotonic()
        assert a.finish(signal.SIGKILL) == -signal.SIGKILL
        b.wait(lambda: len(b.published) >= 5, what="5 parts after the takeover")
        assert b.first_part_at is not None and b.first_part_at > killed_at
        assert b.said("taking over") and not b.said("reloading")

        c = StationProcess(config, "--standby")
        c.wait(lambda: c.said("standby ready"), what="the second standby ready")
        config.write_text(config.read_text() + "# edited while the standby waited\n")
        assert b.finish(signal.SIGKILL) == -signal.SIGKILL
        c.wait(lambda: len(c.published) >= 3, what="3 parts after the second takeover")
        assert c.said("changed while waiting; reloading")
        waiting = StationProcess(config, "--standby")  # a standby stopped while it waits exits cleanly
        waiting.wait(lambda: waiting.said("standby ready"), what="the third standby ready")
        assert waiting.finish(signal.SIGTERM) == 0 and not waiting.published
        assert c.finish(signal.SIGINT) == 0, c.stderr_text[-2000:]
    finally:
        kill_all([a, b, c])

    logged: dict[int, tuple[str, str]] = {}
    events: list[dict] = []
    lines_run: list[set[str]] = []
    files = log_files(tmp_path / "logs")
    assert len(files) == 3
    for path in files:
        with AuditReader(path) as reader:
            records = reader.records()
            logged.update({r["seq"]: (r["part_id"], r["verdict"]) for r in records})
            lines_run.append({r["line"] for r in records})
            events += reader.events()
    for proc in (a, b, c):
        assert all(logged.get(s) == v for s, v in proc.published.items()), "a published part is not in the log"
    assert lines_run == [{"ring"}, {"gear"}, {"gear"}]  # each takeover resumed the line the station last ran
    seqs = sorted(logged)
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # the standbys continued the sequence
    kinds = [e["kind"] for e in events]
    assert kinds.count("standby_takeover") == 2 and kinds.count("log_recovered") == 2
    takeovers = [e for e in events if e["kind"] == "standby_takeover"]
    assert f"pid {a.pid}" in takeovers[0]["what"] and f"pid {b.pid}" in takeovers[1]["what"]
