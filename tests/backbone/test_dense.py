from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import (
    DenseFeatureExtractor,
    Features,
    interpolate_pos_embed,
    resolve_layers,
    supports_dense,
)
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


@pytest.mark.parametrize(("layers", "depth", "blocks"), [
    ((0.5, 0.75), 12, (6, 9)),  # the default on ViT-B-16: today's blocks
    ((6, 9), 12, (6, 9)),  # absolute, as station configs write them
    ((-6, -3), 12, (6, 9)),
    ((0.5, 0.75), 24, (12, 18)),  # ViT-L-14: the same relative depth, not its 7th and 10th blocks
    ((6, 9), 24, (6, 9)),
    ((0.5, 0.75), 4, (2, 3)),  # the tiny test architecture
    ((1.0, -1, 3), 4, (3,)),  # the last block three ways, once
    ((0.29,), 100, (29,)),  # no binary-rounding slip (0.29 * 100 = 28.999...)
    ((0.01,), 12, (0,)),
    ((), 12, ()),
])
def test_resolve_layers(layers, depth: int, blocks: tuple[int, ...]) -> None:
    assert resolve_layers(layers, depth) == blocks


@pytest.mark.parametrize(("layers", "match"), [
    ((12,), r"block 12 is out of range for ViT-B-16, which has 12 blocks \(0\.\.11"),
    ((-13,), r"block -13 is out of range for ViT-B-16, which has 12 blocks"),
    ((0.0,), r"fraction 0\.0 of the depth must lie in \(0, 1\]"),
    ((1.5,), r"fraction 1\.5"),
    ((True,), "not a block number"),
    (("6",), "not a block number"),
])
def test_resolve_layers_refuses_with_the_model_and_depth(layers, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_layers(layers, 12, "ViT-B-16")


def test_extractor_resolves_relative_layers_on_its_depth(tiny_model) -> None:
    relative = DenseFeatureExtractor(tiny_model.visual, None, (0.5, -1), model=TINY_MODEL)
    absolute = DenseFeatureExtractor(tiny_model.visual, None, (2, 3))
    assert relative.layers == absolute.layers == (2, 3)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        a, b = relative(x), absolute(x)
    assert set(a.patches) == {2, 3} and all(torch.equal(a.patches[k], b.patches[k]) for k in (2, 3))
    with pytest.raises(ValueError, match=f"out of range for {TINY_MODEL}, which has 4 blocks"):
        DenseFeatureExtractor(tiny_model.visual, None, (4,), model=TINY_MODEL)


def test_default_layers_are_todays_blocks_on_vit_b_and_scale_on_vit_l() -> None:
    """The config default resolves to blocks 6 and 9 of ViT-B-16 (as [6, 9] did) and 12, 18 of ViT-L-14."""
    from inspector.config import ModelSpec

    default = ModelSpec(name="ViT-B-16", pretrained="random").feature_layers
    depth = {name: open_clip.get_model_config(name)["vision_cfg"]["layers"] for name in ("ViT-B-16", "ViT-L-14")}
    assert depth == {"ViT-B-16": 12, "ViT-L-14": 24}
    assert resolve_layers(default, depth["ViT-B-16"]) == resolve_layers((6, 9), 12) == (6, 9)
    assert resolve_layers(default, depth["ViT-L-14"]) == (12, 18)
