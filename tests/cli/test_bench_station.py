"""`inspector bench --station`: the real station runs and its backbone stage is compared with the bare pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.cli import main
from tests.station.conftest import write_handle_station


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_bench_station_reports_the_ratio(tmp_path: Path, backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    config = write_handle_station(tmp_path, tmp_path / "cache")
    out = tmp_path / "station.json"
    code = main(["bench", "--station", "--config", str(config), "--line", "ring", "--parts", "4", "--warmup", "1",
                 "--rate", "50", "--backend", backend, "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["backend"] == backend and data["parts"] == 4 and data["faults"] == 0
    assert data["station_backbone_ratio"] == pytest.approx(data["station_backbone_p50_ms"] / data["backbone_p50_ms"])
    assert data["backbone_p50_ms"] > 0 and data["parts_per_s"] > 0
    assert not (tmp_path / "logs").exists()  # the bench logs into its own folder, never the line's log


def test_bench_station_unknown_line_is_a_clear_error(tmp_path: Path, capsys) -> None:
    config = write_handle_station(tmp_path, tmp_path / "cache")
    assert main(["bench", "--station", "--config", str(config), "--line", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
