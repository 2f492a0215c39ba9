"""What goes into the audit log: one record per part (:class:`AuditRecord`) and events (:class:`AuditEvent`),
and their rows in the layout of :mod:`inspector.audit.schema` (the writer, :mod:`inspector.audit.h5log`,
appends them to the file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.audit.schema import EVENT_DTYPE, EVENT_LIMITS, INSPECTION_DTYPE, STAGES, STR_LIMITS, encode_str

_TEXT_FIELDS = ("part_id", "line", "defect", "fault", "trigger", "frame_ref", "truth", "model", "model_name",
                "weights_sha256", "model_version", "config_hash")


@dataclass
class AuditRecord:
    """One part as it goes into the log; media are already encoded (see inspector.audit.media)."""

    seq: int
    time_ns: int  # UTC, ns since the epoch
    part_id: str
    line: str
    verdict: str  # OK | NG
    score: float
    threshold: float = float("nan")
    defect: str | None = None
    defect_index: int = 0
    defect_confidence: float | None = None
    fault: str | None = None
    trigger: str = ""
    frame_ref: str = ""
    truth: str | None = None
    model: str = ""
    model_name: str = ""
    weights_sha256: str | None = None
    model_version: str = ""
    config_hash: str = ""
    untrained: bool = False
    n_regions: int = 0
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    stage_ms: Mapping[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None  # [D]; stored as float16
    heatmap: np.ndarray | None = None  # [P, P] float16 (media.downsample_heatmap)
    thumbnail_jpeg: bytes = b""
    frame_png: bytes = b""
    camera_frame_id: int | None = None  # the camera's own frame id (GenICam cameras)
    camera_time_ns: int | None = None  # the camera's own timestamp, ns on its clock
    mutual_parts: int = -1  # buffered parts the mutual head scored against; 0 warming up, -1 no mutual head


@dataclass(frozen=True)
class AuditEvent:
    """A change or incident: who did what, when, old -> new."""

    kind: str
    who: str
    what: str
    old: str = ""
    new: str = ""
    time_ns: int = 0  # 0 = now


def record_rows(records: Sequence[AuditRecord], emb_dim: int, heatmap_px: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The records' inspection-table rows (blob offsets left to the writer), embeddings [n, emb_dim] float16,
    stage times [n, len(STAGES)] and heatmaps [n, P, P] (None when ``heatmap_px`` is 0); NaN where absent."""
    n = len(records)
    table = np.zeros(n, dtype=INSPECTION_DTYPE)
    emb = np.full((n, emb_dim), np.nan, dtype=np.float16)
    stages = np.full((n, len(STAGES)), np.nan, dtype=np.float32)
    p = heatmap_px
    heat = np.full((n, p, p), np.nan, dtype=np.float16) if p > 0 else None
    for i, r in enumerate(records):
        if r.embedding is not None:
            emb[i] = np.asarray(r.embedding, dtype=np.float32).astype(np.float16)
        for k, name in enumerate(STAGES):
            if name in r.stage_ms:
                stages[i, k] = r.stage_ms[name]
        if heat is not None and r.heatmap is not None and r.heatmap.shape == (p, p):
            heat[i] = r.heatmap
        row = table[i]
        row["seq"], row["time_ns"] = r.seq, r.time_ns
        for name in _TEXT_FIELDS:
            row[name] = encode_str(getattr(r, name), STR_LIMITS[name])
        row["verdict"] = r.verdict.encode()
        row["score"], row["threshold"] = r.score, r.threshold
        row["defect_index"] = r.defect_index
        row["defect_confidence"] = np.nan if r.defect_confidence is None else r.defect_confidence
        row["untrained"], row["n_regions"] = int(r.untrained), r.n_regions
        row["roi"] = r.roi
        row["camera_frame_id"] = -1 if r.camera_frame_id is None else r.camera_frame_id
        row["camera_time_ns"] = -1 if r.camera_time_ns is None else r.camera_time_ns
        row["mutual_parts"] = r.mutual_parts
    return table, emb, stages, heat


def event_rows(events: Sequence[AuditEvent], after_seq: int, clock_ns: Callable[[], int]) -> np.ndarray:
    """The events' table rows; an event without a time gets ``clock_ns()``."""
    rows = np.zeros(len(events), dtype=EVENT_DTYPE)
    for i, e in enumerate(events):
        rows[i]["time_ns"] = e.time_ns or clock_ns()
        rows[i]["after_seq"] = after_seq
        for name in ("kind", "who", "what", "old", "new"):
            rows[i][name] = encode_str(getattr(e, name), EVENT_LIMITS[name])
    return rows


def to_text(value: Any) -> str:
    """An event's old / new value as text (JSON for structured values)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)
