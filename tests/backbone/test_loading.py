"""Backbone loading: local files equal open_clip's own loading, random weights are reproducible, devices."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

from inspector.backbone.checkpoint import file_sha256
from inspector.backbone.loading import load_backbone, resolve_device
from inspector.backbone.registry import TINY_MODEL
from inspector.config import ModelSpec
from inspector.errors import InspectorError, WeightsIntegrityError
from tests.backbone.conftest import embeddings, open_clip_reference, save_checkpoint, trained_state_dict

# --------------------------------------------------------------------------------------------
# random


def test_random_is_reproducible_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(999)
    state = torch.get_rng_state()
    a = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random"))
    assert torch.equal(torch.get_rng_state(), state)
    b = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random"))
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb), ka
    ident = a.identity
    assert ident.untrained and ident.source == "random" and ident.sha256 is None
    assert ident.label() == f"{TINY_MODEL} (untrained backbone)"


def test_loaded_backbone_is_frozen_eval_and_usable() -> None:
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random", device="cpu"))
    assert not bb.model.training
    assert all(not p.requires_grad for p in bb.model.parameters())
    assert bb.device == torch.device("cpu")
    assert next(bb.model.parameters()).device.type == "cpu"
    assert bb.native_image_size == 64
    assert bb.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert bb.std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    tokens = bb.tokenizer(["a scratch"])
    assert tokens.shape == (1, 77)


def test_weights_stay_fp32_whatever_the_precision() -> None:
    # precision is applied with torch.autocast by the engine; the weights stay fp32
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random", precision="bf16"))
    assert {p.dtype for p in bb.model.parameters()} == {torch.float32}


# --------------------------------------------------------------------------------------------
# files


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".bin"])
def test_file_weights_equal_open_clip_loading(tmp_path: Path, suffix: str) -> None:
    path = save_checkpoint(tmp_path / f"tiny{suffix}", trained_state_dict())
    ours = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    ref = open_clip_reference(TINY_MODEL, path)
    img_a, txt_a = embeddings(ours.model)
    img_b, txt_b = embeddings(ref)
    assert torch.equal(img_a, img_b)
    assert torch.equal(txt_a, txt_b)
    # open_clip's model as returned (parameters requiring grad): equal up to kernel rounding
    unfrozen, _, _ = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=str(path))
    img_u, txt_u = embeddings(unfrozen)
    torch.testing.assert_close(img_a, img_u, rtol=0, atol=1e-5)
    torch.testing.assert_close(txt_a, txt_u, rtol=0, atol=1e-5)
    # and the file really was loaded: it differs from the untrained backbone
    img_r, _ = embeddings(load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random")).model)
    assert not torch.equal(img_a, img_r)

    ident = ours.identity
    assert ident.source == "file" and not ident.untrained
    assert ident.sha256 == file_sha256(path)
    assert ident.label() == f"{TINY_MODEL}/tiny{suffix} sha256:{ident.sha256[:8]}"


def test_state_dict_wrapper_and_module_prefix(tmp_path: Path) -> None:
    sd = trained_state_dict()
    plain = save_checkpoint(tmp_path / "plain.pt", sd)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    ours = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(wrapped)))
    ref = open_clip_reference(TINY_MODEL, wrapped)
    plain_bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(plain)))
    img, txt = embeddings(ours.model)
    for other in (ref, plain_bb.model):
        img_o, txt_o = embeddings(other)
        assert torch.equal(img, img_o) and torch.equal(txt, txt_o)



def test_sha256_pin(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "w.safetensors", trained_state_dict())
    actual = file_sha256(path)
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path), sha256=actual.upper()))
    assert bb.identity.sha256 == actual
    wrong = "0" * 64
    with pytest.raises(WeightsIntegrityError) as err:
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path), sha256=wrong))
    msg = str(err.value)
    assert str(path) in msg and wrong in msg and actual in msg



# --------------------------------------------------------------------------------------------
# device


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InspectorError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InspectorError, match="CUDA is not available"):
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random", device="cuda:0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(InspectorError, match="1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_loads_onto_gpu(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "w.safetensors", trained_state_dict())
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path), device="cuda"))
    assert next(bb.model.parameters()).device.type == "cuda" and bb.device.type == "cuda"


# --------------------------------------------------------------------------------------------
# a real architecture


@pytest.mark.slow
def test_vit_b_32_file_equals_open_clip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "vit_b_32.safetensors", trained_state_dict(model="ViT-B-32"))
    ours = load_backbone(ModelSpec(name="ViT-B-32", pretrained=str(path)))
    ref = open_clip_reference("ViT-B-32", path)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a scratch on a metal ring"])
    with torch.no_grad():
        assert torch.equal(ours.model.encode_image(images), ref.encode_image(images))
        assert torch.equal(ours.model.encode_text(tokens), ref.encode_text(tokens))
    assert ours.native_image_size == 224
