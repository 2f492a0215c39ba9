"""The mutual head per part in the audit log: ``mutual_parts`` and the ``mutual`` stage, old files still read."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from inspector.audit.export import export_csv
from inspector.audit.h5log import AuditWriter
from inspector.audit.reader import AuditReader
from inspector.audit.schema import INSPECTION_DTYPE, STAGES
from inspector.config.log import LogSpec
from tests.audit.conftest import T0, make_record

SPEC = LogSpec(heatmap_px=8, fsync_interval_s=0)


def _write(folder: Path) -> Path:
    records = [make_record(1),  # a line without the mutual head: -1
               replace(make_record(2), mutual_parts=0),  # warming up
               replace(make_record(3), mutual_parts=12, stage_ms={"backbone": 20.0, "mutual": 3.5, "total": 40.0})]
    with AuditWriter(folder, SPEC, station="st1", embedding_dim=16, clock_ns=lambda: T0) as writer:
        writer.write(records)
        path = writer.path
    assert path is not None
    return path


def test_mutual_parts_and_stage_round_trip_and_export(tmp_path: Path) -> None:
    path = _write(tmp_path / "logs")
    assert "mutual" in STAGES and "mutual_parts" in INSPECTION_DTYPE.names
    with AuditReader(path) as reader:
        rows = reader.records()
    assert [r["mutual_parts"] for r in rows] == [-1, 0, 12]
    assert rows[2]["ms"]["mutual"] == 3.5 and "mutual" not in rows[0]["ms"]
    out = tmp_path / "parts.csv"
    assert export_csv(path, out) == 3
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["mutual_parts"] for r in table] == ["-1", "0", "12"]
    assert [r["ms_mutual"] for r in table] == ["", "", "3.5"]


def test_files_written_before_the_column_still_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "logs")
    old_names = [n for n in INSPECTION_DTYPE.names if n != "mutual_parts"]
    old_stages = [s for s in STAGES if s != "mutual"]
    with h5py.File(path, "r+") as f:  # rewrite as the layout was before: no column, no stage
        rows = f["inspections"][:]
        old = np.zeros(len(rows), dtype=[(n, INSPECTION_DTYPE.fields[n][0]) for n in old_names])
        for name in old_names:
            old[name] = rows[name]
        del f["inspections"]
        f.create_dataset("inspections", data=old, maxshape=(None,))
        keep = [STAGES.index(s) for s in old_stages]
        stages = f["stage_ms"][:][:, keep]
        del f["stage_ms"]
        f.create_dataset("stage_ms", data=stages)
        f.attrs["stages"] = np.array(old_stages, dtype=h5py.string_dtype())
    with AuditReader(path) as reader:
        rows = reader.records()
        assert "mutual" not in reader.stages
    assert [r["mutual_parts"] for r in rows] == [-1, -1, -1]  # unknown: as a line without the head
    out = tmp_path / "old.csv"
    assert export_csv(path, out) == 3
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["mutual_parts"] for r in table] == ["-1", "-1", "-1"] and "ms_mutual" not in table[0]
