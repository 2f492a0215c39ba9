"""Fusion: put every head on one scale (standard deviations above good parts) and combine.

Each head's image score and map are standardised with the mean / std of that head on held-out
good parts (leave-one-out for the memory head), then averaged with the line's head weights. The
zero-shot head speaks log-odds (it does not saturate, see :class:`ZeroShotHead`), so standardising
it keeps every part's order. With no good references the raw outputs are averaged as probabilities
(log-odds heads through the sigmoid), so an unfitted engine's 0.5 still means even odds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from inspector.heads.base import FittedModule, HeadOutput

HEAD_NAMES: tuple[str, ...] = ("zero_shot", "references", "probe", "adapter", "mutual")
# Heads whose outputs are log-odds (probabilities only through the sigmoid).
LOGIT_HEADS: frozenset[str] = frozenset({"zero_shot"})
# Scores live in [0, ~2]; a floor keeps a head that is constant on good parts from exploding.
STD_FLOOR = 0.01


class Fusion(FittedModule):
    def __init__(self) -> None:
        super().__init__()
        n = len(HEAD_NAMES)
        self.register_buffer("weights", torch.zeros(n))
        self.register_buffer("score_mean", torch.zeros(n))
        self.register_buffer("score_std", torch.ones(n))
        self.register_buffer("map_mean", torch.zeros(n))
        self.register_buffer("map_std", torch.ones(n))
        self.register_buffer("standardised", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.weights.sum() > 0)

    def setup(
        self,
        weights: dict[str, float],
        score_stats: dict[str, tuple[float, float]] | None = None,
        map_stats: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """Head weights (absent heads get 0) and, when good references exist, their statistics."""
        unknown = set(weights) - set(HEAD_NAMES)
        if unknown:
            msg = f"unknown heads {sorted(unknown)}; known: {HEAD_NAMES}"
            raise ValueError(msg)
        self.weights = torch.tensor([float(weights.get(h, 0.0)) for h in HEAD_NAMES])
        if not self.fitted:
            msg = "fusion needs at least one head with a positive weight"
            raise ValueError(msg)
        self.standardised = torch.tensor(score_stats is not None)
        for i, head in enumerate(HEAD_NAMES):
            mean, std = (score_stats or {}).get(head, (0.0, 1.0))
            self.score_mean[i], self.score_std[i] = mean, max(std, STD_FLOOR) if score_stats else 1.0
            mean, std = (map_stats or {}).get(head, (0.0, 1.0))
            self.map_mean[i], self.map_std[i] = mean, max(std, STD_FLOOR) if map_stats else 1.0

    def forward(self, outputs: dict[str, HeadOutput]) -> tuple[Tensor, Tensor | None]:
        self._require(self.fitted, "no head weights")
        score_sum = score_w = map_sum = map_w = None
        raw = not bool(self.standardised)
        for i, head in enumerate(HEAD_NAMES):
            out = outputs.get(head)
            w = float(self.weights[i])
            if out is None or w == 0.0:
                continue
            if raw and head in LOGIT_HEADS:
                out = HeadOutput(torch.sigmoid(out.score), None if out.map is None else torch.sigmoid(out.map))
            z = (out.score - self.score_mean[i]) / self.score_std[i]
            score_sum = w * z if score_sum is None else score_sum + w * z
            score_w = w if score_w is None else score_w + w
            if out.map is not None:
                zm = (out.map - self.map_mean[i]) / self.map_std[i]
                map_sum = w * zm if map_sum is None else map_sum + w * zm
                map_w = w if map_w is None else map_w + w
        if score_sum is None:
            msg = f"no active head produced a score (weights {dict(zip(HEAD_NAMES, self.weights.tolist()))})"
            raise RuntimeError(msg)
        fused_map = None if map_sum is None else map_sum / map_w
        return score_sum / score_w, fused_map
