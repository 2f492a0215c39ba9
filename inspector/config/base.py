"""The base of every config section: strict, frozen, finite."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo never silently becomes a default); NaN / inf are refused.

    A NaN threshold would silently turn every verdict NG, an inf weight poisons fusion.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
