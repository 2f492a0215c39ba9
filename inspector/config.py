"""Station configuration: one YAML file per station / product line, validated with pydantic.

A file is parsed and validated whole before anything uses it, so a bad file is rejected with
the file, the key path (``lines[0].model.pretrained``) and what was expected, and nothing is
half-applied. Calibration results are written back with :func:`update_line_in_file`, which keeps
the engineer's comments (ruamel.yaml round trip) and replaces the file atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspector.errors import ConfigError
from inspector.plc.settings import PlcSpec
from inspector.station.settings import CameraSpec, LogSpec, TriggerSpec
from inspector.training.settings import TrainingSpec

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    # NaN / inf are refused: a NaN threshold would silently turn every verdict NG, an inf weight poisons fusion.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """Which open_clip backbone to run and where its weights come from."""

    name: str = Field(min_length=1, description="open_clip architecture, e.g. ViT-B-16")
    # An open_clip tag (resolved offline from the local cache), a local weights file, or 'random'.
    pretrained: str = Field(min_length=1)
    # Expected sha256 of the weights file; loading refuses a mismatch.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    # Input side in pixels; positional embeddings are interpolated when it differs from the model's.
    image_size: int | None = Field(default=None, ge=32, le=1536)
    # 0-based transformer blocks whose patch tokens feed the few-shot reference head.
    feature_layers: tuple[int, ...] = (6, 9)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


class PromptSpec(_Strict):
    """Text prompts of one product line."""

    normal_states: tuple[str, ...] = Field(default=("flawless {}", "perfect {}", "unblemished {}", "{} without flaw",
                                                    "{} without defect", "{} without damage"), min_length=1)
    anomalous_states: tuple[str, ...] = Field(default=("damaged {}", "broken {}", "{} with flaw", "{} with defect",
                                                       "{} with damage"), min_length=1)
    # Named defect descriptions: label -> free text ("a scratch on the rim").
    defects: dict[str, str] = Field(default_factory=dict)
    # None = the built-in photo template ensemble; a list replaces it.
    templates: tuple[str, ...] | None = None
    # Extra domain templates, e.g. "an X-ray image of {}."
    domain_templates: tuple[str, ...] = ()
    # None = the model's own logit scale until calibration fits one.
    temperature: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("normal_states", "anomalous_states", "templates", "domain_templates")
    @classmethod
    def _one_placeholder(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for text in value or ():
            if text.count("{}") != 1:
                msg = f"{text!r} must contain exactly one '{{}}' placeholder for the object/state"
                raise ValueError(msg)
        return value

    @field_validator("templates")
    @classmethod
    def _templates_not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            msg = "an empty template list leaves no prompts; use null for the built-in templates"
            raise ValueError(msg)
        return value

    @field_validator("defects")
    @classmethod
    def _defect_names(cls, value: dict[str, str]) -> dict[str, str]:
        for label, text in value.items():
            if not re.match(_NAME_RE, label):
                msg = f"defect label {label!r} must be 1-64 of [A-Za-z0-9_.-]"
                raise ValueError(msg)
            if label in ("OK", "FAULT", "TIMEOUT", "anomaly"):
                msg = f"defect label {label!r} is reserved"
                raise ValueError(msg)
            if not text.strip():
                msg = f"defect {label!r} needs a description"
                raise ValueError(msg)
        return value


class FewShotSpec(_Strict):
    """Where the line's good / defect example images live and how references are built."""

    folder: Path | None = None
    max_shots: int = Field(default=16, ge=1, le=1024)
    # Rotations (90/180/270) and flips of each good image added to the patch memory.
    augment: bool = True
    # Patch memory per layer is subsampled to at most this many tokens (greedy k-center coreset).
    coreset_size: int = Field(default=4096, ge=16)
    seed: int = 0


class HeadWeights(_Strict):
    """Weight of each head in the fused score (0 disables a head)."""

    zero_shot: float = Field(default=1.0, ge=0)
    references: float = Field(default=1.0, ge=0)
    probe: float = Field(default=1.0, ge=0)
    # A trained adapter (inspector train) once one is promoted for the line.
    adapter: float = Field(default=1.0, ge=0)


