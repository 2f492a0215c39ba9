"""Run a reliability script (benchmarks/) in its own process, as CI and people do, and read its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SMALL_MODEL = "inspector-tiny-vit"


def run_script(name: str, out_dir: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, Any]:
    """``benchmarks/<name>.py ... --out-dir out_dir``: the finished process and its ``<name>.json``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args, "--out-dir", str(out_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    path = out_dir / f"{name}.json"
    assert path.is_file(), f"{name}.py wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc, json.loads(path.read_text(encoding="utf-8"))
