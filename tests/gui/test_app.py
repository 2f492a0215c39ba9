"""`inspector gui` as a service manager runs it: SIGTERM stops the station, seals the log and exits within 15 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader
from tests.gui.conftest import REPO

CLI = "import sys; from inspector.cli import main; sys.exit(main(sys.argv[1:]))"


def _logged(logs: Path) -> int:
    """Records in the open log (0 while it does not exist or is being created)."""
    try:
        (path,) = log_files(logs)
        with AuditReader(path) as reader:
            return len(reader)
    except Exception:  # not there yet, or mid-creation: ask again
        return 0


@pytest.mark.slow
def test_sigterm_stops_the_station_and_seals_the_log(station_config: Path, tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "gui", "--config", str(station_config),
                             "--pin-file", str(tmp_path / "pin.json")],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    logs = station_config.parent / "logs"
    try:
        deadline = time.monotonic() + 120
        while _logged(logs) < 3:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the GUI's station logged no 3 parts in 120 s"
            time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, err[-2000:]
    assert took < 15, f"SIGTERM to exit took {took:.1f} s"
    assert "SIGTERM: stopping the station" in err and "station stopped, audit log closed" in err
    (path,) = log_files(logs)
    with AuditReader(path) as reader:
        assert not reader.is_open_for_write  # sealed: closed by the writer, no crash recovery needed
        n = len(reader)
    with h5py.File(path, "r") as f:
        kinds = [bytes(k).decode() for k in f["events"]["kind"]]
    assert n >= 3 and kinds[-1] == "station_stop"
