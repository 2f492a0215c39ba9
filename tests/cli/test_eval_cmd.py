"""`inspector eval --shots N` uses every requested shot (N above fewshot.max_shots) or refuses; never truncates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from inspector.cli import main
from inspector.cli.eval_cmd import EnginePredictor, build_line
from inspector.config.line import MAX_SHOTS
from tests.conftest import tiny_line
from tests.evaluation.test_datasets import make_fake_mvtec


def _args(**kw) -> argparse.Namespace:
    base = {"category": "bottle", "shots": 0, "model": "inspector-tiny-vit", "pretrained": "random", "device": "cpu",
            "image_size": 64, "precision": "fp32", "layers": None, "object_name": None, "config": None, "line": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(("shots", "cap"), [(0, 16), (4, 16), (16, 16), (17, 17), (40, 40)])
def test_eval_line_holds_every_requested_shot(shots: int, cap: int) -> None:
    assert build_line(_args(shots=shots)).fewshot.max_shots == cap


def test_eval_line_from_a_station_config_raises_its_cap(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"station": "s", "lines": [tiny_line(fewshot={"max_shots": 8, "seed": 3})]}))
    line = build_line(_args(shots=20, config=path))
    assert line.fewshot.max_shots == 20 and line.fewshot.seed == 3  # the rest of the line's few-shot spec kept
    assert build_line(_args(shots=2, config=path)).fewshot.max_shots == 8


def test_shots_above_the_config_limit_are_refused(tmp_path: Path, capsys) -> None:
    code = main(["eval", str(tmp_path), "--category", "bottle", "--shots", str(MAX_SHOTS + 1),
                 "--model", "inspector-tiny-vit", "--pretrained", "random", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--shots {MAX_SHOTS + 1}" in err and str(MAX_SHOTS) in err
    assert not (tmp_path / "o").exists()


def test_predictor_refuses_to_truncate() -> None:
    from inspector.config import LineConfig

    calls: list[int] = []
    line = LineConfig(**tiny_line(fewshot={"max_shots": 2}))
    engine = SimpleNamespace(line=line, fit=lambda good: calls.append(len(good)))
    predictor = EnginePredictor(engine)
    images = [np.full((64, 64, 3), 100 + i, np.uint8) for i in range(3)]
    with pytest.raises(ValueError, match="max_shots is 2"):
        predictor.fit(images)
    predictor.fit(images[:2])
    assert calls == [2]  # refused before fitting; within the cap the engine fits


@pytest.mark.slow
def test_eval_uses_all_shots_above_the_default_cap(tmp_path: Path, monkeypatch) -> None:
    from inspector.engine import Inspector

    fitted: list[int] = []
    original = Inspector.fit

    def spy(self, good, defects=None):
        report = original(self, good, defects)
        fitted.append(report.shots)
        return report

    monkeypatch.setattr(Inspector, "fit", spy)
    root = make_fake_mvtec(tmp_path / "mvtec", "bottle", n_train=20)
    out = tmp_path / "eval"
    code = main(["eval", str(root), "--category", "bottle", "--shots", "18", "--model", "inspector-tiny-vit",
                 "--pretrained", "random", "--image-size", "64", "--layers", "1", "2", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["shots"] == 18 and len(metrics["shot_paths"]) == 18
    assert fitted == [18]  # the engine fitted on all 18, not the default max_shots of 16
