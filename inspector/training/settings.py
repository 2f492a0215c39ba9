"""Line-config section of adapter training (leaf module: pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(default=30, ge=1, le=10000)
    seed: int = 0
