"""The audit writer and reader on real HDF5 files: round trip, rotation, locking, live reading."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from inspector.audit.h5log import AuditLogError, AuditWriter, log_files
from inspector.audit.reader import AuditReader, AuditReadError, summarize
from inspector.audit.schema import STAGES, encode_str
from inspector.config.log import LogSpec
from tests.audit.conftest import T0, make_record

SPEC = LogSpec(heatmap_px=8, fsync_interval_s=0)


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    records = [make_record(1), make_record(2, verdict="NG", with_frame=True), make_record(3, fault="camera lost")]
    with AuditWriter(tmp_path, SPEC, station="st1", embedding_dim=16, clock_ns=lambda: T0) as writer:
        writer.write(records)
        writer.log_event("threshold", "alice", "threshold of line ring", 0.5, 0.61)
        path = writer.path
    assert path is not None and path.name.startswith("st1_") and path.suffix == ".h5"

    with AuditReader(path) as reader:
        assert len(reader) == 3
        assert reader.attrs["station"] == "st1" and reader.attrs["format_version"] == 1
        rows = reader.records()
        ok, ng, fault = rows
        assert [r["seq"] for r in rows] == [1, 2, 3]
        assert ok["verdict"] == "OK" and ok["defect"] == "" and np.isnan(ok["defect_confidence"])
        assert ng["verdict"] == "NG" and ng["defect"] == "scratch" and ng["defect_index"] == 1
        assert ng["defect_confidence"] == pytest.approx(0.75)
        assert fault["verdict"] == "NG" and fault["defect"] == "FAULT" and fault["fault"] == "camera lost"
        assert np.isnan(fault["score"])
        assert ok["part_id"] == "P000001" and ok["weights_sha256"] == "ab" * 32 and ok["untrained"] is True
        assert ok["timestamp"].endswith("Z") and ok["roi"] == (0, 0, 64, 48)
        assert ok["ms"]["total"] == pytest.approx(31.0) and "preprocess" not in ok["ms"]
        emb = reader.embeddings()
        assert emb.dtype == np.float16 and emb.shape == (3, 16)
        np.testing.assert_allclose(emb[0], records[0].embedding.astype(np.float16))
        assert np.isnan(emb[2]).all()
        np.testing.assert_array_equal(reader.heatmap(0), records[0].heatmap)
        assert reader.heatmap(2) is None
        assert reader.thumbnail(0).shape == (24, 32, 3)
        assert reader.frame(0) is None
        np.testing.assert_array_equal(reader.frame(1), np.random.default_rng(2).integers(0, 255, (48, 64, 3),
                                                                                           dtype=np.uint8))
        events = reader.events()
        assert [(e["kind"], e["who"], e["old"], e["new"], e["after_seq"]) for e in events] == [
            ("threshold", "alice", "0.5", "0.61", 3)]
        assert not reader.is_open_for_write

    # A closed file is plain HDF5: no SWMR flag needed, stage columns are named.
    with h5py.File(path, "r") as f:
        assert f["inspections"].shape == (3,)
        assert [s.decode() for s in f["stage_ms"].attrs["stages"]] == list(STAGES)  # fixed-length: no global heap
        assert f.attrs["station"] == b"st1" and f.attrs["format"] == b"inspector-audit"
        assert f["inspections"].compression == "gzip"


def test_strings_are_cut_at_a_character_boundary() -> None:
    assert encode_str("é" * 40, 64) == ("é" * 32).encode()
    assert encode_str("ab€", 4) == b"ab"
    assert encode_str(None, 8) == b""


def test_live_file_is_readable_while_written(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, SPEC, embedding_dim=16)
    try:
        writer.write([make_record(1)])
        reader = AuditReader(writer.path)
        assert len(reader) == 1 and reader.is_open_for_write
        writer.write([make_record(2), make_record(3)])
        assert reader.refresh() == 3
        assert [r["seq"] for r in reader.records()] == [1, 2, 3]
        reader.close()
    finally:
        writer.close()


def test_rotation_by_size_and_embedding_width(tmp_path: Path) -> None:
    spec = LogSpec(heatmap_px=8, max_mb=0.5, rotate="size", fsync_interval_s=None)
    with AuditWriter(tmp_path, spec, embedding_dim=16) as writer:
        seq = 0
        for _ in range(60):
            seq += 1
            writer.write([make_record(seq, verdict="NG", with_frame=True)])  # ~10 kB each
        assert len(writer.files) >= 2
    files = log_files(tmp_path)
    assert files == writer.files
    seqs = []
    for f in files:
        assert f.stat().st_size < 0.5e6 + 0.3e6  # at most one record and one blob chunk past max_mb
        with AuditReader(f) as reader:
            seqs += [r["seq"] for r in reader.records()]
    assert seqs == list(range(1, seq + 1))

    with AuditWriter(tmp_path / "b", SPEC, embedding_dim=16) as writer:
        writer.write([make_record(1)])
        writer.write([make_record(2, dim=32)])  # another backbone after a changeover
    with AuditReader(writer.files[1]) as reader:
        assert reader.attrs["embedding_dim"] == 32
        assert reader.attrs["opened_because"] == "embedding width 16 -> 32"


def test_daily_rotation_at_local_midnight(tmp_path: Path) -> None:
    day1 = int(dt.datetime(2026, 3, 1, 23, 59, 59).timestamp() * 1e9)
    day2 = int(dt.datetime(2026, 3, 2, 0, 0, 1).timestamp() * 1e9)
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(1, time_ns=day1)])
        writer.write([make_record(2, time_ns=day2)])
        assert len(writer.files) == 2
    with AuditReader(writer.files[1]) as reader:
        assert reader.attrs["previous_file"] == writer.files[0].name
        assert reader.attrs["opened_because"] == "daily"


def test_sequence_resumes_from_the_folder(tmp_path: Path) -> None:
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        assert writer.last_seq == 0
        writer.write([make_record(1), make_record(2)])
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        assert writer.last_seq == 2


def test_sequence_resumes_past_a_truncated_newer_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A newer file cut short (a disk that filled, a copy that broke) is skipped, not retried for minutes."""
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(1), make_record(2)])
        good = writer.path
    assert good is not None
    stem = good.stem
    newer = good.with_name(stem[:-1] + chr(ord(stem[-1]) + 1) + good.suffix) if stem[-1].isdigit() and stem[-1] != "9" \
        else good.with_name("z" + good.name)
    data = good.read_bytes()
    newer.write_bytes(data[: len(data) // 2])
    assert log_files(tmp_path)[-1] == newer  # the damaged file is the newest one
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        assert writer.last_seq == 2
    # Recognised from its superblock before HDF5 opens it (no SWMR retry loop on a damaged file).
    assert any("truncated" in r.getMessage() and newer.name in r.getMessage() for r in caplog.records)


def test_one_writer_per_folder(tmp_path: Path) -> None:
    with AuditWriter(tmp_path, SPEC) as _, pytest.raises(AuditLogError, match="in use by pid"):
        AuditWriter(tmp_path, SPEC)
    AuditWriter(tmp_path, SPEC).close()  # released on close


def test_low_disk_space_refuses_to_write(tmp_path: Path) -> None:
    with AuditWriter(tmp_path, LogSpec(min_free_mb=1e12), embedding_dim=16) as writer:
        with pytest.raises(AuditLogError, match="free disk space"):
            writer.write([make_record(1)])
        assert writer.path is None


_FULL_DISK_WRITER = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from inspector.audit.h5log import AuditLogError, AuditWriter
    from inspector.config.log import LogSpec
    from tests.audit.conftest import make_record

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    with AuditWriter(Path(sys.argv[1]), LogSpec(heatmap_px=8, fsync_interval_s=0, min_free_mb=0),
                     embedding_dim=16) as writer:
        writer.write([make_record(1)])
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))  # every file write fails (EFBIG)
        failures = 0
        for seq in range(2, 6):  # the first fails in the open file, the next ones when opening a new one
            try:
                writer.write([make_record(seq)])
            except AuditLogError as exc:
                failures += 1
                print(exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)  # space is back
        writer.write([make_record(6)])
    print("failures", failures)
