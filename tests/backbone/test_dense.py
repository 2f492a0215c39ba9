from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import DenseFeatureExtractor, Features, interpolate_pos_embed, supports_dense
from inspector.backbone.registry import TINY_MODEL


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return open_clip.create_model(TINY_MODEL, pretrained=None).eval()


def test_global_embedding_equals_encode_image(tiny_model) -> None:
    ex = DenseFeatureExtractor(tiny_model.visual, None, (0, 3))
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        feats = ex(x)
        ref = F.normalize(tiny_model.encode_image(x), dim=-1)
    assert torch.allclose(feats.global_emb, ref, atol=1e-5)
    assert feats.grid == (8, 8)
    assert feats.dense.shape == (3, 64, 64)
    assert set(feats.patches) == {0, 3}
    assert torch.allclose(feats.patches[0].norm(dim=-1), torch.ones(3, 64))


def test_patch_tokens_are_the_blocks_outputs(tiny_model) -> None:
    """Layer k tokens equal open_clip's own forward_intermediates for block k (after ln_post)."""
    ex = DenseFeatureExtractor(tiny_model.visual, None, (1,))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ours = ex(x).patches[1]
        inter = tiny_model.visual.forward_intermediates(x, indices=[1], output_fmt="NLC", intermediates_only=True)
        theirs = F.normalize(tiny_model.visual.ln_post(inter["image_intermediates"][0]), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_dense_tokens_are_local(tiny_model) -> None:
    """Changing one image patch moves that patch's dense token far more than a distant one's."""
    ex = DenseFeatureExtractor(tiny_model.visual, None, ())
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., 0:8, 0:8] = 3.0  # patch (0, 0)
    with torch.inference_mode():
        a, b = ex(x).dense[0], ex(y).dense[0]
    change = 1 - (a * b).sum(-1)
    assert change[0] > 3 * change[63]


def test_resolution_is_configurable(tiny_model) -> None:
    ex = DenseFeatureExtractor(tiny_model.visual, 128, (2,))
    with torch.inference_mode():
        feats = ex(torch.randn(1, 3, 128, 128))
    assert feats.grid == (16, 16)
    assert feats.dense.shape == (1, 256, 64)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        DenseFeatureExtractor(tiny_model.visual, 100, ())
    with pytest.raises(ValueError, match="out of range"):
        DenseFeatureExtractor(tiny_model.visual, None, (7,))


def test_pos_embed_interpolation_keeps_class_token_and_identity() -> None:
    pos = torch.randn(1 + 16, 8)
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    big = interpolate_pos_embed(pos, (4, 4), (8, 6))
    assert big.shape == (1 + 48, 8)
    assert torch.equal(big[0], pos[0])


def test_features_batch_helpers() -> None:
    feats = Features(torch.randn(4, 2), torch.randn(4, 3, 2), {1: torch.randn(4, 3, 5)}, (1, 3))
    sub = feats.index(torch.tensor([0, 2]))
    assert sub.batch_size == 2 and sub.patches[1].shape == (2, 3, 5)
    assert Features.cat([sub, feats.index(1)]).batch_size == 3
    with pytest.raises(ValueError):
        Features.cat([])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("ViT-B-16", 224), ("ViT-B-16-plus-240", 240), ("ViT-B-32", 224)])
def test_real_architectures(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    ex = DenseFeatureExtractor(model.visual, None, (6, 9))
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        feats = ex(x)
        ref = F.normalize(model.encode_image(x), dim=-1)
    assert torch.allclose(feats.global_emb, ref, atol=1e-4)
    assert feats.dense.shape[-1] == model.text_projection.shape[1]


@pytest.mark.slow
def test_non_vit_tower_is_image_level_only() -> None:
    model = open_clip.create_model("RN50", pretrained=None).eval()
    assert not supports_dense(model.visual)
    ex = DenseFeatureExtractor(model.visual, None, (6,))
    with torch.inference_mode():
        feats = ex(torch.randn(1, 3, 224, 224))
    assert feats.dense is None and feats.patches == {}
    assert feats.global_emb.shape == (1, 1024)
