from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspector.config import config_hash, load_station_config, parse_station_config, update_line_in_file
from inspector.errors import ConfigError
from tests.conftest import tiny_line


def write(tmp_path: Path, data: object, name: str = "station.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(excinfo.value.problems)


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_station_config(write(tmp_path, {"lines": [tiny_line()]}))
    line = cfg.line()
    assert line.name == "ring"
    assert line.decision.calibration.method == "false_reject"
    assert line.prompts.defects["scratch"] == "a scratch on the surface"
    assert cfg.source == (tmp_path / "station.yaml").resolve()
    assert cfg.resolve("fewshot") == (tmp_path / "fewshot").resolve()


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [
        (lambda d: d["lines"][0]["model"].pop("pretrained"), "lines[0].model.pretrained", "required"),
        (lambda d: d["lines"][0]["model"].update(pretraind="x"), "lines[0].model.pretraind", "unknown key"),
        (lambda d: d["lines"][0]["model"].update(device="gpu0"), "lines[0].model.device", "pattern"),
        (lambda d: d["lines"][0]["model"].update(sha256="abc"), "lines[0].model.sha256", "pattern"),
        (lambda d: d["lines"][0].update(roi=[0, 0, 4, 4]), "lines[0].roi", "width >= 8"),
        (lambda d: d["lines"][0].update(name="bad name!"), "lines[0].name", "pattern"),
        (lambda d: d["lines"][0]["prompts"]["defects"].update(OK="x"), "lines[0].prompts.defects", "reserved"),
        (lambda d: d["lines"][0]["prompts"].update(normal_states=["flawless"]), "lines[0].prompts.normal_states",
         "placeholder"),
        (lambda d: d["lines"][0].update(decision={"calibration": {"target_false_reject": 0.9}}),
         "lines[0].decision.calibration.target_false_reject", "less than"),
        (lambda d: d["lines"][0].update(heads={"zero_shot": -1}), "lines[0].heads.zero_shot", "greater"),
        (lambda d: d.update(lines=[]), "lines", "at least 1"),
        (lambda d: d.update(default_line="nope"), "(top level)", "default_line"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, mutate, key: str, fragment: str) -> None:
    data = {"lines": [tiny_line()]}
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as excinfo:
        load_station_config(path)
    found = problems(excinfo)
    assert key in found, found
    assert fragment.lower() in found[key].lower()
    assert str(path) in str(excinfo.value)
    assert "nothing was applied" in str(excinfo.value)


def test_duplicate_line_names_rejected() -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_station_config({"lines": [tiny_line(), tiny_line()]})


def test_malformed_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "lines:\n  - name: a\n   bad: [\n")
    with pytest.raises(ConfigError) as excinfo:
        load_station_config(path)
    assert "line " in excinfo.value.problems[0][0]


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_station_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_station_config(write(tmp_path, "- just\n- a list\n"))


def test_update_keeps_comments_and_validates(tmp_path: Path) -> None:
    text = "# station of hall 3\n" + yaml.safe_dump({"lines": [tiny_line()]})
    path = write(tmp_path, text)
    cfg = update_line_in_file(path, "ring", {"decision.threshold": 1.25, "decision.calibration.record": {"n": 3}})
    assert cfg.line().decision.threshold == 1.25
    assert path.read_text().startswith("# station of hall 3")
    assert load_station_config(path).line().decision.calibration.record == {"n": 3}
    before = path.read_text()
    with pytest.raises(ConfigError):
        update_line_in_file(path, "ring", {"decision.threshold": "high"})
    assert path.read_text() == before  # nothing half-applied
    with pytest.raises(ConfigError, match="no line named"):
        update_line_in_file(path, "other", {"decision.threshold": 1.0})


def test_config_hash_changes_with_content() -> None:
    a = parse_station_config({"lines": [tiny_line()]}).line()
    b = parse_station_config({"lines": [tiny_line(object_name="washer")]}).line()
    assert config_hash(a) != config_hash(b)
    assert config_hash(a) == config_hash(parse_station_config({"lines": [tiny_line()]}).line())


def test_shipped_station_configs_are_valid(repo_root: Path) -> None:
    files = sorted((repo_root / "station_configs").glob("*.yaml"))
    assert files, "station_configs/ must hold at least the demo line"
    for path in files:
        load_station_config(path)


def test_update_changes_only_the_changed_values(tmp_path: Path) -> None:
    """Issue #17 item 6: a prompt Apply rewrote the whole demo YAML (null -> blank, flow -> block lists)."""
    import difflib

    demo = Path(__file__).resolve().parents[2] / "station_configs" / "demo.yaml"
    path = tmp_path / "station.yaml"
    original = demo.read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    line = load_station_config(path).line()
    defects = dict(line.prompts.defects)
    defects["dent"] = "a deep dent in the metal surface"
    update_line_in_file(path, line.name, {"object_name": line.object_name,
                                          "prompts.normal_states": list(line.prompts.normal_states),
                                          "prompts.defects": defects})
    changed = [d for d in difflib.unified_diff(original.splitlines(), path.read_text().splitlines(), lineterm="", n=0)
               if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert changed == ['-        dent: "a dent in the metal surface"',
                       '+        dent: "a deep dent in the metal surface"']
    update_line_in_file(path, line.name, {"decision.threshold": 1.25,
                                          "prompts.normal_states": ["flawless {}", "clean {}"]})
    text = path.read_text()
    assert "      threshold: 1.25              # null = calibrated at start from the few-shot set" in text
    assert '      normal_states: ["flawless {}", "clean {}"]' in text
    assert "\n    roi: null  " in text and "\n  - name: demo-ring\n" in text
    assert load_station_config(path).line().decision.threshold == 1.25