""")


@pytest.mark.integration
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_a_folder_that_stops_taking_writes_neither_crashes_nor_corrupts_the_log(tmp_path: Path) -> None:
    """Disk full mid-run: writes fail with AuditLogError and resume in a new file once space is back.

    HDF5 used to crash the process (segfault) when SWMR started on a new file after a failed write,
    and its flush at exit wrote a record of zeros into the failed file (benchmarks/faults.py, disk).
    """
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITER, str(tmp_path)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "failures 4" in proc.stdout
    assert "cannot write (File too large)" in proc.stdout  # the probe refuses before HDF5 is involved
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:  # the failed file is sealed like a crashed one
        assert len(writer.recovered) == 1 and writer.last_seq == 6
    seqs = []
    for path in log_files(tmp_path):
        with AuditReader(path) as reader:
            seqs += [r["seq"] for r in reader.records()]
    assert sorted(seqs) == [1, 6]  # what was published stays, nothing half-written appears


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditLogError, match="writable folder"):
        AuditWriter(blocker / "logs", SPEC)


def test_retention_deletes_old_closed_files(tmp_path: Path) -> None:
    import os

    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(1)])
    old = writer.files[0]
    os.utime(old, (0, 0))
    with AuditWriter(tmp_path, LogSpec(keep_days=30), embedding_dim=16):
        pass
    assert not old.exists()


def test_summary_and_reader_errors(tmp_path: Path) -> None:
    with AuditWriter(tmp_path, SPEC, embedding_dim=16) as writer:
        writer.write([make_record(1), make_record(2, verdict="NG"), make_record(4, fault="bad frame")])
    s = summarize(tmp_path)
    assert (s.records, s.ok, s.ng, s.faults, s.missing_seqs) == (3, 1, 1, 1, 1)
    assert s.yield_pct == pytest.approx(50.0)
    assert s.defects == {"scratch": 1} and s.lines == {"ring": 3}
    assert s.latency_ms["max"] == pytest.approx(34.0)
    with pytest.raises(AuditReadError, match="no such"):
        AuditReader(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(AuditReadError, match="not an inspector audit log"):
        AuditReader(other)
    assert str(other) in summarize(tmp_path).unreadable
