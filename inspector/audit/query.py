"""The filters of ``inspector log query`` from their command-line text, and rows out as a table, CSV or JSON (pure)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from inspector.audit.index import Query
from inspector.errors import InspectorError

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class QueryError(InspectorError):
    """A query argument cannot be understood."""


def parse_time(text: str) -> int:
    """ISO 8601 date / time -> UTC ns; without a zone it is local time (a ``Z`` suffix means UTC)."""
    raw = text.strip()
    try:
        stamp = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        msg = f"time {text!r} is not ISO 8601; write e.g. 2026-05-28T08:00 (local) or 2026-05-28T06:00Z (UTC)"
        raise QueryError(msg) from None
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()  # local
    return (stamp - _EPOCH) // dt.timedelta(microseconds=1) * 1000  # exact: no float rounding


def parse_span(text: str) -> int:
    """``90s``, ``15m``, ``8h``, ``7d`` -> nanoseconds."""
    m = _SPAN.match(text)
    if not m:
        msg = f"time span {text!r}: write a number and s, m, h or d (e.g. 15m, 8h, 7d)"
        raise QueryError(msg)
    return int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)


def build_query(*, part_id: str | None = None, start: str | None = None, end: str | None = None,
                last: str | None = None, line: str | None = None, status: str | None = None,
                defect: str | None = None, model_version: str | None = None, now_ns: int | None = None) -> Query:
    """A :class:`~inspector.audit.index.Query` from command-line text (``last`` and ``start`` exclude each other)."""
    if last is not None and start is not None:
        msg = "give either --last or --from, not both"
        raise QueryError(msg)
    start_ns = parse_time(start) if start else None
    end_ns = parse_time(end) if end else None
    if last is not None:
        start_ns = (now_ns if now_ns is not None else time.time_ns()) - parse_span(last)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        msg = f"--to ({end}) is not after the start of the range"
        raise QueryError(msg)
    return Query(part_id=part_id, start_ns=start_ns, end_ns=end_ns, line=line, status=status, defect=defect,
                 model_version=model_version)


def iso_local(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9).astimezone().isoformat(timespec="milliseconds")


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def format_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> str:
    """Rows (with ``time_ns``) as ``table`` (aligned text), ``csv`` or ``json`` (one object per row, all fields)."""
    rows = [{**r, "time": iso_local(int(r["time_ns"]))} for r in rows]
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(r.get(c)) for c in columns] for r in rows])
        return out.getvalue()
    cells = [[str(_cell(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[k]) for row in cells)]) for k, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"
