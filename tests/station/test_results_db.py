"""`inspector run --results-db URL`: the same inspections in PostgreSQL as in the HDF5 log, through an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from inspector.cli import main
from tests.audit.postgres import PostgresServer
from tests.station.test_run_cmd import write_config

pytestmark = pytest.mark.integration


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.close()


def db_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT seq, part_id, verdict, score FROM inspections WHERE station = 'test-station' "
                            "ORDER BY seq").fetchall()


def log_rows(logs: Path) -> list[tuple]:
    out = []
    for path in log_files(logs):
        with AuditReader(path) as reader:
            out += [(r["seq"], r["part_id"], r["verdict"], r["score"]) for r in reader.records()]
    return out


@pytest.mark.slow  # about 8 s: 40 parts at 10 Hz and a 1.5 s outage
def test_database_stopped_mid_run_loses_and_doubles_nothing(tmp_path: Path, text_cache_dir: Path,
                                                            pg: PostgresServer) -> None:
    config = write_config(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 10})
    logs = tmp_path / "logs"
    outage: list[int] = []

    def kill_and_restart() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(db_rows(pg.url)) >= 5:
                    break
            except psycopg.Error:  # tables not there yet
                pass
            time.sleep(0.05)
        pg.kill()
        outage.append(len(log_rows(logs)))
        time.sleep(1.5)  # parts keep coming meanwhile
        outage.append(len(log_rows(logs)))
        pg.start()

    chaos = threading.Thread(target=kill_and_restart)
    chaos.start()
    try:
        assert main(["run", "--config", str(config), "--headless", "--plain", "--frames", "40",
                     "--results-db", pg.url]) == 0
    finally:
        chaos.join(90)
    assert outage and outage[1] > outage[0]  # the station logged parts while the database was down
    logged = log_rows(logs)
    assert len(logged) == 40
    assert db_rows(pg.url) == logged  # the same 40, once each


def test_results_db_refuses_a_password_in_the_url_and_a_disabled_log(tmp_path: Path, text_cache_dir: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path, text_cache_dir)
    assert main(["run", "--config", str(config), "--frames", "1", "--results-db", "postgresql://qa:pw@db/x"]) != 0
    assert "password_file" in capsys.readouterr().err
    assert main(["run", "--config", str(config), "--frames", "1", "--no-log", "--results-db",
                 "postgresql://qa@127.0.0.1:1/x"]) != 0
    assert "audit log" in capsys.readouterr().err
