"""The core's commands run in-process through the real argument parser, on the tiny architecture."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import h5py
import pytest
import yaml

from inspector.cli import main
from inspector.config import load_station_config
from tests.conftest import tiny_line
from tests.evaluation.test_datasets import make_fake_mvtec


@pytest.fixture
def station(tmp_path: Path, repo_root: Path) -> Path:
    """A station config on the tiny model, with a copy of the demo few-shot set."""
    shutil.copytree(repo_root / "fewshot_data" / "demo", tmp_path / "fewshot")
    line = tiny_line(fewshot={"folder": "fewshot", "max_shots": 4})
    path = tmp_path / "station.yaml"
    path.write_text("# hall 3, ring line\n" + yaml.safe_dump({"station": "test", "lines": [line]}))
    return path


def test_predict_prints_verdicts_and_writes_overlays(station: Path, tmp_path: Path, capsys) -> None:
    images = sorted((station.parent / "fewshot" / "test").glob("*.png"))[:3]
    out = tmp_path / "overlays"
    code = main(["predict", *map(str, images), "--config", str(station), "--out", str(out), "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [Path(r["image"]).name for r in rows] == [p.name for p in images]
    assert all(r["verdict"] in ("OK", "NG") and r["untrained_backbone"] for r in rows)
    # The fields scripts parse (issue #12: the new calibration changes values, never the shape).
    fields = {"image", "verdict", "score", "threshold", "defect", "defect_confidence", "regions",
              "untrained_backbone", "timings_ms"}
    assert all(set(r) == fields and (r["score"] >= r["threshold"]) == (r["verdict"] == "NG") for r in rows)
    assert len(list(out.glob("*_overlay.png"))) == 3


def test_predict_reports_a_corrupt_image_by_name(station: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(bad), "--config", str(station), "--no-overlays"]) == 2
    assert "broken.png" in capsys.readouterr().out


def test_calibrate_writes_threshold_and_record_back(station: Path) -> None:
    assert main(["calibrate", "--config", str(station)]) == 0
    assert station.read_text().startswith("# hall 3")  # comments survive
    line = load_station_config(station).line()
    assert line.decision.threshold is not None
    record = line.decision.calibration.record
    assert record["method"] == "false_reject" and record["n_good"] > 0
    assert {r["file"] for r in record["fewshot_images"]} >= {"good/good_000.png"}
    assert "untrained" in record["backbone"]
    # The one live threshold (issue #12): the base heads run it from the next start, with files and hashes.
    from inspector.station.threshold import ThresholdBook

    live = ThresholdBook(station.parent / "logs").live("ring")
    assert live is not None and live.value == line.decision.threshold and live.method == "false_reject"
    assert live.target == line.decision.calibration.target_false_reject and live.version == "base"
    assert len(live.files.get("good/good_000.png", "")) == 16  # sha256 prefix of the file the fit used


def test_config_check(station: Path, tmp_path: Path, capsys) -> None:
    assert main(["config", "check", str(station)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"lines": [tiny_line(modle={})]}))
    assert main(["config", "check", str(bad)]) == 2
    assert "lines[0].modle" in capsys.readouterr().out


def test_missing_weights_exit_fast_with_fix(station: Path, capsys) -> None:
    data = yaml.safe_load(station.read_text())
    data["lines"][0]["model"] = {"name": "ViT-B-16", "pretrained": "laion2b_s34b_b88k"}
    station.write_text(yaml.safe_dump(data))
    t = time.perf_counter()
    assert main(["predict", str(station), "--config", str(station)]) == 2
    assert time.perf_counter() - t < 5.0
    err = capsys.readouterr().err
    assert "ViT-B-16" in err and "laion2b_s34b_b88k" in err and "inspector weights import" in err


@pytest.mark.parametrize("shots", [0, 2])
def test_eval_protocol_end_to_end(tmp_path: Path, shots: int) -> None:
    root = tmp_path / "mvtec"
    make_fake_mvtec(root, "bottle")
    out = tmp_path / "eval"
    code = main(["eval", str(root), "--category", "bottle", "--shots", str(shots), "--seed", "1",
                 "--model", "inspector-tiny-vit", "--pretrained", "random", "--image-size", "64",
                 "--layers", "1", "2", "--out", str(out), "--save-maps"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["shots"] == shots and metrics["untrained_backbone"] is True
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "label", "score"]
    assert {r["label"] for r in rows} == {"0", "1"}
    with h5py.File(out / "maps.h5") as f:
        first = rows[0]["path"]
        assert f[first].dtype.name == "float32"
    assert (out / "report.html").stat().st_size > 1000


def test_bench_json_has_the_promised_keys(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "inspector-tiny-vit", "--image-size", "64", "--shots", "2", "--frames", "3",
                 "--warmup", "1", "--layers", "1", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    for key in ("backbone_p50_ms", "end_to_end_p50_ms", "end_to_end_p99_ms", "ratio_p50", "startup_s",
                "changeover_s", "peak_rss_mb", "device"):
        assert key in data
    assert data["ratio_p50"] > 0 and "backbone" in data["stages_p50_ms"]


@pytest.mark.slow
def test_bench_openvino_reports_the_comparison_with_torch(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "inspector-tiny-vit", "--image-size", "64", "--shots", "2", "--frames", "3",
                 "--warmup", "1", "--layers", "1", "--backend", "openvino", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["backend"] == "openvino"
    assert data["torch_backbone_p50_ms"] > 0 and data["backbone_p50_ms"] > 0
    assert data["speedup_vs_torch_p50"] == pytest.approx(data["torch_backbone_p50_ms"] / data["end_to_end_p50_ms"])
    assert 0.0 <= data["max_score_diff"] <= 1e-3  # the same network: scores agree to float rounding
