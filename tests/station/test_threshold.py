"""The live-threshold record, its book and the one path (station/threshold.py), without an engine."""

from __future__ import annotations

from pathlib import Path

from inspector.config import LineConfig
from inspector.station.threshold import (
    EVENT_KIND,
    ThresholdBook,
    ThresholdRecord,
    set_live_threshold,
    threshold_for,
)
from tests.conftest import tiny_line


def _line(threshold: float | None = None) -> LineConfig:
    return LineConfig.model_validate(tiny_line(decision={"threshold": threshold}))


class Events(list):
    def __call__(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        self.append((kind, who, what, old, new))


def test_book_round_trip_and_live_per_line(tmp_path: Path) -> None:
    book = ThresholdBook(tmp_path)
    rec = ThresholdRecord(0.95, "false_reject", "base", target=0.01, interval=(0.003, 0.031),
                          files={"good/a.png": "abcd"}, who="Dana", when="2026-12-06T12:00:00+00:00", why="t")
    book.put("ring", rec)
    book.put("ring", ThresholdRecord(1.5, "version", "v1"), live=False)
    again = ThresholdBook(tmp_path)  # a restart reads the file
    assert again.live("ring") == rec and again.record("ring", "v1").value == 1.5
    assert again.live("ring2") is None
    (tmp_path / ".live-thresholds.json").write_text("{broken")
    assert ThresholdBook(tmp_path).live("ring") is None  # damaged: falls back, never raises


def test_precedence_book_then_version_then_file(tmp_path: Path) -> None:
    book = ThresholdBook(tmp_path)
    # Nothing recorded: a version runs with its own calibration, base with the file, else the engine's.
    assert threshold_for(_line(), "v1", book, 1.5).method == "version"
    assert threshold_for(_line(0.9), "base", book, 2.0).value == 0.9
    assert threshold_for(_line(), "base", book, 2.0).value == 2.0
    book.put("ring", ThresholdRecord(0.95, "manual", "base", config_value=0.9))
    book.put("ring", ThresholdRecord(1.7, "manual", "v1"))
    assert threshold_for(_line(), "v1", book, 1.5).value == 1.7  # the book beats the version's calibration
    # The file still says what the record saw: the record wins (a swap, or a start with no hand edit).
    assert threshold_for(_line(0.9), "base", book, 2.0, file_wins=True).value == 0.95
    # The YAML was edited by hand since (0.9 -> 0.8): at a start the file wins, during a run the book does.
    assert threshold_for(_line(0.8), "base", book, 2.0, file_wins=True).value == 0.8
    assert threshold_for(_line(0.8), "base", book, 2.0, file_wins=False).value == 0.95


def test_one_path_logs_each_change_once(tmp_path: Path) -> None:
    book, events = ThresholdBook(tmp_path), Events()
    first = ThresholdRecord(0.95, "manual", "base", who="Dana", why="GUI")
    assert set_live_threshold("ring", first, book=book, log_event=events) is None
    set_live_threshold("ring", ThresholdRecord(0.95, "manual", "base", who="Erik"), book=book, log_event=events)
    assert len(events) == 1  # the same choice again is no change
    old = set_live_threshold("ring", ThresholdRecord(1.5, "version", "v1", who="Erik"), book=book, log_event=events)
    assert old is not None and old.value == 0.95
    kinds = [e[0] for e in events]
    assert kinds == [EVENT_KIND, EVENT_KIND] and [e[1] for e in events] == ["Dana", "Erik"]
    assert events[1][3]["value"] == 0.95 and events[1][4]["value"] == 1.5 and "0.9500" in events[1][2]
    assert book.live("ring").version == "v1"
    # Recorded for base while v1 stays live (a calibration with a trained version deployed).
    set_live_threshold("ring", ThresholdRecord(0.7, "false_reject", "base"), book=book, log_event=events, live=False)
    assert book.live("ring").version == "v1" and book.record("ring", "base").value == 0.7
    assert "not live" in events[-1][2]
