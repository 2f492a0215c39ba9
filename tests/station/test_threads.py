"""Background threads lower their own priority, the calling thread only; the knob is validated."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from inspector.station import threads
from inspector.station.sinks import CallbackSink, SinkRunner

linux = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux")


def _nice_of_new_thread(fn) -> tuple[int, bool]:
    out: dict = {}

    def work() -> None:
        out["lowered"] = fn()
        out["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out["nice"], out["lowered"]


@linux
def test_lower_this_thread_changes_only_the_caller(monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    nice, lowered = _nice_of_new_thread(threads.lower_this_thread)
    assert lowered and nice == min(19, base + threads.DEFAULT_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's own thread untouched


@linux
def test_env_zero_turns_it_off_and_bad_values_fall_back(monkeypatch, caplog) -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    monkeypatch.setenv(threads.ENV, "0")
    assert _nice_of_new_thread(threads.lower_this_thread) == (base, False)
    monkeypatch.setenv(threads.ENV, "lots")
    assert threads.background_nice() == threads.DEFAULT_NICE and "not an integer" in caplog.text
    monkeypatch.setenv(threads.ENV, "99")
    assert threads.background_nice() == 19


@linux
def test_background_sink_runner_runs_lowered(monkeypatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def handle(_item: object) -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    for background in (True, False):
        runner = SinkRunner(CallbackSink(handle), background=background).start()
        runner.put(1)
        runner.stop(5.0)
    assert seen == [min(19, base + threads.DEFAULT_NICE), base]
