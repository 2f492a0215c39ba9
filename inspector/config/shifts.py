"""Station-config key ``shifts``: when each production shift starts (local wall-clock time of the station).

The operator screen counts OK / NG / not inspected per shift: the counters start at 0 at each shift start and
a restart of the application continues the shift's count from the audit log. Written as a list of start times,
each ``"HH:MM"`` or ``"HH:MM name"`` (or a mapping ``{start: "HH:MM", name: ...}``)::

    shifts: ["06:00 early", "14:00 late", "22:00 night"]

(quoted: YAML reads an unquoted 14:00 as the number 840). Without the key the station has one shift per day
starting at midnight (counters per calendar day).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from inspector.config.base import StrictModel

_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})(?:\s+(\S.*?))?\s*$")


class ShiftSpec(StrictModel):
    """One shift: its start (``HH:MM``, 24-hour local time) and an optional name shown on the operator screen."""

    start: str
    name: str = ""

    @property
    def minute(self) -> int:
        """Minutes after midnight."""
        h, m = self.start.split(":")
        return int(h) * 60 + int(m)


def _parse(entry: Any) -> Any:
    """``"06:00"`` / ``"06:00 early"`` -> {start, name}; a mapping is checked the same way."""
    if isinstance(entry, dict):
        start, name = entry.get("start"), entry.get("name", "")
        if not isinstance(start, str):
            return entry  # pydantic names the missing / wrong key
        parsed = _parse(start)
        return {**entry, "start": parsed["start"], "name": name or parsed["name"]}
    if isinstance(entry, int) and not isinstance(entry, bool):
        # YAML 1.1 reads an unquoted 14:00 as the sexagesimal number 840: say so rather than guess.
        msg = (f"shift start {entry} is a number: write the time in quotes, e.g. \"14:00\" (YAML reads an "
               "unquoted 14:00 as the number 840)")
        raise ValueError(msg)
    if not isinstance(entry, str):
        msg = f"a shift is a start time like \"06:00\" or \"06:00 early\", not {entry!r}"
        raise ValueError(msg)
    m = _HHMM.match(entry)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        msg = (f"shift start {entry!r} is not a time of day: write 24-hour HH:MM, optionally with a name, "
               "e.g. \"06:00\" or \"22:00 night\"")
        raise ValueError(msg)
    return {"start": f"{int(m.group(1)):02d}:{m.group(2)}", "name": m.group(3) or ""}


def _check(shifts: tuple[ShiftSpec, ...]) -> tuple[ShiftSpec, ...]:
    if not shifts:
        msg = "give at least one start time (e.g. [\"06:00\", \"14:00\", \"22:00\"]), or leave the key out"
        raise ValueError(msg)
    starts = [s.start for s in shifts]
    repeated = sorted({s for s in starts if starts.count(s) > 1})
    if repeated:
        msg = f"two shifts cannot start at the same time: {', '.join(repeated)}"
        raise ValueError(msg)
    return tuple(sorted(shifts, key=lambda s: s.minute))


def _listed(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        msg = "write the shifts as a list of start times, e.g. [\"06:00 early\", \"14:00 late\", \"22:00 night\"]"
        raise ValueError(msg)  # pydantic's own words would be "Input should be a valid tuple"
    return value


ShiftEntry = Annotated[ShiftSpec, BeforeValidator(_parse)]
Shifts = Annotated[tuple[ShiftEntry, ...], BeforeValidator(_listed), AfterValidator(_check)]
DEFAULT_SHIFTS: tuple[ShiftSpec, ...] = (ShiftSpec(start="00:00"),)
