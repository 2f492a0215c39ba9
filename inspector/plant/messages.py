"""MQTT topics and JSON payloads (pure: no I/O, no broker). The schema is docs/plant-result.schema.json."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

SCHEMA: Final = "inspector.result/1"  # payload "schema" field; bumped on an incompatible change
EVENT_SCHEMA: Final = "inspector.event/1"
STATUS_SCHEMA: Final = "inspector.status/1"
OFFLINE: Final = "offline"


def result_topic(prefix: str, station: str, line: str) -> str:
    """``<prefix>/<station>/<line>/result``: one message per part (QoS 1, not retained)."""
    return f"{prefix}/{station}/{line}/result"


def status_topic(prefix: str, station: str) -> str:
    """``<prefix>/<station>/status``: state and counters (retained; the last will says offline)."""
    return f"{prefix}/{station}/status"


def event_topic(prefix: str, station: str) -> str:
    """``<prefix>/<station>/event``: audit events (changeover, threshold change, faults, queue gaps)."""
    return f"{prefix}/{station}/event"


@dataclass(frozen=True)
class ResultFacts:
    """What the result message says about one part (handed in by the station layer)."""

    station: str
    seq: int
    part_id: str
    time_ns: int
    line: str
    verdict: str
    score: float  # NaN when the part was not inspected
    threshold: float  # NaN when the part was not inspected
    defect: str | None
    fault: str | None
    model_version: str
    config_hash: str
    trigger: str = ""


def iso_time(time_ns: int) -> str:
    """UTC ISO 8601 with milliseconds (``2026-12-06T14:05:59.123Z``)."""
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def result_payload(r: ResultFacts) -> dict[str, Any]:
    """The result message: ``seq`` identifies a part across redeliveries (a consumer drops repeats by it)."""
    return {"schema": SCHEMA, "station": r.station, "line": r.line, "seq": r.seq, "part_id": r.part_id,
            "time": iso_time(r.time_ns), "time_ns": r.time_ns, "verdict": r.verdict, "score": _number(r.score),
            "threshold": _number(r.threshold), "defect": r.defect, "fault": r.fault,
            "model_version": r.model_version, "config_hash": r.config_hash, "trigger": r.trigger}


def event_payload(station: str, kind: str, who: str, what: str, old: str = "", new: str = "",
                  time_ns: int | None = None) -> dict[str, Any]:
    t = time.time_ns() if time_ns is None else time_ns
    return {"schema": EVENT_SCHEMA, "station": station, "kind": kind, "who": who, "what": what,
            "old": old, "new": new, "time": iso_time(t), "time_ns": t}


def status_payload(station: str, state: str, **facts: Any) -> dict[str, Any]:
    """The retained status; ``state`` is READY / BUSY / FAULT / STOPPED or ``offline`` (the last will)."""
    return {"schema": STATUS_SCHEMA, "station": station, "state": state, "time": iso_time(time.time_ns()), **facts}


def offline_payload(station: str) -> bytes:
    """The last will: what the broker publishes on the status topic when the station vanishes."""
    return encode({"schema": STATUS_SCHEMA, "station": station, "state": OFFLINE})


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN / inf are refused (they are not JSON): payloads carry null instead."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
