"""Zero-shot text head: normal vs anomalous prompt ensembles, and the best-matching defect."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.heads.base import FittedModule, HeadOutput
from inspector.text.embeddings import TextEmbeddings


class ZeroShotHead(FittedModule):
    """Image score = mean of the global anomalous log-odds and the peak of the dense map's.

    The log-odds ``T * (cos(x, anomalous) - cos(x, normal))`` are the logit of the two-prompt softmax
    probability (:meth:`probability` gives it back). Scores and maps stay in these units because the
    probability saturates: at T = 100 it is exactly 1.0 in float32 once the margin passes ~0.17, so
    distinct parts tie and a standardised fusion of probabilities loses their order. The
    temperature ``T`` starts at the model's logit scale and is re-fitted when labelled defects exist.

    ``map_pool`` (``zeroshot.map_pool``): 3 averages the dense map over each patch's 3x3 neighbourhood
    (edges over the patches that exist) before the image score takes its peak: one noisy patch no
    longer decides the peak, a defect covering a few patches keeps it.
    """

    def __init__(self, map_pool: int = 1) -> None:
        super().__init__()
        if map_pool not in (1, 3):
            msg = f"zeroshot.map_pool must be 1 (no pooling) or 3 (3x3 mean), got {map_pool!r}"
            raise ValueError(msg)
        self.map_pool = map_pool
        self.register_buffer("classes", torch.empty(0))  # [2, D]: normal, anomalous
        self.register_buffer("defects", torch.empty(0))  # [C, D]
        self.register_buffer("log_temperature", torch.tensor(math.log(100.0)))
        self.defect_names: tuple[str, ...] = ()

    @property
    def fitted(self) -> bool:
        return self.classes.numel() > 0

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.exp())

    def setup(self, text: TextEmbeddings, temperature: float) -> None:
        self.classes = torch.stack([text.normal, text.anomalous]).float()
        self.defects = text.defects.float()
        self.defect_names = text.defect_names
        self.set_temperature(temperature)

    def set_temperature(self, temperature: float) -> None:
        if not math.isfinite(temperature) or temperature <= 0:
            msg = f"zero-shot temperature must be a positive number, got {temperature}"
            raise ValueError(msg)
        self.log_temperature = torch.tensor(math.log(temperature))

    def margins(self, features: Features) -> Tensor:
        """cos(x, anomalous) - cos(x, normal) of each image: the temperature-free logit."""
        self._require(self.fitted, "no text embeddings")
        sims = features.global_emb @ self.classes.T.to(features.global_emb)
        return sims[:, 1] - sims[:, 0]

    @staticmethod
    def probability(logit: Tensor) -> Tensor:
        """The anomalous probability of a score or map in this head's log-odds units."""
        return torch.sigmoid(logit)

    def forward(self, features: Features) -> HeadOutput:
        self._require(self.fitted, "no text embeddings")
        t = self.log_temperature.exp()
        cls = self.classes.to(features.global_emb)
        direction = cls[1] - cls[0]  # logit of softmax over (normal, anomalous) = T * margin
        logit_global = t * (features.global_emb @ direction)
        anomaly_map = None
        score = logit_global
        if features.dense is not None:
            anomaly_map = pool_map(t * (features.dense @ direction), features.grid, self.map_pool)
            score = 0.5 * (logit_global + anomaly_map.flatten(1).amax(dim=1))
        class_probs = None
        if self.defects.numel():
            class_probs = torch.softmax(t * features.global_emb @ self.defects.T.to(cls), dim=-1)
        return HeadOutput(score, anomaly_map, class_probs)


def pool_map(values: Tensor, grid: tuple[int, int], size: int) -> Tensor:
    """[B, N] patch values -> [B, rows, cols], each the mean over its ``size`` x ``size`` neighbourhood.

    At the border only the patches inside the grid count (no zero padding pulling edges down).
    """
    maps = values.reshape(-1, *grid)
    if size == 1:
        return maps
    return F.avg_pool2d(maps[:, None], size, stride=1, padding=size // 2, count_include_pad=False)[:, 0]
