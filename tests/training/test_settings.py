"""The training section of a line config: defaults, validation with key paths, leaf-module imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from inspector.config import parse_station_config
from inspector.config.training import TrainingSpec
from inspector.errors import ConfigError
from tests.conftest import tiny_line


def test_defaults_train_every_head_with_a_gate() -> None:
    spec = TrainingSpec()
    assert spec.heads == ("patch", "clip_adapter", "tip_adapter", "coop")
    assert spec.accelerator == "auto" and spec.strategy == "auto" and spec.precision == "auto"
    assert spec.gate.auroc_tolerance == 0.0 and spec.auto_promote
    assert spec.augment.views >= 1 and spec.synthesis.mode == "auto"


def test_a_line_trains_with_an_empty_section() -> None:
    cfg = parse_station_config({"lines": [tiny_line(training={})]})
    assert cfg.lines[0].training == TrainingSpec()


@pytest.mark.parametrize(("training", "key", "words"), [
    ({"augment": {"hflip": 1.5}}, "lines[0].training.augment.hflip", "less than or equal to 1"),
    ({"augment": {"blur": {"sigma": [2.0, 1.0]}}}, "lines[0].training.augment.blur.sigma", "low <= high"),
    ({"heads": ["patch", "patch"]}, "lines[0].training.heads", "repeat"),
    ({"heads": ["nope"]}, "lines[0].training.heads[0]", "patch"),
    ({"lr": float("nan")}, "lines[0].training.lr", "finite"),
    ({"validation": {"folds": 1}}, "lines[0].training.validation.folds", "greater than or equal to 2"),
    ({"synthesis": {"area": [0.1, 0.5]}}, "lines[0].training.synthesis.area", "0.25"),
    ({"patch": {"weight": 0}, "heads": ["patch"]}, "lines[0].training", "weight 0"),
    ({"epochs": 3}, "lines[0].training.epochs", "unknown key"),
])
def test_bad_settings_name_the_key(training: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_station_config({"lines": [tiny_line(training=training)]})
    problems = dict(info.value.problems)
    assert key in problems, problems
    assert words in problems[key]


def test_settings_module_is_a_leaf() -> None:
    """The training section is part of the station config: pydantic, the standard library and the config base only."""
    source = Path(__file__).resolve().parents[2] / "inspector" / "config" / "training.py"
    modules = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            modules.add(module if module.startswith("inspector.") else module.split(".")[0])
    assert modules <= {"__future__", "typing", "pydantic", "inspector.config.base"}, modules
