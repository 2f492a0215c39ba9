"""Station-config sections of the runtime: camera / frame source, trigger mode, audit log.

Leaf module (pydantic only): inspector.config imports it, so it must not import inspector.config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraSpec(_Strict):
    """Where frames come from."""

    kind: Literal["synthetic", "folder", "video", "opencv"] = "synthetic"


class TriggerSpec(_Strict):
    mode: Literal["free_run", "plc", "software"] = "free_run"
    rate_hz: float = Field(default=5.0, gt=0, le=1000)


class LogSpec(_Strict):
    folder: Path = Path("logs")
