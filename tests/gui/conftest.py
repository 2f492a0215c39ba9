"""GUI test setup: Qt offscreen, a tiny-model station per test, and no thread may outlive its test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.station.conftest import write_handle_station

REPO = Path(__file__).resolve().parents[2]
PIN = "2468"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a Python thread or a GUI worker running (napari's leak checks)."""
    before = set(threading.enumerate())
    yield
    from gui.workers import live_workers

    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        # Threads Qt started that once ran Python show up as never-ending "Dummy" threads: the QThreads
        # themselves are checked through gui.workers.live_workers().
        extra = [t for t in threading.enumerate()
                 if t not in before and t.is_alive() and type(t).__name__ != "_DummyThread"]
        workers = [w for w in live_workers() if _running(w)]
        if not extra and not workers:
            return
        time.sleep(0.05)
    names = sorted(t.name for t in extra) + [f"QThread {w.objectName()}" for w in workers]
    pytest.fail(f"test leaked running threads: {names}")


def _running(worker: object) -> bool:
    try:
        return bool(worker.isRunning())  # type: ignore[attr-defined]
    except RuntimeError:
        return False


@pytest.fixture(scope="session")
def fitted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fitted-state / text-embedding cache for the whole session: later starts skip the fit."""
    return tmp_path_factory.mktemp("inspector-cache")


@pytest.fixture
def station_config(tmp_path: Path, fitted_cache: Path) -> Path:
    """A station YAML on the tiny architecture: two lines, synthetic camera, free-run, audit log in tmp."""
    return write_handle_station(tmp_path, fitted_cache)


@pytest.fixture
def pins(tmp_path: Path):
    from gui.pin import PinStore

    store = PinStore(tmp_path / "station.yaml.pin.json", max_failures=3, lockout_s=120)
    store.set_pin(PIN)
    return store


def make_window(qtbot, config: Path, pins, *, autostart: bool = True):
    from gui.main_window import MainWindow
    from inspector.station.handle import StationHandle

    handle = StationHandle(config)
    window = MainWindow(handle, pins, autostart=autostart, confirm_changeover=False, poll_s=0.2)
    qtbot.addWidget(window)
    window.resize(1600, 960)
    window.show()
    return window


@pytest.fixture
def window(qtbot, station_config: Path, pins) -> Iterator:
    """The real main window on a running tiny-model station; shut down (threads joined) after the test."""
    win = make_window(qtbot, station_config, pins)
    yield win
    win.shutdown()


@pytest.fixture
def idle_window(qtbot, station_config: Path, pins) -> Iterator:
    """The main window with the station stopped (never started)."""
    win = make_window(qtbot, station_config, pins, autostart=False)
    yield win
    win.shutdown()


def wait_running(qtbot, win, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: win.handle.running and not win.busy, timeout=timeout)


def wait_parts(qtbot, win, n: int, timeout: int = 60_000) -> None:
    """``n`` parts published and one of them on screen (the feed's paint is a queued signal: it may trail)."""
    qtbot.waitUntil(lambda: win.feed.pushed >= n and win.current_frame() is not None, timeout=timeout)


def login(win) -> None:
    """Log in through the session (the same path the dialog uses)."""
    assert win.session.check("Dana", PIN).ok
