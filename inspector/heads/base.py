"""What a head returns, and the guard every head uses before setup."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from inspector.errors import NotFittedError


class HeadOutput(NamedTuple):
    score: Tensor  # [B] image anomaly score in the head's own units (higher = more anomalous)
    map: Tensor | None  # [B, rows, cols] patch-grid anomaly map, same units, or None
    class_probs: Tensor | None = None  # [B, C] probabilities over the head's defect classes


class FittedModule(nn.Module):
    """Base for heads whose state is filled by ``setup()``; reading it earlier raises."""

    def _require(self, fitted: bool, what: str) -> None:
        if not fitted:
            msg = f"{type(self).__name__} used before setup(): {what}"
            raise NotFittedError(msg)
