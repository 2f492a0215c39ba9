"""kill -9 of a running station (`inspector run` subprocess) while it logs: every published verdict survives.

The station prints one line per part once the part is published (written and flushed to the audit
log; observers only hear of a part then). After SIGKILL the log must hold every printed part.
"""

from __future__ import annotations

import signal
from pathlib import Path

import h5py
import pytest
import yaml

from inspector.audit.h5log import AuditWriter, log_files
from inspector.audit.reader import AuditReader
from inspector.station.process import StationProcess
from tests.station.conftest import tiny_station_dict

pytestmark = pytest.mark.integration


def test_kill_9_of_a_logging_station(tmp_path: Path, text_cache_dir: Path) -> None:
    config = tmp_path / "station.yaml"
    data = tiny_station_dict(tmp_path, text_cache_dir, trigger={"mode": "free_run", "rate_hz": 50},
                             log={"save_full_frames": "all"})
    config.write_text(yaml.safe_dump(data))
    logs = tmp_path / "logs"
    station = StationProcess(config)
    try:
        station.wait(lambda: len(station.published) >= 12, what="12 published parts")
    finally:
        code = station.finish(signal.SIGKILL)
    assert code == -signal.SIGKILL, station.stderr_text[-2000:]
    published = station.published

    (path,) = log_files(logs)
    with AuditReader(path) as reader:  # opens although the writer never closed it
        logged = {r["seq"]: (r["part_id"], r["verdict"]) for r in reader.records()}
        assert reader.is_open_for_write
    missing = sorted(set(published) - set(logged))
    assert not missing, f"published but not in the log: {missing}"
    assert all(logged[s] == published[s] for s in published)
    with AuditWriter(logs, embedding_dim=64) as writer:  # a restart seals the file and continues the sequence
        assert writer.recovered == [path] and writer.last_seq >= max(published)
    with h5py.File(path, "r") as f:
        assert f["inspections"].shape[0] == len(logged)
        assert f["frames"].shape[0] > 0


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_ctrl_c_stops_cleanly(tmp_path: Path, text_cache_dir: Path, sig: signal.Signals) -> None:
    """Ctrl-C (or a service manager's SIGTERM): queued parts answered, log closed and sealed, exit 0."""
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(tiny_station_dict(tmp_path, text_cache_dir,
                                                       trigger={"mode": "free_run", "rate_hz": 50})))
    station = StationProcess(config)
    try:
        station.wait(lambda: any(seq >= 3 for seq in station.published), what="3 published parts")
    finally:
        code = station.finish(sig)
    err = station.stderr_text
    assert code == 0, err[-2000:]
    assert "stopping: answering queued parts and closing the log" in err
    (path,) = log_files(tmp_path / "logs")
    with h5py.File(path, "r") as f:  # closed cleanly: plain HDF5, every printed part inside
        n = f["inspections"].shape[0]
        kinds = [bytes(k).decode() for k in f["events"]["kind"]]
    assert n >= 3 and kinds[-1] == "station_stop"
    assert f"audit log: {n} records" in err