class CalibrationSpec(_Strict):
    """How the decision threshold is chosen, and the record of the last calibration."""

    method: Literal["false_reject", "f1", "cost"] = "false_reject"
    target_false_reject: float = Field(default=0.01, gt=0, lt=0.5)
    cost_false_reject: float = Field(default=1.0, gt=0)
    cost_escape: float = Field(default=10.0, gt=0)
    # Written by `inspector calibrate`: what data, when, which method gave the threshold.
    record: dict[str, Any] | None = None


class DecisionSpec(_Strict):
    threshold: float | None = None
    # Anomaly-map threshold for defect regions, in the same units as the fused map.
    region_threshold: float | None = None
    min_region_area_px: int = Field(default=16, ge=1)
    calibration: CalibrationSpec = CalibrationSpec()


class LineConfig(_Strict):
    """One product line: what the part is, how to look at it, how to decide."""

    name: str = Field(pattern=_NAME_RE)
    object_name: str = Field(min_length=1, max_length=80)
    # Region of interest in frame pixels: [x, y, width, height]; None = whole frame.
    roi: tuple[int, int, int, int] | None = None
    model: ModelSpec
    prompts: PromptSpec = PromptSpec()
    fewshot: FewShotSpec = FewShotSpec()
    heads: HeadWeights = HeadWeights()
    decision: DecisionSpec = DecisionSpec()
    training: TrainingSpec = TrainingSpec()

    @field_validator("object_name")
    @classmethod
    def _object_named(cls, value: str) -> str:
        if not value.strip():
            msg = "object_name must name the part (it goes into every prompt), not be blank"
            raise ValueError(msg)
        return value

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, value: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if value is not None:
            x, y, w, h = value
            if x < 0 or y < 0 or w < 8 or h < 8:
                msg = "roi must be [x >= 0, y >= 0, width >= 8, height >= 8] in frame pixels"
                raise ValueError(msg)
        return value


class StationConfig(_Strict):
    """A whole station: its product lines and station-wide settings."""

    station: Annotated[str, Field(pattern=_NAME_RE)] = "station"
    # Folder for imported weights and trained adapters (relative to the config file).
    model_dir: Path = Path("models")
    # Folder for cached text embeddings.
    cache_dir: Path = Path(".cache/inspector")
    lines: tuple[LineConfig, ...] = Field(min_length=1)
    default_line: str | None = None
    camera: CameraSpec = CameraSpec()
    trigger: TriggerSpec = TriggerSpec()
    log: LogSpec = LogSpec()
    # None = no PLC link (free-run or software triggers only).
    plc: PlcSpec | None = None
    # Set by the loader: the file this config came from (not part of the YAML).
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_lines(self) -> StationConfig:
        names = [line.name for line in self.lines]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"line names must be unique, repeated: {', '.join(dupes)}"
            raise ValueError(msg)
        if self.default_line is not None and self.default_line not in names:
            msg = f"default_line {self.default_line!r} is not one of the lines {names}"
            raise ValueError(msg)
        return self

    def line(self, name: str | None = None) -> LineConfig:
        """The named line, or the default (first) one."""
        wanted = name or self.default_line or self.lines[0].name
        for line in self.lines:
            if line.name == wanted:
                return line
        msg = f"unknown line {wanted!r}; this station has {[x.name for x in self.lines]}"
        raise KeyError(msg)

    def resolve(self, path: Path | str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path)
        if p.is_absolute() or self.source is None:
            return p
        return (self.source.parent / p).resolve()


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


def config_hash(line: LineConfig) -> str:
    """Stable short hash of a line's effective configuration (for the audit log)."""
    blob = json.dumps(line.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if hasattr(os, "fchmod"):  # mkstemp creates 0600: keep the file's mode (a service may read it)
                os.fchmod(fh.fileno(), _mode_of(path))
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def update_line_in_file(path: Path, line_name: str, updates: dict[str, Any]) -> StationConfig:
    """Set dotted keys (``decision.threshold``) of one line in a YAML file, keeping comments.

    The edited document is validated before it replaces the file, so a bad update changes nothing.
    """
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError as RuamelError

    rt = YAML()
    rt.preserve_quotes = True
    path = Path(path)
    try:
        doc = rt.load(path.read_text(encoding="utf-8"))
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
        node[leaf] = value
    buf = StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    config = parse_station_config(_parse_yaml(text, path), path)
    atomic_write_text(path, text)
    return config
