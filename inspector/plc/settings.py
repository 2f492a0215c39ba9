"""Station-config section of the PLC link (leaf module: pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class PlcSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["ascii", "modbus"] = "ascii"
    port: str = "loop://"
