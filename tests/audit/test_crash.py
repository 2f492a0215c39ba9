"""kill -9 of a process while it writes the audit log: every published record survives.

A child process writes records continuously and prints each seq once ``write()`` returned for
it (published). The parent kills it with SIGKILL at an arbitrary point of its write cycle,
reopens the file and checks that every published record is there and intact; the next writer on
the folder then seals the file so that plain HDF5 tools open it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from inspector.audit.h5log import AuditWriter, log_files
from inspector.audit.reader import AuditReader
from inspector.audit.recovery import lookup3, open_flags, seal
from inspector.config.log import LogSpec

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run_and_kill(folder: Path, acks: int) -> int:
    """Start a writer child, wait for ``acks`` published batches, SIGKILL it; returns the last published seq."""
    child = subprocess.Popen([sys.executable, "-m", "tests.audit.crash_writer", str(folder)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = None
    try:
        seen = 0
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("acked"):
                last = int(line.split()[1])
                seen += 1
                if seen >= acks:
                    break
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err
    assert last is not None, f"child wrote nothing: {err}"
    return last


def check_file(path: Path, published: int) -> int:
    with AuditReader(path) as reader:
        n = len(reader)
        assert n >= published, f"{published - n} published record(s) lost"
        rows = reader.records()
        assert [r["seq"] for r in rows] == list(range(rows[0]["seq"], rows[0]["seq"] + n))
        for i, row in enumerate(rows):  # every record complete: media and vectors decode
            assert reader.thumbnail(i) is not None
            assert row["seq"] % 3 != 0 or reader.frame(i) is not None
            assert reader.heatmap(i) is not None
        assert not np.isnan(reader.embeddings()).any()
        return n


@pytest.mark.parametrize("acks", [1, 5, 23, 60])
def test_kill_9_keeps_every_published_record(tmp_path: Path, acks: int) -> None:
    published = run_and_kill(tmp_path, acks)
    (path,) = log_files(tmp_path)
    assert open_flags(path) != 0  # the crash left the file marked open ...
    n = check_file(path, published)  # ... and SWMR readers see everything published
    with AuditWriter(tmp_path, LogSpec(), embedding_dim=16) as writer:  # the next run seals it
        assert writer.recovered == [path]
        assert writer.last_seq == n
    assert open_flags(path) == 0
    with h5py.File(path, "r") as f:  # plain HDF5 now, no swmr flag
        assert f["inspections"].shape[0] == n


def test_crash_then_restart_continues_the_sequence(tmp_path: Path) -> None:
    first = run_and_kill(tmp_path, 4)
    second = run_and_kill(tmp_path, 4)  # the second child sealed the first file and resumed the seq
    files = log_files(tmp_path)
    assert len(files) == 2 and open_flags(files[0]) == 0
    n1 = check_file(files[0], first)
    n2 = check_file(files[1], second - n1)
    with AuditReader(files[1]) as reader:
        assert reader.records(0, 1)[0]["seq"] == n1 + 1
    assert n1 + n2 >= second


def test_lookup3_matches_hdf5_checksums(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(3)
    raw = path.read_bytes()[:48]
    assert lookup3(raw[:44]) == int.from_bytes(raw[44:48], "little")
    assert lookup3(b"") == 0xDEADBEEF
    assert seal(path) is False  # closed cleanly: nothing to do


def test_seal_leaves_foreign_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "not.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(100))
    assert open_flags(path) is None and seal(path) is False
