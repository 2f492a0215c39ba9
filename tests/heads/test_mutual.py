"""Mutual scoring against a brute-force reference written from MuSc's definition, patch by patch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.errors import NotFittedError
from inspector.heads.mutual import MutualHead, interval_count, mutual_map, part_coreset, top_mean


def _brute(query: np.ndarray, parts: list[np.ndarray], interval: float) -> np.ndarray:
    """Per patch: cosine distance to the nearest patch of each part, mean of the closest floor(interval*P)."""
    out = np.empty(len(query))
    for p, q in enumerate(query):
        dists = sorted(min(1.0 - float(q @ t) for t in part) for part in parts)
        k = max(1, math.floor(interval * len(parts) + 1e-9))
        out[p] = sum(dists[:k]) / k
    return out


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize(("n_parts", "interval"), [(1, 0.3), (3, 0.3), (10, 0.3), (7, 1.0), (12, 0.05)])
def test_mutual_map_equals_brute_force(n_parts: int, interval: float) -> None:
    bank = {1: _unit(n_parts, 9, 8, seed=1), 3: _unit(n_parts, 9, 8, seed=2)}
    patches = {1: _unit(2, 6, 8, seed=3), 3: _unit(2, 6, 8, seed=4)}
    got = mutual_map(patches, bank, interval)
    for b in range(2):
        want = np.mean([_brute(patches[layer][b].numpy(), list(bank[layer].numpy()), interval)
                        for layer in (1, 3)], axis=0)
        np.testing.assert_allclose(got[b].numpy(), want, atol=1e-5)


def test_select_restricts_the_parts() -> None:
    bank = {0: _unit(6, 5, 4, seed=5)}
    patches = {0: _unit(1, 5, 4, seed=6)}
    select = torch.tensor([0, 2, 5])
    got = mutual_map(patches, bank, 0.5, select)
    want = _brute(patches[0][0].numpy(), [bank[0][i].numpy() for i in (0, 2, 5)], 0.5)
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-5)


def test_interval_count_and_top_mean() -> None:
    assert [interval_count(n, 0.3) for n in (1, 3, 4, 10, 64)] == [1, 1, 1, 3, 19]
    maps = torch.arange(200, dtype=torch.float32)[None]
    assert float(top_mean(maps, 0.01)) == pytest.approx((199 + 198) / 2)  # 1 % of 200 = 2 patches
    assert float(top_mean(maps[:, :50], 0.01)) == 49.0  # at least one patch


def test_a_defect_shared_by_few_parts_still_stands_out() -> None:
    """A defect present in 2 of 20 parts: interval mean over the closest 30 % ignores those two."""
    normal = _unit(1, 4, seed=7)[0]
    defect = _unit(1, 4, seed=8)[0]
    parts = normal.repeat(20, 3, 1)
    parts[:2, 0] = defect
    query = torch.stack([normal, defect])[None]
    interval_map = mutual_map({0: query}, {0: parts}, 0.3)[0]
    nearest_map = mutual_map({0: query}, {0: parts}, 1 / 20)[0]  # plain nearest part
    assert float(interval_map[1]) > 0.5 > float(interval_map[0])
    assert float(nearest_map[1]) == pytest.approx(0.0, abs=1e-6)  # nearest-neighbour alone misses it


def test_head_scores_a_batch_and_refuses_before_a_bank() -> None:
    head = MutualHead()
    feats = Features(torch.zeros(2, 4), None, {2: _unit(2, 16, 8, seed=9)}, (4, 4))
    with pytest.raises(NotFittedError):
        head(feats)
    head.set_bank({2: _unit(5, 16, 8, seed=10).half()})
    out = head(feats)
    assert out.map.shape == (2, 4, 4)
    np.testing.assert_allclose(out.score.numpy(), top_mean(out.map.reshape(2, -1), 0.01).numpy())
    with pytest.raises(ValueError, match="layers"):
        head(Features(torch.zeros(1, 4), None, {1: _unit(1, 16, 8, seed=9)}, (4, 4)))
    with pytest.raises(ValueError, match="same parts"):
        head.set_bank({1: torch.zeros(2, 3, 8), 2: torch.zeros(3, 3, 8)})
    with pytest.raises(ValueError, match="fractions"):
        MutualHead(interval=0.0)


def test_part_coreset_is_float16_and_bounded() -> None:
    tokens = _unit(50, 8, seed=11)
    core = part_coreset(tokens, 12)
    assert core.shape == (12, 8) and core.dtype == torch.float16
    assert part_coreset(tokens[:5], 12).shape == (5, 8)


def test_mutual_module_reexports_top_mean() -> None:
    from inspector.heads import references

    assert top_mean is references.top_mean


def test_head_aggregates_query_patches_over_the_neighbourhood() -> None:
    from inspector.heads.references import aggregate_patches

    patches = _unit(1, 16, 8, seed=12)
    bank = {0: _unit(4, 16, 8, seed=13)}
    head = MutualHead(neighbourhood=3)
    head.set_bank(bank)
    out = head(Features(torch.zeros(1, 4), None, {0: patches}, (4, 4)))
    want = mutual_map({0: aggregate_patches(patches, (4, 4), 3)}, bank, 0.3)
    torch.testing.assert_close(out.map.reshape(1, -1), want)


def test_held_out_scores_are_each_part_against_the_others() -> None:
    from inspector.heads.mutual import held_out_scores, held_out_stats, mutual_map, top_mean

    bank = {0: torch.nn.functional.normalize(torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(1)), dim=-1)}
    scores, maps = held_out_scores(bank, 0.5, 0.1, max_queries=3)
    assert scores.shape == (3,) and maps.shape == (3 * 6,)
    for k, i in enumerate(range(2, 5)):  # the last three parts
        others = torch.tensor([j for j in range(5) if j != i])
        m = mutual_map({0: bank[0][i : i + 1]}, bank, 0.5, others)
        assert torch.allclose(scores[k], top_mean(m, 0.1)[0])
    (mean, std), _ = held_out_stats(bank, 0.5, 0.1, max_queries=3)
    assert mean == pytest.approx(float(scores.double().mean())) and std == pytest.approx(float(scores.double().std()))
