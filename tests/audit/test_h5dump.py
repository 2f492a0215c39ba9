"""Debian's HDF5 1.10 tools read every file the station writes (issue #18: files QA opens years later).

h5py 3.16 bundles HDF5 2.0; with ``libver="latest"`` it wrote datasets that ``h5dump`` 1.10 cannot open.
These tests run the real ``h5dump`` (Debian package hdf5-tools, listed in scripts/system-packages.txt so
a CI machine has it: they fail, not skip, when it is missing) on a fresh log and on one recovered after
``kill -9``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from inspector.audit.h5log import AuditWriter, log_files
from inspector.audit.reader import AuditReader
from inspector.audit.recovery import open_flags
from inspector.audit.schema import SUFFIX
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record
from tests.audit.test_crash import run_and_kill

pytestmark = pytest.mark.integration

DATASETS = ("inspections", "events", "stage_ms", "embedding", "heatmap", "thumbnails", "frames")


def h5dump(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("h5dump")
    assert exe, "h5dump not found: install Debian's hdf5-tools (scripts/install-system-packages.sh)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def assert_h5dump_reads(path: Path) -> None:
    header = h5dump("-H", str(path))
    assert header.returncode == 0, f"h5dump -H {path.name}: {header.stderr}"
    assert "internal error" not in header.stdout + header.stderr
    for name in DATASETS:
        assert f'DATASET "{name}"' in header.stdout, name
    # Data too, not only the header: the compound table and the events (h5dump 1.10 reads the chunks).
    for name in ("inspections", "events"):
        data = h5dump("-d", f"/{name}", str(path))
        assert data.returncode == 0 and "DATA {" in data.stdout, f"h5dump -d /{name}: {data.stderr}"


def test_h5dump_reads_a_fresh_log(tmp_path: Path) -> None:
    with AuditWriter(tmp_path, LogSpec(heatmap_px=8, rotate="size"), station="line-7", embedding_dim=16) as writer:
        writer.write([make_record(i, verdict="NG" if i % 2 else "OK", with_frame=i % 2 == 1) for i in range(1, 40)])
        writer.log_event("threshold_change", "qa", "calibrated", 0.5, 0.55)
        live = writer.path
        assert live is not None
        with AuditReader(live) as reader:  # SWMR still works with the 1.10 bounds
            assert len(reader) == 39 and reader.is_open_for_write
            writer.write([make_record(40)])
            assert reader.refresh() == 40
    (path,) = log_files(tmp_path)
    assert path.suffix == SUFFIX and open_flags(path) == 0
    assert_h5dump_reads(path)
    data = h5dump("-d", "/inspections", str(path)).stdout
    assert '"P000040\\000' in data  # fixed-size, NUL-padded strings (numpy S fields)


def test_h5dump_reads_a_log_recovered_after_kill_9(tmp_path: Path) -> None:
    published = run_and_kill(tmp_path, 6)
    (path,) = log_files(tmp_path)
    assert open_flags(path) != 0
    with AuditWriter(tmp_path, LogSpec(), embedding_dim=16) as writer:  # the next run seals it
        assert writer.recovered == [path] and writer.last_seq >= published
    assert_h5dump_reads(path)
