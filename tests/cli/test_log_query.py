"""`inspector log query`: inspections of a log folder through its index, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from inspector.audit.folder import index_dir
from inspector.audit.h5log import AuditWriter
from inspector.cli import main
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    with AuditWriter(folder, LogSpec(rotate="size", heatmap_px=8), embedding_dim=16) as writer:
        writer.write([make_record(s, verdict="NG" if s % 4 == 0 else "OK") for s in range(1, 26)])
    shutil.rmtree(index_dir(folder))  # an old folder without an index: the query builds it
    return folder


def test_query_by_verdict_as_csv_and_by_part_as_json(logs: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["log", "query", str(logs), "--verdict", "NG", "--format", "csv", "--limit", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["seq"] for r in rows] == ["24", "20", "16"] and {r["status"] for r in rows} == {"NG"}
    assert rows[0]["file"].endswith(".h5") and rows[0]["row"] == "23"
    out = logs.parent / "q" / "p.json"
    assert main(["log", "query", str(logs), "--part", "P000007", "--format", "json", "--out", str(out)]) == 0
    (one,) = json.loads(out.read_text())
    assert (one["seq"], one["verdict"], one["line"]) == (7, "OK", "ring")
    assert main(["log", "query", str(logs), "--from", "2026-05-28T20:26:40.020Z", "--to",
                 "2026-05-28T20:26:40.023Z"]) == 0
    table = capsys.readouterr().out
    assert "P000022" in table and "P000023" not in table and "(3 rows)" in table


def test_query_errors_name_the_problem(logs: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["log", "query", str(logs), "--last", "soon"]) != 0
    assert "15m" in capsys.readouterr().err
    assert main(["log", "query", str(logs.parent / "nope")]) != 0
    assert "no such log folder" in capsys.readouterr().err
