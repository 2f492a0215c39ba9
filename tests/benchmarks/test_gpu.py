"""benchmarks/gpu.sh --dry: the GPU table's code path, on the CPU with the tiny model, as CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_sh_dry_writes_the_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--dry", "--out-dir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["meta"]["dry"] is True
    rows = data["rows"]
    assert {(r["precision"], r["compile"], r["batch"]) for r in rows} == {
        ("fp32", "off", 1), ("fp32", "off", 2), ("bf16", "off", 1), ("bf16", "off", 2), ("fp32", "default", 1)}
    assert all(r["p50_ms_per_frame"] > 0 and r["frames_per_s"] > 0 for r in rows)
    assert "DRY RUN" in (tmp_path / "gpu.md").read_text()


def test_gpu_sh_without_a_gpu_says_so(tmp_path: Path) -> None:
    if subprocess.run(["which", "nvidia-smi"], capture_output=True, check=False).returncode == 0:
        pytest.skip("this machine has nvidia-smi")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--out-dir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "--dry" in proc.stderr
