"""CLI paths that need no model start without importing torch (seconds of start-up on a station PC)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import sys\nfrom inspector.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "heavy = sorted(m for m in ('torch', 'open_clip', 'openvino', 'cv2') if m in sys.modules)\n"
         "print('HEAVY', ','.join(heavy))\n")


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["export", "--help"], ["history", "--help"],
                                  ["config", "check", "station_configs/demo.yaml"]])
def test_no_torch_on_paths_that_need_no_model(argv: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY")]
    assert line == ["HEAVY "], (line, proc.stderr[-2000:])
