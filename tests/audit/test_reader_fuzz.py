"""The audit reader on damaged files: truncated at many offsets, and with random byte flips.

Each damaged file is read in a child process (tests/audit/fuzz_reader_worker.py) under a timeout, so an
interpreter crash or a hang inside HDF5 fails the test and names the file instead of killing pytest.
The reader's contract: it returns the intact records or raises AuditReadError with a fix-it message.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.audit import recovery
from inspector.audit.h5log import AuditWriter
from inspector.audit.reader import AuditReader, AuditReadError
from inspector.config.log import LogSpec
from tests.audit.conftest import make_record

REPO = Path(__file__).resolve().parents[2]
N_RECORDS = 24


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list]]:
    """A closed audit file with records (some with full frames), events, and its expected records."""
    folder = tmp_path_factory.mktemp("audit-intact")
    with AuditWriter(folder, LogSpec(heatmap_px=8, fsync_interval_s=None), embedding_dim=16) as writer:
        for seq in range(1, N_RECORDS + 1):
            writer.write([make_record(seq, verdict="NG" if seq % 3 == 0 else "OK", with_frame=seq % 4 == 0,
                                      fault="camera lost" if seq == 5 else None)])
            if seq % 8 == 0:
                writer.log_event("threshold", "Dana", "line ring: threshold", 0.5, 0.5 + seq)
        path = writer.path
    assert path is not None
    with AuditReader(path) as reader:
        expected = [[r["seq"], r["part_id"], r["verdict"], r["score"], r["time_ns"]] for r in reader.records()]
    return path, expected


def _run_worker(files: list[Path], timeout_s: float) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.audit.fuzz_reader_worker", *map(str, files)],
                              capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        last = [json.loads(x) for x in lines.splitlines() if x.startswith("{")][-1:]
        pytest.fail(f"reader hung (> {timeout_s} s); last file: {last}")
    results = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    done = [r for r in results if r["outcome"] != "start"]
    if proc.returncode != 0 or len(done) != len(files):
        started = [r["file"] for r in results if r["outcome"] == "start"]
        pytest.fail(f"reader process died (rc {proc.returncode}) on {started[-1:]}; stderr:\n{proc.stderr[-2000:]}")
    return done


def _same(a: list, b: list) -> bool:
    return a[:3] == b[:3] and a[4] == b[4] and (a[3] == b[3] or (math.isnan(a[3]) and math.isnan(b[3])))


def _assert_contract(results: list[dict], expected: list[list], exact: bool) -> dict[str, int]:
    counts = {"ok": 0, "audit_error": 0}
    for r in results:
        assert r["outcome"] != "raw", f"{r['file']}: {r['message']}"
        counts[r["outcome"]] += 1
        if r["outcome"] == "audit_error":
            assert r["file"] in r["message"], r["message"]
            assert "backup" in r["message"] or "not an inspector audit log" in r["message"], r["message"]
        elif exact:  # truncation can only lose data: whatever is read is exactly what was written
            got = r["records"]
            assert len(got) <= len(expected)
            assert all(_same(g, e) for g, e in zip(got, expected)), r["file"]
    return counts


def test_truncated_at_many_offsets(intact: tuple[Path, list[list]], tmp_path: Path) -> None:
    path, expected = intact
    data = path.read_bytes()
    size = len(data)
    offsets = sorted({0, 1, 7, 8, 11, 12, 20, 30, 47, 48, 100, 511, 512, 1024, 2048, size - 1, size - 8}
                     | {int(x) for x in np.linspace(0, size - 1, 90)})
    files = []
    for cut in offsets:
        damaged = tmp_path / f"cut_{cut:08d}.h5"
        damaged.write_bytes(data[:cut])
        files.append(damaged)
    counts = _assert_contract(_run_worker(files, timeout_s=240), expected, exact=True)
    assert counts["audit_error"] >= len(offsets) - 1  # HDF5 refuses a file shorter than its superblock says
    whole = tmp_path / "whole.h5"
    whole.write_bytes(data)
    result = _run_worker([whole], 60)[0]
    assert result["outcome"] == "ok" and all(_same(g, e) for g, e in zip(result["records"], expected, strict=True))


def test_truncation_message_says_what_happened(intact: tuple[Path, list[list]], tmp_path: Path) -> None:
    path, _ = intact
    damaged = tmp_path / "cut.h5"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(AuditReadError, match="truncated") as info:
        AuditReader(damaged)
    assert str(damaged) in str(info.value) and "backup" in str(info.value)


def _flipped_copies(data: bytes, rng: np.random.Generator, n: int, max_flips: int, out: Path) -> list[Path]:
    """``n`` copies of ``data`` with 1..``max_flips`` random bytes XORed, written as ``<out>_NNN.h5``."""
    files = []
    for k in range(n):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, max_flips + 1))):
            damaged[pos] ^= int(rng.integers(1, 256))
        path = out.with_name(f"{out.name}_{k:03d}.h5")
        path.write_bytes(bytes(damaged))
        files.append(path)
    return files


def test_random_byte_flips(intact: tuple[Path, list[list]], tmp_path: Path) -> None:
    """Flipped bytes anywhere (metadata, B-trees, compressed chunks): read or AuditReadError, never a crash."""
    path, expected = intact
    files = _flipped_copies(path.read_bytes(), np.random.default_rng(8), 150, max_flips=8, out=tmp_path / "flip")
    counts = _assert_contract(_run_worker(files, timeout_s=300), expected, exact=False)
    assert counts["ok"] + counts["audit_error"] == len(files)


def test_flips_in_the_superblock_and_header_region(intact: tuple[Path, list[list]], tmp_path: Path) -> None:
    """Every byte of the first 64 (signature, superblock, its checksum) corrupted in turn."""
    path, expected = intact
    data = path.read_bytes()
    files = []
    for pos in range(64):
        damaged = bytearray(data)
        damaged[pos] ^= 0xFF
        out = tmp_path / f"head_{pos:02d}.h5"
        out.write_bytes(bytes(damaged))
        files.append(out)
    _assert_contract(_run_worker(files, timeout_s=180), expected, exact=True)


@pytest.fixture(scope="module")
def unsealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a file still open for writing: what a crash leaves; read in SWMR mode."""
    folder = tmp_path_factory.mktemp("audit-unsealed")
    writer = AuditWriter(folder / "log", LogSpec(heatmap_px=8, fsync_interval_s=None), embedding_dim=16)
    try:
        for seq in range(1, 17):
            writer.write([make_record(seq, with_frame=seq % 4 == 0)])
        assert writer.path is not None
        copy = folder / "crashed.h5"
        copy.write_bytes(writer.path.read_bytes())
    finally:
        writer.close()
    assert recovery.open_flags(copy)  # still marked open for write
    return copy


def test_swmr_reads_give_up_quickly() -> None:
    """Damaged metadata in SWMR mode is retried SWMR_READ_ATTEMPTS times, not HDF5's 100 (minutes)."""
    assert recovery._read_attempts_setter() is not None, "H5Pset_metadata_read_attempts not found"


def test_flips_in_a_file_left_open_by_a_crash(unsealed: Path, tmp_path: Path) -> None:
    """The SWMR path (unsealed files): flipped bytes give records or AuditReadError within seconds, never a hang."""
    data = unsealed.read_bytes()
    files = [unsealed, *_flipped_copies(data, np.random.default_rng(21), 25, max_flips=5, out=tmp_path / "swmr_flip")]
    results = _run_worker(files, timeout_s=150)
    assert results[0]["outcome"] == "ok" and len(results[0]["records"]) == 16
    _assert_contract(results, [], exact=False)
    truncated = tmp_path / "swmr_cut.h5"
    truncated.write_bytes(data[: len(data) - 1000])
    with pytest.raises(AuditReadError, match="truncated"):
        AuditReader(truncated)
