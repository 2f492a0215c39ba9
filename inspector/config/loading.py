"""Station configuration: one YAML file per station / product line, validated with pydantic.

A file is parsed and validated whole before anything uses it, so a bad file is rejected with
the file, the key path (``lines[0].model.pretrained``) and what was expected, and nothing is
half-applied. Calibration results are written back with :func:`update_line_in_file`, which keeps
the engineer's comments (ruamel.yaml round trip) and replaces the file atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inspector.config.station import StationConfig
from inspector.errors import ConfigError
from inspector.files import atomic_write_text


def _key_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see station_configs/demo.yaml for every key)"
    if kind == "missing":
        loc = error.get("loc") or ()
        return "missing value at this position (too few items)" if loc and isinstance(loc[-1], int) \
            else "required key is missing"
    msg = error.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if "input" not in error or kind == "model_type":
        return msg
    got = repr(error["input"])
    return f"{msg} (got {got if len(got) <= _GOT_MAX else got[:_GOT_MAX - 3] + '...'})"


_GOT_MAX = 120  # the offending value is quoted in the message, cut to this many characters


def parse_station_config(data: Any, source: str | Path = "<memory>") -> StationConfig:
    """Validate already-parsed YAML data; raise ConfigError naming every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(str(source), [("(top level)", "expected a mapping with a 'lines' list")])
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            errors.append((loc, err))
        problems = []
        for loc, err in errors:
            # pydantic adds "lines: should have at least 1 item" when an item failed: the item's error says it all.
            if err.get("type") == "too_short" and any(len(o) > len(loc) and o[:len(loc)] == loc for o, _ in errors):
                continue
            problems.append((_key_path(loc), _describe(err)))
        raise ConfigError(str(source), problems) from None
    if isinstance(source, Path):
        config = config.model_copy(update={"source": source.resolve()})
    return config


def load_station_config(path: str | Path) -> StationConfig:
    """Read and validate a station YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [("(file)", "no such file; list station_configs/ for the lines")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc}")]) from None
    return parse_station_config(_parse_yaml(text, path), path)


def _parse_yaml(text: str, path: Path) -> Any:
    """YAML text -> data; syntax errors, duplicate keys and absurd nesting become ConfigError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicates = _duplicate_keys(root) if root is not None else []
        if duplicates:
            raise ConfigError(str(path), duplicates)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    except RecursionError:
        raise ConfigError(str(path), [("(file)", "nested too deeply to be a station config")]) from None


def _duplicate_keys(root: yaml.Node) -> list[tuple[str, str]]:
    """Keys that appear twice in one mapping, by key path (PyYAML would silently keep the last one)."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:  # an alias: already checked where it was defined
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name != "<<":
                    if name in first:
                        found.append((_key_path((*loc, name)), f"duplicate key (lines {first[name] + 1} and "
                                      f"{key.start_mark.line + 1}); keep one of them"))
                    else:
                        first[name] = key.start_mark.line
                stack.append((value, (*loc, name if name is not None else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
    return found


def update_line_in_file(path: Path, line_name: str, updates: dict[str, Any]) -> StationConfig:
    """Set dotted keys (``decision.threshold``) of one line in a YAML file, keeping comments.

    The edited document is validated before it replaces the file, so a bad update changes nothing.
    """
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError as RuamelError
    from ruamel.yaml.util import load_yaml_guess_indent

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line the engineer wrote on one
    # Written as the file spells it: `null` stays `null` (not blank), lists keep their indentation.
    rt.representer.add_representer(type(None), lambda r, _d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = Path(path)
    try:
        original = path.read_text(encoding="utf-8")
        _doc, seq_width, dash_offset = load_yaml_guess_indent(original)  # "  - name": 4 and 2
        seq_width, dash_offset = seq_width or 2, dash_offset or 0
        rt.indent(mapping=max(seq_width - dash_offset, 2), sequence=seq_width, offset=dash_offset)
        doc = rt.load(original)
    except FileNotFoundError:
        raise ConfigError(str(path), [("(file)", "no such file; nothing was written")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc}")]) from None
    except RuamelError as exc:
        raise ConfigError(str(path), [("(file)", f"not valid YAML: {exc}")]) from None
    lines = doc.get("lines") if isinstance(doc, dict) else None
    if not isinstance(lines, list):
        raise ConfigError(str(path), [("lines", "expected a list of lines; run `inspector config check` on the file")])
    index, target = next(((i, x) for i, x in enumerate(lines) if isinstance(x, dict) and x.get("name") == line_name),
                         (None, None))
    if target is None:
        raise ConfigError(str(path), [("lines", f"no line named {line_name!r}")])
    for dotted, value in updates.items():
        node = target
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                where = _key_path(("lines", index, *parents[: depth + 1]))
                raise ConfigError(str(path), [(where, f"is {type(node).__name__}, not a mapping; cannot set {dotted}")])
        _assign(node, leaf, value)
    buf = StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    config = parse_station_config(_parse_yaml(text, path), path)
    if text != original:
        atomic_write_text(path, text)
    return config


def update_station_in_file(path: Path, updates: dict[str, Any]) -> StationConfig:
    """Set dotted station-level keys (``camera.genicam.exposure_us``) in a YAML file, keeping comments.

    Validated before it replaces the file, like :func:`update_line_in_file`; ``lines`` cannot be set here.
    """
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError as RuamelError

    rt = YAML()
    rt.preserve_quotes = True
    path = Path(path)
    try:
        doc = rt.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RuamelError) as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc}; nothing was written")]) from None
    if not isinstance(doc, dict):
        raise ConfigError(str(path), [("(file)", "not a station config (expected a mapping); nothing was written")])
    for dotted, value in updates.items():
        *parents, leaf = dotted.split(".")
        if dotted.split(".")[0] == "lines":
            raise ConfigError(str(path), [(dotted, "line keys are set with update_line_in_file")])
        node = doc
        for depth, key in enumerate(parents):
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(str(path), [(where, f"is {type(node).__name__}, not a mapping; cannot set {dotted}")])
        node[leaf] = value
    buf = StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    config = parse_station_config(_parse_yaml(text, path), path)
    atomic_write_text(path, text)
    return config


def _assign(node: Any, key: str, value: Any) -> None:
    """Set ``node[key]`` changing as little of the file's text as possible: equal values are left alone,
    mappings are merged key by key, a list keeps its flow style (``[a, b]``), a string its quotes."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    old = node.get(key)
    if key in node and old == value:
        return
    if isinstance(old, CommentedMap) and isinstance(value, dict):
        for k in [k for k in old if k not in value]:
            del old[k]
        for k, v in value.items():
            _assign(old, k, v)
        return
    if isinstance(old, CommentedSeq) and isinstance(value, (list, tuple)):
        quoted = next((type(x) for x in old if isinstance(x, (DoubleQuotedScalarString, SingleQuotedScalarString))),
                      None)
        seq = CommentedSeq([quoted(v) if quoted is not None and isinstance(v, str) else v for v in value])
        if old.fa.flow_style():
            seq.fa.set_flow_style()
        node[key] = seq
        return
    if isinstance(old, (DoubleQuotedScalarString, SingleQuotedScalarString)) and isinstance(value, str):
        node[key] = type(old)(value)
        return
    node[key] = value
