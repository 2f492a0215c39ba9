"""benchmarks/startup.py: process start -> first inspected part, cold then warm, on the tiny station."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.station.conftest import write_handle_station

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_startup_script_times_cold_and_warm_starts(tmp_path: Path) -> None:
    config = write_handle_station(tmp_path, tmp_path / "unused-cache")
    out = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "startup.py"), "--config", str(config),
                           "--line", "ring", "--warm", "1", "--json", str(out)],
                          cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert len(data["cold"]) == 1 and len(data["warm"]) == 1
    for marks in data["cold"] + data["warm"]:
        order = [marks[k] for k in ("interpreter", "imports", "line_loaded", "station_started", "first_part")]
        assert order == sorted(order) and order[0] > 0
    assert not (tmp_path / "unused-cache").exists()  # the script's own cache folder, never the line's
