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
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Which open_clip backbone to run and where its weights come from."""

    name: str = Field(description="open_clip architecture, e.g. ViT-B-16")
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

    normal_states: tuple[str, ...] = ("flawless {}", "perfect {}", "unblemished {}", "{} without flaw",
                                      "{} without defect", "{} without damage")
    anomalous_states: tuple[str, ...] = ("damaged {}", "broken {}", "{} with flaw", "{} with defect",
                                         "{} with damage")
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
        return "required key is missing"
    msg = error.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    return f"{msg} (got {error.get('input')!r})" if "input" in error and kind != "model_type" else msg


def parse_station_config(data: Any, source: str | Path = "<memory>") -> StationConfig:
    """Validate already-parsed YAML data; raise ConfigError naming every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(str(source), [("(top level)", "expected a mapping with a 'lines' list")])
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_station_config(data, path)


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
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_line_in_file(path: Path, line_name: str, updates: dict[str, Any]) -> StationConfig:
    """Set dotted keys (``decision.threshold``) of one line in a YAML file, keeping comments.

    The edited document is validated before it replaces the file, so a bad update changes nothing.
    """
    from io import StringIO

    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    path = Path(path)
    doc = rt.load(path.read_text(encoding="utf-8"))
    lines = doc.get("lines") or []
    target = next((x for x in lines if x.get("name") == line_name), None)
    if target is None:
        raise ConfigError(str(path), [("lines", f"no line named {line_name!r}")])
    for dotted, value in updates.items():
        node = target
        *parents, leaf = dotted.split(".")
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        node[leaf] = value
    buf = StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    config = parse_station_config(yaml.safe_load(text), path)
    atomic_write_text(path, text)
    return config
