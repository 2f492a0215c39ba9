"""Reference-head options: neighbourhood aggregation of patch tokens and the top-1 % image score."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.heads.references import ReferenceHead, aggregate_patches, top_mean


def _feats(b: int, seed: int, grid=(5, 5), d: int = 8) -> Features:
    g = torch.Generator().manual_seed(seed)
    patches = F.normalize(torch.randn(b, grid[0] * grid[1], d, generator=g), dim=-1)
    return Features(torch.zeros(b, 4), None, {1: patches}, grid)


def test_aggregation_is_the_neighbourhood_mean_without_padding() -> None:
    feats = _feats(1, 0)
    agg = aggregate_patches(feats.patches[1], (5, 5), 3)
    grid = feats.patches[1][0].reshape(5, 5, 8)
    centre = F.normalize(grid[1:4, 1:4].reshape(-1, 8).mean(0), dim=0)  # token (2, 2)
    corner = F.normalize(grid[0:2, 0:2].reshape(-1, 8).mean(0), dim=0)  # token (0, 0): 4 neighbours
    torch.testing.assert_close(agg[0, 12], centre)
    torch.testing.assert_close(agg[0, 0], corner)
    assert aggregate_patches(feats.patches[1], (5, 5), 1) is feats.patches[1]


@pytest.mark.parametrize("size", [1, 3, 5])
def test_head_with_aggregation_searches_aggregated_tokens(size: int) -> None:
    memory, query = _feats(3, 1), _feats(2, 2)
    head = ReferenceHead(neighbourhood=size, image_score="top1")
    head.setup(memory, coreset_size=10_000)
    out = head(query)
    mem = aggregate_patches(memory.patches[1], (5, 5), size).reshape(-1, 8)
    q = aggregate_patches(query.patches[1], (5, 5), size)
    want = 1.0 - (q @ mem.T).amax(-1)
    torch.testing.assert_close(out.map.reshape(2, -1), want)
    torch.testing.assert_close(out.score, top_mean(want, 0.01))
    loo = head.leave_one_out(memory, torch.arange(3), extrapolate=False)
    assert loo.map.shape == (3, 5, 5)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        ReferenceHead(neighbourhood=2)
    with pytest.raises(ValueError, match="image_score"):
        ReferenceHead(image_score="mean")
