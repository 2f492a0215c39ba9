"""`inspector cameras [test]` through the real parser, on the GenTL simulator shipped with genicam."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from inspector.cli import main
from tests.conftest import tiny_line


def sim_station(tmp_path: Path, **genicam: object) -> Path:
    camera = {"kind": "genicam", "fps": 40, "grab_timeout_s": 1.0,
              "genicam": {"cti": ["genicam-simulator"], "serial": "1", "roi": [0, 0, 256, 200]} | genicam}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"station": "t", "lines": [tiny_line()], "camera": camera}), encoding="utf-8")
    return path


def test_cameras_lists_the_simulators_cameras(capsys) -> None:
    assert main(["cameras", "--json", "--no-opencv"]) == 0
    out = json.loads(capsys.readouterr().out)
    sims = [c for c in out["cameras"] if c["producer"].endswith("viky.cti")]
    assert [(c["kind"], c["model"], c["serial"]) for c in sims] == [("genicam", "Viky", s) for s in "012"]
    assert all("simulator" in c["note"] for c in sims)
    assert main(["cameras", "--no-opencv"]) == 0  # the table
    table = capsys.readouterr().out
    assert "Viky" in table and "viky.cti" in table and "camera.genicam.serial" in table


def test_cameras_names_a_broken_producer(tmp_path: Path, capsys) -> None:
    assert main(["cameras", "--json", "--no-opencv", "--no-simulator", "--cti", str(tmp_path / "gone.cti")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cameras"] == [] and "gone.cti does not exist" in out["problems"][0]


def test_cameras_test_grabs_with_the_lines_settings(tmp_path: Path, capsys) -> None:
    assert main(["cameras", "test", "--config", str(sim_station(tmp_path)), "--frames", "6"]) == 0
    out = capsys.readouterr().out
    assert "frames      6 of 6, 256x200 px" in out and "continuous" in out and "result      OK" in out
    assert "AcquisitionFrameRate  40.0" in out
    assert main(["cameras", "test", "--config", str(sim_station(tmp_path)), "--frames", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 3 and report["continuous"] and len(report["frame_ids"]) == 3


def test_cameras_test_refuses_a_setting_the_camera_lacks(tmp_path: Path, capsys) -> None:
    assert main(["cameras", "test", "--config", str(sim_station(tmp_path, gain_db=3)), "--frames", "2"]) == 2
    assert "camera Viky has no feature Gain (camera.genicam.gain_db)" in capsys.readouterr().err
