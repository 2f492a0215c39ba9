"""Shift maths and the shift counters (inspector/station/shifts.py, pure) and the config key ``shifts``."""

from __future__ import annotations

import datetime as dt

import pytest

from inspector.config import parse_station_config
from inspector.config.shifts import ShiftSpec
from inspector.errors import ConfigError
from inspector.station.shifts import ShiftCounts, ShiftTally, current_shift
from tests.conftest import tiny_line

TZ = dt.timezone(dt.timedelta(hours=2))  # the plant's zone (fixed: the tests do not depend on the host's)
THREE = (ShiftSpec(start="06:00", name="early"), ShiftSpec(start="14:00", name="late"),
         ShiftSpec(start="22:00", name="night"))


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=TZ)


def test_current_shift_is_the_latest_start_and_ends_at_the_next() -> None:
    late = current_shift(THREE, at(6, 14, 0), TZ)
    assert (late.name, late.start, late.end) == ("late", at(6, 14), at(6, 22))
    assert late.label == "late · since 14:00"
    assert current_shift(THREE, at(6, 13, 59), TZ).name == "early"
    # The night shift runs over midnight: at 03:00 it began yesterday.
    night = current_shift(THREE, at(7, 3), TZ)
    assert (night.name, night.start, night.end) == ("night", at(6, 22), at(7, 6))
    assert night.label == "night · since 22:00"
    # The instant is what counts, not the zone it is written in.
    assert current_shift(THREE, at(6, 14).astimezone(dt.UTC), TZ).name == "late"


def test_default_is_one_shift_per_day_from_midnight() -> None:
    config = parse_station_config({"lines": [tiny_line()]})
    day = current_shift(config.shifts, at(6, 23, 59), TZ)
    assert (day.name, day.start, day.end) == ("day", at(6, 0), at(7, 0)) and day.label == "day · since 00:00"


def test_unnamed_shifts_are_numbered_by_start_time() -> None:
    specs = parse_station_config({"lines": [tiny_line()], "shifts": ["18:00", "6:00"]}).shifts
    assert [s.start for s in specs] == ["06:00", "18:00"]  # sorted, zero-padded
    assert current_shift(specs, at(6, 19), TZ).name == "shift 2"


def test_shift_config_forms_and_plain_errors() -> None:
    """Every mistake is named in plain words, with the key (an unquoted 14:00 in YAML is the number 840)."""
    base = {"lines": [tiny_line()]}
    specs = parse_station_config({**base, "shifts": ["06:00 early", {"start": "14:00", "name": "late"}]}).shifts
    assert [(s.start, s.name) for s in specs] == [("06:00", "early"), ("14:00", "late")]
    for bad, words in ((["6am"], "shift start '6am' is not a time of day: write 24-hour HH:MM"),
                       (["25:00"], "is not a time of day"), (["06:00", "06:00 again"], "cannot start at the same time"),
                       ([], "give at least one start time"), ([None], "a shift is a start time like"),
                       ("06:00", "write the shifts as a list"), (["06:00", 840], "write the time in quotes")):
        with pytest.raises(ConfigError) as err:
            parse_station_config({**base, "shifts": bad})
        text = str(err.value)
        assert "shifts" in text and words in text, text
        assert "Value error" not in text


def test_tally_continues_the_logged_shift_and_resets_at_the_boundary() -> None:
    now = [at(6, 21, 50).timestamp()]
    asked: list[int] = []

    def logged(since_ns: int) -> ShiftCounts:
        asked.append(since_ns)
        return ShiftCounts(40, 35, 4, 1)  # parts of this shift logged before the restart

    tally = ShiftTally(THREE, logged, clock=lambda: now[0], tz=TZ)
    assert asked == [int(at(6, 14).timestamp()) * 10**9]  # counted from the late shift's start
    c = tally.counts(ShiftCounts(5, 4, 1, 0))  # this process inspected 5 parts since
    assert (c.parts, c.ok, c.ng, c.faults, c.shift) == (45, 39, 5, 1, "late · since 14:00")
    assert c.yield_pct == pytest.approx(100 * 39 / 44)
    now[0] = at(6, 22, 0).timestamp()  # the night shift begins: 0 again, whatever ran before
    c = tally.counts(ShiftCounts(7, 6, 1, 0))
    assert (c.parts, c.ok, c.ng, c.faults, c.shift) == (0, 0, 0, 0, "night · since 22:00")
    assert c.since_ns == int(at(6, 22).timestamp()) * 10**9
    c = tally.counts(ShiftCounts(10, 8, 1, 1))
    assert (c.parts, c.ok, c.ng, c.faults) == (3, 2, 0, 1)
    assert len(asked) == 1  # the log is read once, at the start
