"""zeroshot.dense: the DPAM path (v-v attention summed over the last N blocks) beside the last-block branch."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import DenseFeatureExtractor, resolve_dense_blocks
from inspector.backbone.registry import TINY_MODEL


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return open_clip.create_model(TINY_MODEL, pretrained=None).eval()


def _vv(block, x: torch.Tensor) -> torch.Tensor:
    """Reference v-v output of one block for the patch tokens, written out with explicit softmax."""
    attn = block.attn
    heads, (b, n, width) = attn.num_heads, x.shape
    d = width // heads
    v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)[2]
    v = v[:, 1:].reshape(b, n - 1, heads, d).transpose(1, 2)
    weights = torch.softmax(v @ v.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n - 1, width)
    return attn.out_proj(out)


def _reference_dense(visual, images: torch.Tensor, blocks: int) -> torch.Tensor:
    """Ordinary forward through open_clip's own blocks; the v-v outputs of the last ``blocks`` summed."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.reshape(1, 1, -1).expand(x.shape[0], -1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    resblocks = visual.transformer.resblocks
    dense = 0
    for i, block in enumerate(resblocks):
        if i >= len(resblocks) - blocks:
            dense = dense + _vv(block, x)
        x = block(x)
    return F.normalize(visual.ln_post(dense) @ visual.proj, dim=-1)


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_dense_tokens_are_the_summed_vv_outputs(tiny_model, blocks: int) -> None:
    ex = DenseFeatureExtractor(tiny_model.visual, None, (1, 3), dense_blocks=blocks)
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        feats = ex(images)
        ref = _reference_dense(tiny_model.visual, images, blocks)
    assert feats.dense.shape == (2, 64, 64) and feats.grid == (8, 8)
    assert torch.allclose(feats.dense, ref, atol=1e-5)


def test_dpam_with_one_block_is_the_last_block_branch_and_leaves_the_ordinary_path_alone(tiny_model) -> None:
    images = torch.randn(2, 3, 64, 64)
    default = DenseFeatureExtractor(tiny_model.visual, None, (1, 3))
    one = DenseFeatureExtractor(tiny_model.visual, None, (1, 3), dense_blocks=1)
    three = DenseFeatureExtractor(tiny_model.visual, None, (1, 3), dense_blocks=3)
    with torch.inference_mode():
        a, b, c = default(images), one(images), three(images)
        ref = F.normalize(tiny_model.encode_image(images), dim=-1)
    assert default.dense_blocks == 1
    assert torch.equal(a.dense, b.dense)
    # DPAM changes the dense tokens only: global embedding and reference tokens are the ordinary path's.
    assert not torch.allclose(a.dense, c.dense, atol=1e-3)
    assert torch.allclose(c.global_emb, ref, atol=1e-5) and torch.allclose(a.global_emb, c.global_emb)
    for layer in (1, 3):
        assert torch.allclose(a.patches[layer], c.patches[layer], atol=1e-5)


@pytest.mark.parametrize("blocks", [0, 5, True, 0.0, 1.5, "3"])
def test_impossible_block_counts_are_refused(tiny_model, blocks) -> None:
    with pytest.raises(ValueError, match="dpam_blocks"):
        DenseFeatureExtractor(tiny_model.visual, None, (), model="tiny", dense_blocks=blocks)


@pytest.mark.parametrize(("blocks", "depth", "count"), [(0.8, 24, 19), (0.8, 12, 9), (0.8, 4, 3), (1.0, 4, 4),
                                                        (0.1, 4, 1), (2, 4, 2)])
def test_fractions_of_the_depth(blocks, depth: int, count: int) -> None:
    assert resolve_dense_blocks(blocks, depth) == count
