"""The plant's results database against a real PostgreSQL: migrations, replay from the log, outages."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from inspector.audit.folder import index_dir
from inspector.audit.h5log import AuditWriter
from inspector.audit.index import LogIndex, Query
from inspector.audit.plant_db import MIGRATIONS, Backoff, DatabaseUnavailable, PlantDatabase, migrate, redact
from inspector.config.database import DatabaseSpec
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record
from tests.audit.postgres import PostgresServer

pytestmark = pytest.mark.integration
SPEC = LogSpec(rotate="size", heatmap_px=8, fsync_interval_s=None)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def url(pg: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database per test on the module's server."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:50]
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.url.rsplit("/", 1)[0] + "/" + name


def rows(url: str, station: str = "line7") -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT seq, part_id, status, defect, model_version FROM inspections "
                            "WHERE station = %s ORDER BY seq", (station,)).fetchall()


def log(folder: Path, seqs: range) -> None:
    with AuditWriter(folder, SPEC, station="line7", embedding_dim=16) as writer:
        writer.write([make_record(s, verdict="NG" if s % 3 == 0 else "OK") for s in seqs])
        writer.log_event("threshold_change", "qa", f"after {seqs[-1]}", 0.5, 0.6)


def indexed(folder: Path) -> list[tuple]:
    with LogIndex(folder, readonly=True) as index:
        return [(r["seq"], r["part_id"], r["status"], r["defect"], r["model_version"])
                for r in index.query(Query(), newest_first=False)]


def test_migrations_apply_once_and_are_recorded(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn) == [v for v, _, _ in MIGRATIONS]
        assert migrate(conn) == []
        versions = conn.execute("SELECT version, description FROM inspector_schema").fetchall()
    assert versions == [(1, "inspections and events")]


def test_push_replays_the_log_in_order_once(url: str, tmp_path: Path) -> None:
    log(tmp_path, range(1, 31))
    db = PlantDatabase(url, "line7", tmp_path, batch=7)
    assert db.push() == 30
    assert rows(url) == indexed(tmp_path)
    assert db.push() == 0 and len(rows(url)) == 30  # idempotent
    shutil.rmtree(index_dir(tmp_path))  # an index lost: the next writer rebuilds it, the push follows
    log(tmp_path, range(31, 41))
    assert db.push() == 10
    assert rows(url) == indexed(tmp_path)
    other = PlantDatabase(url, "line8", tmp_path)  # another station's rows live beside these
    assert other.push() == 40 and len(rows(url)) == 40 and len(rows(url, "line8")) == 40
    with psycopg.connect(url) as conn:
        events = conn.execute("SELECT kind, what FROM events WHERE station = 'line7' ORDER BY time_ns").fetchall()
        (when,) = conn.execute("SELECT time FROM inspections WHERE station = 'line7' AND seq = 1").fetchone()
    assert events == [("threshold_change", "after 30"), ("threshold_change", "after 40")]
    assert abs(when.timestamp() - make_record(1).time_ns / 1e9) < 1e-3
    db.close()
    other.close()


def test_database_down_then_back_loses_and_doubles_nothing(pg: PostgresServer, url: str, tmp_path: Path) -> None:
    log(tmp_path, range(1, 11))
    db = PlantDatabase(url, "line7", tmp_path, connect_timeout_s=1)
    assert db.push() == 10
    pg.kill()
    try:
        log(tmp_path, range(11, 21))
        t0 = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"127\.0\.0\.1"):
            db.push()
        assert time.monotonic() - t0 < 5  # a dead database costs a bounded wait, not a hang
        log(tmp_path, range(21, 26))
    finally:
        pg.start()
    assert db.push() == 15
    assert rows(url) == indexed(tmp_path) and [r[0] for r in rows(url)] == list(range(1, 26))
    db.close()


def test_backoff_doubles_to_its_ceiling_and_resets() -> None:
    now = [0.0]
    b = Backoff(max_s=5, clock=lambda: now[0])
    assert b.due()
    delays = []
    for _ in range(5):
        b.failed()
        delays.append(b.delay)
    assert delays == [1, 2, 4, 5, 5] and not b.due()
    now[0] = 5.0
    assert b.due()
    b.succeeded()
    assert b.delay == 0 and b.due()


def test_url_rules() -> None:
    assert redact("postgresql://qa:secret@db:5432/x") == "postgresql://qa:***@db:5432/x"
    with pytest.raises(ValueError, match="password_file"):
        DatabaseSpec(url="postgresql://qa:secret@db/x")
    with pytest.raises(ValueError, match="postgresql://USER@HOST"):
        DatabaseSpec(url="mysql://db/x")
