"""Helpers for audit-log tests: records with every field and real media."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.audit.media import downsample_heatmap, encode_frame, encode_thumbnail
from inspector.audit.records import AuditRecord

T0 = 1_780_000_000_000_000_000  # a fixed UTC time (2026) in ns


def make_record(seq: int, *, verdict: str = "OK", dim: int = 16, time_ns: int | None = None, fault: str | None = None,
                with_frame: bool = False, rng: np.random.Generator | None = None) -> AuditRecord:
    rng = rng or np.random.default_rng(seq)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    amap = rng.random((48, 64)).astype(np.float32)
    return AuditRecord(
        seq=seq,
        time_ns=time_ns if time_ns is not None else T0 + seq * 1_000_000,
        part_id=f"P{seq:06d}",
        line="ring",
        verdict="NG" if fault else verdict,
        score=float("nan") if fault else 0.1 * seq,
        threshold=0.5,
        defect="FAULT" if fault else ("scratch" if verdict == "NG" else None),
        defect_index=0 if fault or verdict == "OK" else 1,
        defect_confidence=None if fault or verdict == "OK" else 0.75,
        fault=fault,
        trigger="plc",
        frame_ref=f"frame-{seq}",
        truth="good",
        model="tiny (untrained backbone)",
        model_name="inspector-tiny-vit",
        weights_sha256="ab" * 32,
        model_version="base",
        config_hash="0123456789abcdef",
        untrained=True,
        n_regions=1 if verdict == "NG" else 0,
        roi=(0, 0, 64, 48),
        stage_ms={"capture": 1.5, "backbone": 20.0, "total": 30.0 + seq},
        embedding=None if fault else rng.standard_normal(dim).astype(np.float32),
        heatmap=None if fault else downsample_heatmap(amap, 8),
        thumbnail_jpeg=encode_thumbnail(frame, 32),
        frame_png=encode_frame(frame) if with_frame else b"",
    )


@pytest.fixture
def record_factory():
    return make_record
