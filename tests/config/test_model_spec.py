"""model.feature_layers: relative to the depth by default, absolute integers still accepted, clear refusals."""

from __future__ import annotations

import argparse
from pathlib import Path

import open_clip
import pytest
import yaml

from inspector.backbone.dense import resolve_layers
from inspector.config import ModelSpec, load_station_config, parse_station_config
from inspector.config.line import parse_layer
from inspector.errors import ConfigError
from tests.conftest import tiny_line


def _spec(layers) -> ModelSpec:
    return ModelSpec(name="ViT-B-16", pretrained="random", feature_layers=layers)


def test_default_is_relative() -> None:
    assert ModelSpec(name="ViT-B-16", pretrained="random").feature_layers == (0.5, 0.75)


@pytest.mark.parametrize("layers", [[6, 9], [0.5, 0.75], [-6, -3], [1.0], [0.5, 9, -1], []])
def test_accepted_forms_keep_their_type(layers) -> None:
    spec = _spec(layers)
    assert spec.feature_layers == tuple(layers)
    assert [type(v) for v in spec.feature_layers] == [type(v) for v in layers]  # 1.0 (last block) is not 1
    again = ModelSpec(**spec.model_dump(mode="json"))  # YAML / JSON round trip keeps fractions fractions
    assert again.feature_layers == spec.feature_layers
    assert [type(v) for v in again.feature_layers] == [type(v) for v in layers]


@pytest.mark.parametrize(("layers", "fragment"), [
    ([0.0], "(0, 1]"), ([1.5], "(0, 1]"), ([-0.5], "(0, 1]"), ([6.0], "absolute 0-based block"),
    ([True], "integer"), (["6"], "integer"),
])
def test_bad_layers_refused_with_the_key(tmp_path: Path, layers, fragment: str) -> None:
    line = tiny_line()
    line["model"]["feature_layers"] = layers
    with pytest.raises(ConfigError) as excinfo:
        parse_station_config({"lines": [line]}, tmp_path / "s.yaml")
    problems = dict(excinfo.value.problems)
    assert any(key.startswith("lines[0].model.feature_layers") for key in problems), problems
    assert any(fragment in what for what in problems.values()), problems


def test_shipped_configs_resolve_to_the_same_blocks(repo_root: Path) -> None:
    """Every station_configs/*.yaml line keeps the blocks it had when feature_layers were absolute."""
    for path in sorted((repo_root / "station_configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for raw_line, line in zip(raw["lines"], load_station_config(path).lines, strict=True):
            depth = open_clip.get_model_config(line.model.name)["vision_cfg"]["layers"]
            before = tuple(sorted(set(raw_line["model"].get("feature_layers", [6, 9]))))
            assert resolve_layers(line.model.feature_layers, depth, line.model.name) == before, path


def test_command_line_layer_values() -> None:
    assert [parse_layer(v) for v in ("6", "-1", "0.5", "1.0")] == [6, -1, 0.5, 1.0]
    assert isinstance(parse_layer("1.0"), float) and isinstance(parse_layer("1"), int)
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=parse_layer, nargs="+")
    with pytest.raises(SystemExit):
        parser.parse_args(["--layers", "six"])
