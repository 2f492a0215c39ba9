"""The SQLite index beside the audit files: written with the log, rebuilt from it, queried, searched."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from inspector.audit.catalog import open_index
from inspector.audit.folder import index_dir
from inspector.audit.h5log import AuditWriter, log_files
from inspector.audit.index import LogIndex, Query
from inspector.audit.query import QueryError, build_query, format_rows
from inspector.audit.reader import AuditReader
from inspector.audit.schema import INSPECTION_DTYPE
from inspector.config.log import LogSpec
from tests.audit.conftest import T0, make_record

SPEC = LogSpec(rotate="size", heatmap_px=8, fsync_interval_s=None)


def write(folder: Path, seqs: range, **kw) -> list:
    records = [make_record(s, verdict="NG" if s % 3 == 0 else "OK", fault="camera lost" if s % 10 == 7 else None,
                           **kw) for s in seqs]
    with AuditWriter(folder, SPEC, embedding_dim=16) as writer:
        writer.write(records[: len(records) // 2])
        writer.log_event("threshold_change", "qa", "calibrated", 0.5, 0.55)
        writer.write(records[len(records) // 2 :])
    return records


def snapshot(folder: Path) -> list[tuple]:
    with LogIndex(folder, readonly=True) as index:
        return [(r["seq"], r["part_id"], r["status"], r["file"], r["row"]) for r in index.query(Query())]


def test_writer_indexes_every_record_and_event(tmp_path: Path) -> None:
    records = write(tmp_path, range(1, 41))
    with LogIndex(tmp_path, readonly=True) as index:
        assert index.total() == 40
        assert index.counts() == {"OK": 24, "NG": 12, "FAULT": 4}
        (row,) = index.query(Query(part_id="P000012"))
        assert (row["seq"], row["status"], row["defect"], row["model_version"]) == (12, "NG", "scratch", "base")
        with AuditReader(tmp_path / row["file"]) as reader:  # file + row point at the HDF5 record
            assert reader.records(row["row"], row["row"] + 1)[0]["part_id"] == "P000012"
        assert [e["kind"] for e in index.events()] == ["threshold_change"]
        newest = index.query(Query(), limit=5)
        assert [r["seq"] for r in newest] == [40, 39, 38, 37, 36]
        page2 = index.query(Query(), limit=5, before=(newest[-1]["time_ns"], newest[-1]["id"]))
        assert [r["seq"] for r in page2] == [35, 34, 33, 32, 31]
        window = Query(start_ns=records[9].time_ns, end_ns=records[20].time_ns, status="NG")
        assert [r["seq"] for r in index.query(window, newest_first=False)] == [12, 15, 18]
        assert index.values("defect") == ["FAULT", "scratch"]


@pytest.mark.parametrize("damage", ["deleted", "garbage", "behind"])
def test_index_is_rebuilt_from_the_hdf5_files(tmp_path: Path, damage: str) -> None:
    write(tmp_path, range(1, 31))
    before = snapshot(tmp_path)
    db = index_dir(tmp_path) / "index.sqlite"
    if damage == "deleted":
        shutil.rmtree(index_dir(tmp_path))
    elif damage == "garbage":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        db.write_bytes(os.urandom(4096))
    else:  # the index lost its last records (e.g. a power cut with synchronous=NORMAL)
        with LogIndex(tmp_path) as index:
            index.db.execute("DELETE FROM inspections WHERE seq > 20")
            index.db.execute("UPDATE files SET rows = 20")
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:  # the next writer catches up
        assert writer.index is not None
    assert snapshot(tmp_path) == before
    shutil.rmtree(index_dir(tmp_path))
    with open_index(tmp_path) as index:  # a reader rebuilds it too when no station holds the folder
        assert index.total() == 30
    assert snapshot(tmp_path) == before


def test_similar_search_matches_brute_force(tmp_path: Path) -> None:
    records = write(tmp_path, range(1, 301))
    emb = np.stack([r.embedding if r.embedding is not None else np.full(16, np.nan) for r in records])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    rng = np.random.default_rng(5)
    with LogIndex(tmp_path, readonly=True) as index:
        for query in (emb[41], rng.standard_normal(16)):
            q = query / np.linalg.norm(query)
            sims = np.nan_to_num(unit @ q, nan=-9)
            expect = [int(records[i].seq) for i in np.argsort(-sims)[:10]]
            found = index.similar(query, 10, candidates=300)  # every record a candidate: the exact ranking
            rows = index.by_ids([i for i, _ in found])
            assert [rows[i]["seq"] for i, _ in found] == expect
            assert found[0][1] == pytest.approx(sims.max(), abs=2e-3)
        assert index.similar(emb[41], 5, model="another backbone") == []


def test_similar_search_finds_the_true_neighbours_among_many(tmp_path: Path) -> None:
    """Signatures pick 2000 candidates of 20000 CLIP-width vectors; the exact top 10 is among them."""
    rng = np.random.default_rng(0)
    n, dim = 20_000, 512
    centres = rng.standard_normal((200, dim))
    emb = (centres[rng.integers(0, 200, n)] + 0.8 * rng.standard_normal((n, dim))).astype(np.float32)
    table = np.zeros(n, INSPECTION_DTYPE)
    table["seq"] = np.arange(1, n + 1)
    table["time_ns"] = T0 + np.arange(n)
    table["verdict"], table["model"] = b"OK", b"ViT-B-16"
    with LogIndex(tmp_path) as index:
        index.add_records("station_20260528T000000Z.h5", 0, table, emb.astype(np.float16))
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        hits = 0
        for i in rng.integers(0, n, 20):
            query = emb[i] + 0.3 * rng.standard_normal(dim).astype(np.float32)
            expect = set(np.argsort(-(unit @ (query / np.linalg.norm(query))))[:10].tolist())
            found = {row - 1 for row in (index.by_ids([j for j, _ in index.similar(query, 10)]))}
            hits += len(expect & found)
        assert hits / 200 >= 0.95


def test_retention_drops_index_rows_and_side_files(tmp_path: Path) -> None:
    write(tmp_path, range(1, 11))
    (old,) = log_files(tmp_path)
    side = list(index_dir(tmp_path).glob(f"{old.stem}.*"))
    assert len(side) == 2
    stamp = time.time() - 3 * 86400
    os.utime(old, (stamp, stamp))
    with AuditWriter(tmp_path, LogSpec(keep_days=1, fsync_interval_s=None), embedding_dim=16) as writer:
        writer.write([make_record(11, time_ns=time.time_ns())])
    assert not old.exists() and not any(p.exists() for p in side)
    assert [r[0] for r in snapshot(tmp_path)] == [11]


def test_query_arguments_and_formats() -> None:
    q = build_query(last="2h", status="NG", now_ns=T0)
    assert q.start_ns == T0 - 2 * 3600 * 10**9 and q.status == "NG" and q.end_ns is None
    assert build_query(start="2026-05-28T06:00Z").start_ns == 1_779_948_000 * 10**9
    with pytest.raises(QueryError, match="15m"):
        build_query(last="two hours")
    with pytest.raises(QueryError, match="ISO 8601"):
        build_query(start="yesterday")
    with pytest.raises(QueryError, match="not both"):
        build_query(start="2026-05-28", last="1h")
    rows = [{"time_ns": T0, "seq": 1, "part_id": "P1", "score": float("nan")}]
    assert format_rows(rows, ("seq", "part_id", "score"), "csv") == "seq,part_id,score\n1,P1,\n"
    assert '"part_id": "P1"' in format_rows(rows, ("seq",), "json")
    assert "(1 row)" in format_rows(rows, ("seq", "part_id"), "table")


def test_bundle_of_a_time_range_is_self_contained_and_checksummed(tmp_path: Path) -> None:
    import hashlib

    from inspector.audit.bundle import export_bundle

    logs = tmp_path / "logs"
    records = write(logs, range(1, 31), with_frame=True)
    out = tmp_path / "complaint-4711"
    made = export_bundle(logs, out, records[9].time_ns, records[20].time_ns)  # seq 10..20
    assert made.records == 11 and {"inspections.csv", "events.csv", "README.txt"} <= set(made.files)
    (h5,) = [f for f in made.files if f.endswith(".h5")]
    with AuditReader(out / h5) as reader:
        rows = reader.records()
        assert [r["seq"] for r in rows] == list(range(10, 21))
        assert reader.thumbnail(0) is not None and reader.frame(0) is not None
        with AuditReader(log_files(logs)[0]) as source:
            assert reader.blob("frames", 0) == source.blob("frames", 9)
    assert not (out / ".index").exists()
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(made.files)
    assert all(hashlib.sha256((out / f).read_bytes()).hexdigest() == h for f, h in sums.items())
    with pytest.raises(Exception, match="not empty"):
        export_bundle(logs, out)


def test_a_failed_index_write_costs_the_index_not_the_log(tmp_path: Path, monkeypatch, caplog) -> None:
    import sqlite3

    import inspector.audit.h5log as h5log
    from inspector.audit.index import LogIndex as Index

    monkeypatch.setattr(h5log, "_INDEX_RETRY_S", 0.0)
    real = Index.add_records
    calls = {"n": 0}

    def flaky(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, *args, **kw)

    monkeypatch.setattr(Index, "add_records", flaky)
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(s) for s in range(1, 6)])
        writer.write([make_record(s) for s in range(6, 11)])  # the index write fails; the log write does not
        assert "fell behind" in caplog.text
        with AuditReader(writer.path) as reader:
            assert [r["seq"] for r in reader.records()] == list(range(1, 11))
        writer.write([make_record(s) for s in range(11, 16)])  # catches up from the live file, this write included
        assert [r[0] for r in reversed(snapshot(tmp_path))] == list(range(1, 16))
