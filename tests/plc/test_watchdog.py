"""PLC-silence watchdog."""

from __future__ import annotations

import threading

from inspector.plc.watchdog import SilenceWatchdog


def test_reports_silence_once_and_recovery() -> None:
    changes: list[bool] = []
    changed = threading.Event()

    def on_change(silent: bool) -> None:
        changes.append(silent)
        changed.set()

    dog = SilenceWatchdog(0.05, on_change)
    dog.start()
    try:
        assert changed.wait(10)
        assert dog.silent and changes == [True]
        dog.touch()
        assert changes == [True, False] and not dog.silent
        changed.clear()
        assert changed.wait(10)
        assert changes == [True, False, True]
    finally:
        dog.stop()


def test_disabled_with_zero() -> None:
    dog = SilenceWatchdog(0, lambda silent: None)
    dog.start()
    assert dog._thread is None
    dog.stop()
