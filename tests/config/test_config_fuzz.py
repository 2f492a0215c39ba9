"""Config loader under bad input: a table of invalid configs (each names the file and the key path), a
hypothesis fuzzer mutating a valid config, and the atomic write-back under failure."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector import config as config_module
from inspector.config import load_station_config, update_line_in_file
from inspector.errors import ConfigError
from tests.conftest import tiny_line

VALID = {"station": "hall3", "lines": [tiny_line()], "plc": {"protocol": "ascii"}}


def _set(path: str, value: Any) -> Any:
    """A mutation setting dotted ``path`` (``lines.0.model.device``) of the config dict."""
    def apply(data: dict) -> None:
        *parents, leaf = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return apply


def _drop(path: str) -> Any:
    def apply(data: dict) -> None:
        *parents, leaf = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[leaf]
    return apply


# (id, mutation of a valid config dict OR the raw YAML text, key path named, fragment of the message)
BAD_CONFIGS = [
    ("unknown key", _set("lines.0.model.pretraind", "x"), "lines[0].model.pretraind", "unknown key"),
    ("unknown top-level key", _set("cameras", {}), "cameras", "unknown key"),
    ("missing model", _drop("lines.0.model"), "lines[0].model", "required"),
    ("missing pretrained", _drop("lines.0.model.pretrained"), "lines[0].model.pretrained", "required"),
    ("empty model name", _set("lines.0.model.name", ""), "lines[0].model.name", "at least 1"),
    ("wrong type", _set("lines.0.fewshot.max_shots", "many"), "lines[0].fewshot.max_shots", "integer"),
    ("threshold as text", _set("lines.0.decision.threshold", "high"), "lines[0].decision.threshold", "number"),
    ("NaN threshold", _set("lines.0.decision.threshold", float("nan")), "lines[0].decision.threshold", "finite"),
    ("inf head weight", _set("lines.0.heads.zero_shot", float("inf")), "lines[0].heads.zero_shot", "finite"),
    ("out-of-range false-reject target", _set("lines.0.decision.calibration.target_false_reject", 0.9),
     "lines[0].decision.calibration.target_false_reject", "less than"),
    ("negative head weight", _set("lines.0.heads.probe", -1), "lines[0].heads.probe", "greater"),
    ("ROI too small", _set("lines.0.roi", [0, 0, 4, 4]), "lines[0].roi", "width >= 8"),
    ("ROI wrong length", _set("lines.0.roi", [0, 0, 64]), "lines[0].roi[3]", "too few items"),
    ("ROI negative", _set("lines.0.roi", [-5, 0, 64, 64]), "lines[0].roi", "x >= 0"),
    ("empty normal prompts", _set("lines.0.prompts.normal_states", []), "lines[0].prompts.normal_states",
     "at least 1"),
    ("empty anomalous prompts", _set("lines.0.prompts.anomalous_states", []), "lines[0].prompts.anomalous_states",
     "at least 1"),
    ("empty template list", _set("lines.0.prompts.templates", []), "lines[0].prompts.templates", "null"),
    ("prompt without placeholder", _set("lines.0.prompts.normal_states", ["flawless"]),
     "lines[0].prompts.normal_states", "placeholder"),
    ("reserved defect name", _set("lines.0.prompts.defects.OK", "fine"), "lines[0].prompts.defects", "reserved"),
    ("defect without description", _set("lines.0.prompts.defects.dent", "  "), "lines[0].prompts.defects",
     "description"),
    ("blank object name", _set("lines.0.object_name", "   "), "lines[0].object_name", "blank"),
    ("bad sha256", _set("lines.0.model.sha256", "abc123"), "lines[0].model.sha256", "pattern"),
    ("bad device", _set("lines.0.model.device", "gpu0"), "lines[0].model.device", "pattern"),
    ("bad precision", _set("lines.0.model.precision", "fp8"), "lines[0].model.precision", "fp32"),
    ("int8 on torch", _set("lines.0.model.precision", "int8"), "lines[0].model", "OpenVINO backend"),
    ("image size too large", _set("lines.0.model.image_size", 100_000), "lines[0].model.image_size", "less than"),
    ("negative trigger rate", _set("trigger.rate_hz", -5), "trigger.rate_hz", "greater than"),
    ("negative defect rate", _set("camera.synthetic.defect_rate", -0.1), "camera.synthetic.defect_rate", "greater"),
    ("bad PLC baudrate", _set("plc.baudrate", 0), "plc.baudrate", "greater"),
    ("bad PLC protocol", _set("plc.protocol", "profinet"), "plc.protocol", "ascii"),
    ("duplicate line names", lambda d: d["lines"].append(tiny_line()), "(top level)", "unique"),
    ("unknown default line", _set("default_line", "nope"), "(top level)", "default_line"),
    ("no lines", _set("lines", []), "lines", "at least 1"),
    ("line not a mapping", _set("lines", ["ring"]), "lines[0]", "dictionary"),
    ("bad line name", _set("lines.0.name", "bad name!"), "lines[0].name", "pattern"),
    ("training lr negative", _set("lines.0.training.lr", -0.1), "lines[0].training.lr", "greater"),
    ("infinite free-space floor", _set("log.min_free_mb", float("inf")), "log.min_free_mb", "finite"),
    ("NaN PLC silence", _set("plc.plc_silence_s", float("nan")), "plc.plc_silence_s", "finite"),
    # Raw YAML text: the key path is the line / column (or the duplicated key's path).
    ("duplicate defect names", "lines:\n- name: ring\n  object_name: ring\n  model: {name: m, pretrained: random}\n"
     "  prompts:\n    defects:\n      dent: a dent\n      dent: another dent\n", "lines[0].prompts.defects.dent",
     "duplicate key"),
    ("duplicate threshold", "lines:\n- name: ring\n  object_name: ring\n  model: {name: m, pretrained: random}\n"
     "  decision:\n    threshold: 1.0\n    threshold: 9.0\n", "lines[0].decision.threshold", "duplicate key"),
    ("YAML syntax error", "lines:\n  - name: a\n   bad: [\n", "line 3, column 4", "not valid YAML"),
    ("tab indentation", "lines:\n\t- name: ring\n", "line 2, column 1", "not valid YAML"),
    ("non-mapping top level", "- just\n- a list\n", "(top level)", "mapping"),
    ("scalar top level", "42\n", "(top level)", "mapping"),
    ("empty file", "", "(top level)", "mapping"),
    ("absurd nesting", "lines: " + "[" * 3000 + "]" * 3000 + "\n", "(file)", "nested too deeply"),
]


def test_the_table_covers_at_least_twenty_kinds() -> None:
    assert len({case[0] for case in BAD_CONFIGS}) >= 20


@pytest.mark.parametrize(("kind", "mutation", "key", "fragment"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_invalid_config_names_file_and_key_path(tmp_path: Path, kind: str, mutation: Any, key: str,
                                                fragment: str) -> None:
    path = tmp_path / "hall3.yaml"
    if isinstance(mutation, str):
        path.write_text(mutation, encoding="utf-8")
    else:
        data = copy.deepcopy(VALID)
        mutation(data)
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_station_config(path)
    problems = dict(info.value.problems)
    assert key in problems, f"{kind}: {problems}"
    assert fragment.lower() in problems[key].lower(), f"{kind}: {problems[key]}"
    text = str(info.value)
    assert str(path) in text and "nothing was applied" in text
    assert len(info.value.problems) <= 3, f"{kind}: one mistake, one or two messages, not noise: {problems}"


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_station_config(binary)
    assert str(binary) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_station_config(tmp_path)  # a folder


# --- hypothesis: mutate a valid config dict --------------------------------------------------------

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=12),
                   st.lists(st.integers(-5, 5), max_size=5), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                              max_size=2))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


FULL = copy.deepcopy(VALID)
FULL["lines"][0].update(roi=[0, 0, 64, 64], decision={"threshold": 1.0, "calibration": {"method": "f1"}},
                        heads={"zero_shot": 1.0}, fewshot={"folder": "fs", "max_shots": 4})
FULL.update(camera={"kind": "synthetic", "synthetic": {"size": [64, 64]}}, trigger={"rate_hz": 2.0},
            log={"folder": "logs", "max_mb": 10})
PATHS = _paths(FULL)


def _mutated(data: dict, edits: list[tuple[int, str, Any]]) -> dict:
    data = copy.deepcopy(data)
    for index, op, value in edits:
        path = PATHS[index % len(PATHS)]
        if not path:
            continue
        parent: Any = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            leaf = path[-1]
            if op == "set":
                parent[leaf] = value
            elif op == "drop":
                del parent[leaf]
            elif op == "rename" and isinstance(parent, dict):
                parent[f"{leaf}_x"] = parent.pop(leaf)
            elif op == "wrap":
                parent[leaf] = [parent[leaf]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    return data


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["set", "drop", "rename", "wrap"]), LEAVES),
                      min_size=1, max_size=4))
def test_fuzz_mutated_config_loads_or_raises_config_error(edits: list[tuple[int, str, Any]]) -> None:
    """Any mutation either validates or raises ConfigError with key paths; never KeyError / TypeError / ..."""
    data = _mutated(FULL, edits)
    try:
        config_module.parse_station_config(data, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(isinstance(k, str) and k and isinstance(w, str) and w for k, w in exc.problems)
        assert str(exc).startswith("fuzz.yaml: invalid station config")


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), st.builds(lambda s, i, t: s[:i] + t + s[i:],
                                                       st.just(yaml.safe_dump(FULL)), st.integers(0, 2000),
                                                       st.text(alphabet=":-[]{}&*!|>'\"%@`#,\t\n ", max_size=8))))
def test_fuzz_yaml_text_loads_or_raises_config_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_station_config(path)
    except ConfigError as exc:
        assert exc.problems and str(path) in str(exc)


# --- write-back: atomic, validated, permissions kept ----------------------------------------------


def _station_file(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text("# hall 3\n" + yaml.safe_dump({"lines": [tiny_line()]}), encoding="utf-8")
    return path


def test_failure_mid_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _station_file(tmp_path)
    before = path.read_text()
    real_fsync = os.fsync

    def crash(fd: int) -> None:  # the new content is half on its way to the disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space"):
        update_line_in_file(path, "ring", {"decision.threshold": 2.5})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.yaml"]  # no temp file left behind

    def replace_dies(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # killed between writing the temp file and the rename

    monkeypatch.setattr(os, "replace", replace_dies)
    with pytest.raises(KeyboardInterrupt):
        update_line_in_file(path, "ring", {"decision.threshold": 2.5})
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["station.yaml"]


def test_write_back_keeps_permissions(tmp_path: Path) -> None:
    path = _station_file(tmp_path)
    path.chmod(0o640)
    update_line_in_file(path, "ring", {"decision.threshold": 1.5})
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600: a service account may read the config
    assert load_station_config(path).line().decision.threshold == 1.5


@pytest.mark.parametrize(("text", "updates", "fragment"), [
    ("lines: 5\n", {"decision.threshold": 1.0}, "list of lines"),
    ("- a\n- b\n", {"decision.threshold": 1.0}, "list of lines"),
    ("lines:\n- name: ring\n  object_name: r\n  model: {name: m, pretrained: random}\n  decision: 7\n",
     {"decision.threshold": 1.0}, "not a mapping"),
    ("lines: [\n", {"decision.threshold": 1.0}, "not valid YAML"),
    ("lines:\n- name: ring\n  object_name: r\n  model: {name: m, pretrained: random}\n",
     {"decision.threshold": float("nan")}, "finite"),
])
def test_bad_write_back_is_a_config_error_and_changes_nothing(tmp_path: Path, text: str, updates: dict,
                                                              fragment: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment) as info:
        update_line_in_file(path, "ring", updates)
    assert str(path) in str(info.value)
    assert path.read_text() == text
    with pytest.raises(ConfigError, match="no such file"):
        update_line_in_file(tmp_path / "absent.yaml", "ring", updates)
