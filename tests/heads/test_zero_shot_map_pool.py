"""zeroshot.map_pool: the zero-shot patch map through a 3x3 mean filter before its peak is taken."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.heads import ZeroShotHead
from inspector.heads.zero_shot import pool_map
from tests.heads.test_zero_shot_probe_fusion import DIM, text_embeddings


def test_pool_map_is_the_mean_over_the_neighbours_inside_the_grid() -> None:
    values = torch.arange(12, dtype=torch.float32).reshape(1, 12)  # a 3 x 4 grid: rows 0-3, 4-7, 8-11
    assert torch.equal(pool_map(values, (3, 4), 1), values.reshape(1, 3, 4))
    pooled = pool_map(values, (3, 4), 3)
    assert pooled.shape == (1, 3, 4)
    assert pooled[0, 1, 1] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9)
    assert pooled[0, 0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 patches, no zero padding
    assert pooled[0, 2, 3] == pytest.approx((6 + 7 + 10 + 11) / 4)


def test_pooled_head_scores_with_the_pooled_peak() -> None:
    text = text_embeddings()
    gen = torch.Generator().manual_seed(5)
    glob = F.normalize(text.normal + 0.1 * torch.randn(2, DIM, generator=gen), dim=-1)
    dense = F.normalize(text.normal + 0.3 * torch.randn(2, 25, DIM, generator=gen), dim=-1)
    dense[0, 12] = text.anomalous  # one anomalous patch in the middle of part 0
    feats = Features(glob, dense, {}, (5, 5))
    plain, pooled = ZeroShotHead(), ZeroShotHead(map_pool=3)
    for head in (plain, pooled):
        head.setup(text, temperature=100.0)
    a, b = plain(feats), pooled(feats)
    assert b.map.shape == a.map.shape == (2, 5, 5)
    assert torch.allclose(b.map, pool_map(a.map.flatten(1), (5, 5), 3))
    logit_global = 100.0 * glob @ (text.anomalous - text.normal)
    assert torch.allclose(b.score, 0.5 * (logit_global + b.map.flatten(1).amax(dim=1)), atol=1e-4)
    assert b.map[0].amax() < a.map[0].amax()  # one patch is diluted by its 8 neighbours


def test_map_pool_other_than_1_or_3_is_refused() -> None:
    with pytest.raises(ValueError, match="map_pool"):
        ZeroShotHead(map_pool=2)
