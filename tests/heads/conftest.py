from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features


def random_features(batch: int, grid: tuple[int, int] = (4, 4), dim: int = 16, layers=(0, 1), seed: int = 0,
                    base: torch.Tensor | None = None, noise: float = 0.05) -> Features:
    """Features whose patch tokens are a shared 'good' pattern plus noise."""
    gen = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    if base is None:
        base = torch.randn(n, dim, generator=torch.Generator().manual_seed(123))
    patches = {layer: F.normalize(base + noise * torch.randn(batch, n, dim, generator=gen), dim=-1) for layer in layers}
    glob = F.normalize(torch.randn(batch, dim, generator=gen), dim=-1)
    dense = F.normalize(torch.randn(batch, n, dim, generator=gen), dim=-1)
    return Features(glob, dense, patches, grid)
