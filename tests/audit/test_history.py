"""The history view's data without Qt: records of a log folder, filters, CSV export, ranking by an embedding."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from inspector.audit.export import CSV_COLUMNS
from inspector.audit.h5log import AuditWriter
from inspector.audit.history import (
    ALL,
    FAULT,
    HistoryFilter,
    apply_filter,
    export_rows,
    load_history,
    rank,
    record_media,
)
from inspector.audit.media import downsample_heatmap, encode_thumbnail
from inspector.audit.records import AuditRecord

T0 = 1_780_000_000_000_000_000  # 2026-05-28, UTC ns
MODEL, DIM = "tiny|random", 16
HEAT_PX = 32  # log.heatmap_px's default: the writer keeps maps of that size


def write_log(folder: Path, model: str, dim: int) -> np.ndarray:
    """12 parts over 12 hours: lines ring / ring2, OK / NG (scratch, dent) / one FAULT; returns embeddings."""
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((12, dim)).astype(np.float32)
    records = []
    for i in range(12):
        fault = "camera lost" if i == 11 else None
        ng = i % 3 == 0 and not fault
        frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        records.append(AuditRecord(
            seq=i + 1, time_ns=T0 + i * 3600 * 10**9, part_id=f"P{i:04d}", line="ring" if i < 8 else "ring2",
            verdict="NG" if ng or fault else "OK", score=float("nan") if fault else 0.1 * i, threshold=0.5,
            defect="FAULT" if fault else (("scratch" if i % 2 == 0 else "dent") if ng else None),
            fault=fault, model=model, model_version="base", embedding=None if fault else embeddings[i],
            heatmap=None if fault else downsample_heatmap(rng.random((64, 64)).astype(np.float32), HEAT_PX),
            thumbnail_jpeg=encode_thumbnail(frame, 64), roi=(0, 0, 64, 64), stage_ms={"total": 20.0}))
    with AuditWriter(folder, station="test-station", embedding_dim=dim) as writer:
        writer.write(records)
    return embeddings


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, np.ndarray]:
    folder = tmp_path / "logs"
    return folder, write_log(folder, MODEL, DIM)


def _ids(history, indices) -> list[str]:
    return [history.rows[i].record["part_id"] for i in indices]


def test_load_history_reads_every_record_oldest_first(logged):
    folder, _ = logged
    (folder / "zz-broken.h5").write_bytes(b"not an HDF5 file")
    history = load_history(folder)
    assert [r.record["part_id"] for r in history.rows] == [f"P{i:04d}" for i in range(12)]
    assert len(history.unreadable) == 1 and "zz-broken" in history.unreadable[0]
    assert [r.verdict_class for r in history.rows].count("NG") == 4 and history.rows[11].verdict_class == FAULT
    assert history.rows[11].embedding is None and history.rows[0].embedding.shape == (DIM,)
    assert history.values("line") == ["ring", "ring2"] and history.values("defect") == ["FAULT", "dent", "scratch"]


def test_filters_by_verdict_line_defect_and_time(logged):
    history = load_history(logged[0])
    everything = apply_filter(history, HistoryFilter())
    assert len(everything) == 12
    ng = apply_filter(history, HistoryFilter(verdict="NG"))
    assert {history.rows[i].verdict_class for i in ng} == {"NG"} and len(ng) == 4
    assert _ids(history, apply_filter(history, HistoryFilter(verdict=FAULT))) == ["P0011"]
    ring2 = apply_filter(history, HistoryFilter(line="ring2"))
    assert {history.rows[i].record["line"] for i in ring2} == {"ring2"} and len(ring2) == 4
    assert set(_ids(history, apply_filter(history, HistoryFilter(defect="scratch")))) == {"P0000", "P0006"}
    start = dt.datetime.fromtimestamp(T0 / 1e9)
    first_hours = HistoryFilter(start=start, end=start + dt.timedelta(hours=2, minutes=1), verdict=ALL)
    assert _ids(history, apply_filter(history, first_hours)) == ["P0000", "P0001", "P0002"]


def test_export_writes_the_given_rows(logged, tmp_path):
    history = load_history(logged[0])
    rows = [history.rows[i] for i in (2, 1, 0, 11)]
    out = tmp_path / "out" / "export.csv"
    assert export_rows(rows, out) == 4
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [*CSV_COLUMNS, "ms_total"]
        written = list(reader)
    assert [r["part_id"] for r in written] == ["P0002", "P0001", "P0000", "P0011"] and written[0]["verdict"] == "OK"
    assert written[3]["score"] == "" and written[0]["ms_total"] == "20"  # NaN as an empty cell


def test_rank_by_an_embedding_within_the_candidates(logged):
    history = load_history(logged[0])
    everything = apply_filter(history, HistoryFilter())
    picked = history.rows[3]
    result = rank(history, apply_filter(history, HistoryFilter(verdict="NG")), picked.embedding, MODEL)
    assert result.ranked[0] == (3, pytest.approx(1.0, abs=1e-5))  # the example ranks itself first, cosine 1
    assert {history.rows[i].verdict_class for i, _ in result.ranked} == {"NG"}
    query = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    result = rank(history, everything, query)
    sims = [s for _, s in result.ranked]
    assert len(sims) == 11 and sims == sorted(sims, reverse=True) and result.skipped_no_embedding == 1
    embeddings = logged[1]
    best = int(np.argmax(embeddings[:11] @ query / np.linalg.norm(embeddings[:11], axis=1)))
    assert result.ranked[0][0] == best


def test_rank_leaves_out_records_of_another_model(logged):
    history = load_history(logged[0])
    everything = apply_filter(history, HistoryFilter())
    other = rank(history, everything, np.ones(DIM, np.float32), "ViT-B-16|openai")
    assert other.ranked == [] and other.skipped_other_model == 11 and other.skipped_no_embedding == 1
    wider = rank(history, everything, np.ones(DIM * 2, np.float32))  # another backbone's width
    assert wider.ranked == [] and wider.skipped_other_model == 11


def test_record_media_gives_the_thumbnail_and_the_heatmap(logged):
    history = load_history(logged[0])
    image, heat = record_media(history.rows[0])
    assert image is not None and image.ndim == 3 and image.shape[2] == 3
    assert heat is not None and heat.dtype == np.float32 and heat.shape == (HEAT_PX, HEAT_PX)
    assert record_media(history.rows[11])[1] is None  # the FAULT was not inspected
