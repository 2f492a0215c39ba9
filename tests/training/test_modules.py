"""Pure torch heads: shapes, CoOp through the real text tower, safetensors round trip of the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.training.modules import (
    ClipAdapterHead,
    ResidualPatchHead,
    load_adapter,
    make_prompt_learner,
    save_adapter,
)
from tests.heads.conftest import random_features
from tests.training.conftest import tiny_adapter

GRID, DIM, LAYERS = (4, 4), 16, (0, 1)


def _patch_head() -> ResidualPatchHead:
    good = random_features(6, GRID, DIM, LAYERS, seed=1)
    head = ResidualPatchHead(LAYERS, DIM, memory_size=64, hidden=8)
    head.setup(good, torch.arange(6), seed=0)
    return head


def test_patch_head_starts_as_distance_to_good_tokens() -> None:
    head = _patch_head()
    good = random_features(3, GRID, DIM, LAYERS, seed=2)
    odd = random_features(3, GRID, DIM, LAYERS, seed=2)
    for layer in LAYERS:
        odd.patches[layer][:, 5] = F.normalize(torch.randn(3, DIM), dim=-1)  # a foreign patch
    out_good, out_odd = head(good), head(odd)
    assert out_odd.map is not None and out_odd.map.shape == (3, *GRID)
    assert (out_odd.score > out_good.score).all()
    assert (out_odd.map.flatten(1).argmax(dim=1) == 5).all()


def test_leave_one_out_hides_the_image_itself() -> None:
    good = random_features(6, GRID, DIM, LAYERS, seed=1)
    head = ResidualPatchHead(LAYERS, DIM, memory_size=4096, hidden=8)
    head.setup(good, torch.arange(6))
    _, own = head.neighbours(good)
    _, loo = head.neighbours(good, exclude=torch.arange(6))
    assert own.abs().max() < 1e-5 and (loo > 1e-4).all()


def test_coop_prompts_equal_encode_text_at_the_init_words(tiny_backbone) -> None:
    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    learner = make_prompt_learner(model, tok, ["metal ring", "damaged metal ring"], 4, "a photo of a")
    with torch.no_grad():
        expected = F.normalize(model.encode_text(tok(["a photo of a metal ring.",
                                                      "a photo of a damaged metal ring."])), dim=-1)
    assert torch.allclose(learner(), expected, atol=1e-5)
    assert [n for n, _ in learner.named_parameters()] == ["context"]  # the tower stays frozen and outside
    assert list(learner.state_dict()) == ["context"]
    learner().sum().backward()
    assert learner.context.grad is not None and learner.context.grad.abs().sum() > 0


def test_adapter_round_trips_through_safetensors(tmp_path: Path) -> None:
    stack = tiny_adapter()
    feats = random_features(4, GRID, DIM, LAYERS, seed=9)
    before = stack(feats)
    assert before.score.shape == (4,) and before.map is not None and before.map.shape == (4, *GRID)
    assert before.class_probs is not None and before.class_probs.shape == (4, 2)
    save_adapter(stack, tmp_path / "a.safetensors")
    loaded = load_adapter(tmp_path / "a.safetensors")
    after = loaded(feats)
    assert loaded.classes == stack.classes and loaded.names == stack.names
    assert torch.allclose(before.score, after.score) and torch.allclose(before.map, after.map)
    with pytest.raises(ValueError, match="not an inspector adapter"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_adapter(tmp_path / "other.safetensors")


def test_global_heads_score_log_odds() -> None:
    text = F.normalize(torch.randn(2, DIM), dim=-1)
    head = ClipAdapterHead(DIM, 2, ratio=0.0)
    head.set_text(text, 10.0)
    feats = Features(torch.stack([text[0], text[1]]), None, {}, (1, 1))
    out = head(feats)
    assert out.score[1] > 0 > out.score[0] and out.class_probs is None
