from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.heads.references import ReferenceHead, greedy_coreset, nearest_similarity
from tests.heads.conftest import random_features


def test_coreset_covers_the_set_better_than_random() -> None:
    gen = torch.Generator().manual_seed(0)
    clusters = torch.randn(20, 32, generator=gen) * 5
    points = clusters.repeat_interleave(50, dim=0) + 0.1 * torch.randn(1000, 32, generator=gen)
    keep = greedy_coreset(points, 20, seed=0)
    assert keep.unique().numel() == 20
    covered = torch.cdist(points, points[keep]).amin(dim=1).max()
    rand = torch.randperm(1000, generator=gen)[:20]
    assert covered < torch.cdist(points, points[rand]).amin(dim=1).max()
    assert covered < 1.5  # every cluster got a representative
    assert torch.equal(greedy_coreset(points, 2000), torch.arange(1000))


def test_nearest_similarity_chunked_equals_dense() -> None:
    q = F.normalize(torch.randn(3, 7, 8), dim=-1)
    mem = F.normalize(torch.randn(100, 8), dim=-1)
    assert torch.allclose(nearest_similarity(q, mem, chunk=9), (q @ mem.T).amax(-1))


def test_planted_patch_anomaly_is_found_and_localised() -> None:
    head = ReferenceHead()
    good = random_features(6, seed=1)
    head.setup(good, coreset_size=64, shots=6)
    assert head.fitted and head.memory(0).shape[0] == 64
    test = random_features(4, seed=2)
    test.patches = {k: v.clone() for k, v in test.patches.items()}
    for k in test.patches:
        test.patches[k][2, 5] = F.normalize(torch.randn(16), dim=-1)  # one foreign patch in image 2
    out = head(test)
    assert out.map.shape == (4, 4, 4)
    assert int(out.score.argmax()) == 2
    assert int(out.map[2].flatten().argmax()) == 5
    assert out.score[2] > 3 * out.score[[0, 1, 3]].max()


def test_leave_one_out_excludes_own_image() -> None:
    head = ReferenceHead()
    good = random_features(6, seed=3)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    good.patches = {k: v.clone() for k, v in good.patches.items()}
    # Image (group) 2 carries a unique pattern at patch 0: only visible when its own tokens are excluded.
    odd = F.normalize(torch.randn(16), dim=-1)
    for k in good.patches:
        good.patches[k][4:, 0] = odd
    head.setup(good, coreset_size=1000, groups=groups)
    assert head(good).score.max() < 0.05  # memorised: in-sample scores hide it
    loo = head.leave_one_out(good, groups)
    assert loo.score[4:].min() > 0.3 and loo.score[4:].min() > 3 * loo.score[:4].max()


def test_state_travels_in_state_dict() -> None:
    head = ReferenceHead()
    head.setup(random_features(2), coreset_size=8)
    keys = set(head.state_dict())
    assert {"memory_0", "memory_1", "shots"} <= keys


def test_loaded_memory_scores_as_the_fitted_head() -> None:
    fitted = ReferenceHead()
    fitted.setup(random_features(6, seed=1), coreset_size=64, shots=6)
    restored = ReferenceHead()
    restored.load_memory({layer: fitted.memory(layer).clone() for layer in fitted.layers}, shots=6)
    test = random_features(3, seed=2)
    assert restored.layers == fitted.layers and int(restored.shots) == 6
    assert torch.equal(restored(test).score, fitted(test).score)


# ------------------------------------------------------------------ held-out statistics (issue #12)
def _brute_force_loo(good, groups: torch.Tensor) -> torch.Tensor:
    """Each view's score against every token of the other groups: the definition, by hand."""
    scores = []
    for i in range(good.batch_size):
        per_layer = []
        for p in good.patches.values():
            mem = p[groups != groups[i]].reshape(-1, p.shape[-1])
            per_layer.append(1 - (p[i] @ mem.T).amax(-1))
        scores.append(torch.stack(per_layer).mean(0).max())
    return torch.stack(scores)


def test_leave_one_out_searches_the_full_memory_not_the_coreset() -> None:
    good = random_features(8, seed=4, noise=0.3)
    groups = torch.arange(4).repeat_interleave(2)
    small, full = ReferenceHead(), ReferenceHead()
    small.setup(good, coreset_size=8, groups=groups)  # a coreset far smaller than the 128 tokens
    full.setup(good, coreset_size=10_000, groups=groups)
    loo_small = small.leave_one_out(good, groups, extrapolate=False)
    loo_full = full.leave_one_out(good, groups, extrapolate=False)
    assert torch.allclose(loo_small.score, loo_full.score)
    assert torch.allclose(loo_small.score, _brute_force_loo(good, groups), atol=1e-6)


def test_leave_one_out_of_selected_queries() -> None:
    good = random_features(8, seed=5, noise=0.3)
    groups = torch.arange(4).repeat_interleave(2)
    head = ReferenceHead()
    head.setup(good, coreset_size=64)
    identity = torch.arange(4) * 2
    part = head.leave_one_out(good, groups, queries=identity)
    assert part.score.shape == (4,) and part.map.shape == (4, 4, 4)
    assert torch.allclose(part.score, head.leave_one_out(good, groups).score[identity])


def test_extrapolation_lowers_held_out_scores_towards_k_references() -> None:
    good = random_features(12, seed=6, noise=0.4)
    groups = torch.arange(6).repeat_interleave(2)
    head = ReferenceHead()
    head.setup(good, coreset_size=10_000)
    raw = head.leave_one_out(good, groups, extrapolate=False).score
    assert (head.leave_one_out(good, groups).score <= raw + 1e-6).all()


def test_held_out_elsewhere_ignores_the_copies_of_a_patch_at_its_own_place() -> None:
    """One image, two views: a patch unique to one place is anomalous although its copy sits in the other view."""
    grid = (4, 4)
    base = F.normalize(torch.randn(16) + 0.0, dim=-1).expand(16, 16).clone()  # a uniform texture
    gen = torch.Generator().manual_seed(1)
    base = F.normalize(base + 0.05 * torch.randn(16, 16, generator=gen), dim=-1)
    base[5] = F.normalize(torch.randn(16, generator=gen), dim=-1)  # a unique feature at place 5
    patches = {0: torch.stack([base, base.flip(0)])}  # view 1: the same tokens, places mirrored
    feats = random_features(2)
    feats.patches = patches
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    place = torch.stack([rows, cols], -1).reshape(16, 2)
    coords = torch.stack([place, place.flip(0)])  # where each token of each view comes from
    head = ReferenceHead()
    head.setup(feats, coreset_size=64)
    out = head.held_out_elsewhere(feats, coords, radius=1.0)
    assert out.map.shape == (2, *grid)
    assert out.map[0].flatten()[5] > 0.3 and out.map[0].flatten().argmax() == 5
    assert out.map[0].flatten()[[0, 3, 10, 15]].max() < 0.1  # the texture finds its like elsewhere
    # Without the place rule the copy in view 1 would have hidden it.
    assert head.leave_one_out(feats, torch.tensor([0, 1]), extrapolate=False).score[0] < 1e-5
