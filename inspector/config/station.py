"""The whole station: its product lines and the station-wide sections (camera, trigger, log, PLC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from inspector.config.base import StrictModel
from inspector.config.camera import CameraSpec, TriggerSpec
from inspector.config.line import NAME_RE, LineConfig
from inspector.config.log import LogSpec
from inspector.config.plant import OutputsSpec
from inspector.config.plc import PlcSpec
from inspector.config.shifts import DEFAULT_SHIFTS, Shifts


class StationConfig(StrictModel):
    """A whole station: its product lines and station-wide settings."""

    station: Annotated[str, Field(pattern=NAME_RE)] = "station"
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
    # Plant outputs: outputs.mqtt / outputs.opcua (docs/plant.md), outputs.database (docs/history.md).
    outputs: OutputsSpec = OutputsSpec()
    # Shift start times, local "HH:MM" (optionally with a name): the operator's counters are per shift
    # (inspector/config/shifts.py). Default: one shift per day from midnight.
    shifts: Shifts = DEFAULT_SHIFTS
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


