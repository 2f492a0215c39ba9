"""Pieces without a window: PIN store, display feed dropping, CLI parity, workers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gui.pin import PinError, PinStore


def test_pin_store_hashes_and_locks(tmp_path):
    now = [1000.0]
    store = PinStore(tmp_path / "pin.json", max_failures=2, lockout_s=60, clock=lambda: now[0])
    assert not store.is_set
    with pytest.raises(PinError):
        store.set_pin("12a4")
    store.set_pin("908172")
    data = json.loads(store.path.read_text())
    assert "908172" not in store.path.read_text() and len(bytes.fromhex(data["salt"])) == 16
    assert store.path.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert store.verify("908172").ok
    assert store.verify("1111").attempts_left == 1
    locked = store.verify("2222")
    assert locked.just_locked and locked.locked_for_s == 60
    assert store.verify("908172").locked
    now[0] += 61
    assert store.verify("908172").ok  # lockout over, count reset
    other = PinStore(tmp_path / "pin2.json")
    other.set_pin("908172")
    assert json.loads(other.path.read_text())["hash"] != data["hash"]  # salted


def test_display_feed_drops_frames_not_parts(qtbot):
    from gui.workers import DisplayFeed
    from inspector.plc.port import PartVerdict
    from inspector.station.results import StationResult

    feed = DisplayFeed()
    frame = np.zeros((32, 32, 3), np.uint8)
    signals = []
    feed.updated.connect(lambda: signals.append(1))
    for i in range(50):
        verdict = PartVerdict(f"P{i}", "NG" if i % 10 == 0 else "OK", 0.1, "scratch" if i % 10 == 0 else None)
        feed.push(StationResult(i + 1, f"P{i}", 0, "ring", verdict, "software", {}, frame=frame))
    qtbot.waitUntil(lambda: len(signals) == 1, timeout=2_000)  # one pending repaint, not 50
    item, ngs = feed.take()
    assert item is not None and item.seq == 50
    assert [n.seq for n in ngs] == [1, 11, 21, 31, 41] and all(n.thumb is not None for n in ngs)
    assert feed.pushed == 50 and feed.dropped == 49


def test_cli_options_match_the_gui():
    from gui.app import build_parser as gui_parser
    from inspector.cli import build_parser
    from inspector.cli.gui_cmd import gui_argv

    args = build_parser().parse_args(["gui", "--config", "s.yaml", "--line", "b", "--rate", "2", "--no-start"])
    argv = gui_argv(args)
    gui = gui_parser()
    parsed = gui.parse_args(argv)
    assert (str(parsed.config), parsed.line, parsed.rate, parsed.no_start) == ("s.yaml", "b", 2.0, True)
    cli_opts = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["gui"]._actions}
    gui_opts = {a.dest for a in gui._actions}
    assert gui_opts - {"verbose"} == cli_opts - {"verbose"}


def test_python_m_gui_help_runs_without_a_display():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "gui", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--config" in out.stdout and "--set-pin" in out.stdout


def test_workers_report_errors_instead_of_dying(qtbot):
    from gui.workers import StatusPoller, run_task, wait_workers

    errors: list[str] = []

    def boom() -> None:
        raise RuntimeError("camera on fire")

    run_task(boom, name="boom", on_error=errors.append)
    qtbot.waitUntil(lambda: errors == ["RuntimeError: camera on fire"], timeout=5_000)

    class BrokenStation:
        running, line = True, "ring"

        def stats(self) -> None:
            raise OSError("log disk gone")

    station = BrokenStation()
    poller = StatusPoller(station, interval_s=0.01)  # type: ignore[arg-type]
    snaps: list = []
    poller.snapshot.connect(snaps.append)
    poller.start()
    qtbot.waitUntil(lambda: len(snaps) >= 3, timeout=5_000)  # keeps polling after each failure
    poller.stop()
    assert all("log disk gone" in s.error for s in snaps)
    assert wait_workers(5)
