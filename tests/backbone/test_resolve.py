"""Weights resolution: files by path or model_dir name, tags from the local caches offline, fix-it errors."""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import pytest
import torch

from inspector.backbone.checkpoint import file_sha256
from inspector.backbone.loading import load_backbone
from inspector.backbone.registry import TINY_MODEL
from inspector.backbone.resolve import resolve_weights
from inspector.config import ModelSpec
from inspector.errors import WeightsIntegrityError, WeightsNotFoundError
from tests.backbone.conftest import (
    FAKE_REPO,
    assert_no_network,
    embeddings,
    fake_tag,
    put_in_hf_cache,
    save_checkpoint,
    trained_state_dict,
)


def test_relative_path_and_name_in_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = trained_state_dict()
    save_checkpoint(tmp_path / "work" / "w.safetensors", sd)
    monkeypatch.chdir(tmp_path / "work")
    res = resolve_weights(TINY_MODEL, "w.safetensors", None)
    assert res.kind == "file" and res.path == Path("w.safetensors")

    model_dir = tmp_path / "models"
    save_checkpoint(model_dir / TINY_MODEL / "line3.safetensors", sd)
    res = resolve_weights(TINY_MODEL, "line3.safetensors", model_dir)
    assert res.kind == "file" and res.path == model_dir / TINY_MODEL / "line3.safetensors"
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="line3.safetensors"), model_dir)
    assert bb.identity.label().startswith(f"{TINY_MODEL}/line3.safetensors sha256:")


# --------------------------------------------------------------------------------------------
# tags, offline


def test_tag_from_hf_cache_without_network(caches, no_network, monkeypatch: pytest.MonkeyPatch) -> None:
    hf, _ = caches
    fake_tag(monkeypatch, hf_hub=f"{FAKE_REPO}/", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    sd = trained_state_dict()
    path = put_in_hf_cache(hf, FAKE_REPO, "open_clip_model.safetensors", sd)
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="FakeTag"))  # open_clip normalises case
    assert_no_network(no_network)
    assert bb.identity.source == "tag" and bb.identity.pretrained == "faketag"
    assert bb.identity.sha256 == file_sha256(path)
    assert bb.identity.label() == f"{TINY_MODEL}/faketag sha256:{bb.identity.sha256[:8]}"
    assert bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.25, 0.25, 0.25)
    assert tuple(bb.model.visual.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)
    ref = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    assert torch.equal(embeddings(bb.model)[0], embeddings(ref.model)[0])


def test_tag_falls_back_to_bin_name_in_hf_cache(caches, no_network, monkeypatch: pytest.MonkeyPatch) -> None:
    hf, _ = caches
    fake_tag(monkeypatch)
    put_in_hf_cache(hf, FAKE_REPO, "open_clip_pytorch_model.bin", trained_state_dict())
    res = resolve_weights(TINY_MODEL, "faketag", None)
    assert res.kind == "tag" and res.path is not None and res.path.name == "open_clip_pytorch_model.bin"
    assert_no_network(no_network)


def test_quick_gelu_follows_the_tag(caches, no_network, monkeypatch: pytest.MonkeyPatch) -> None:
    hf, _ = caches
    fake_tag(monkeypatch, hf_hub=f"{FAKE_REPO}/", quick_gelu=True)
    put_in_hf_cache(hf, FAKE_REPO, "open_clip_model.safetensors", trained_state_dict())
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="faketag"))
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in bb.model.modules())


def test_tag_from_openclip_url_cache(caches, no_network, monkeypatch: pytest.MonkeyPatch) -> None:
    _, oc = caches
    tmp = oc / "staging.pt"
    save_checkpoint(tmp, trained_state_dict())
    sha = file_sha256(tmp)
    name = f"tiny-{sha[:8]}.pt"
    tmp.rename(oc / name)
    url = f"https://github.com/mlfoundations/open_clip/releases/download/v0/{name}"
    fake_tag(monkeypatch, "urltag", url=url)
    res = resolve_weights(TINY_MODEL, "urltag", None)
    assert res.kind == "tag" and res.path == oc / name and res.sha256 == sha

    fake_tag(monkeypatch, "urltag2", url=url.replace(sha[:8], "deadbeef"))
    (oc / name).rename(oc / "tiny-deadbeef.pt")
    with pytest.raises(WeightsIntegrityError, match="checksum"):
        resolve_weights(TINY_MODEL, "urltag2", None)
    assert_no_network(no_network)


def test_missing_tag_fails_fast_with_fix(caches, no_network, tmp_path: Path) -> None:
    hf, _ = caches
    with pytest.raises(WeightsNotFoundError) as err:
        load_backbone(ModelSpec(name="ViT-B-16", pretrained="laion2b_s34b_b88k"), tmp_path / "models")
    assert_no_network(no_network)
    msg = str(err.value)
    assert "No local weights for ViT-B-16 / laion2b_s34b_b88k" in msg
    assert str(hf / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K") in msg
    assert f"{tmp_path / 'models' / 'ViT-B-16'}{os.sep}" in msg
    assert "`inspector weights fetch ViT-B-16 laion2b_s34b_b88k`" in msg
    assert (f"`inspector weights import FILE --model ViT-B-16 --name laion2b_s34b_b88k "
            f"--model-dir {tmp_path / 'models'}`") in msg
    assert "`pretrained: random`" in msg


def test_missing_url_tag_names_openclip_cache(caches, no_network) -> None:
    _, oc = caches
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("ViT-B-32", "laion2b_e16", None)
    assert_no_network(no_network)
    assert str(oc / "vit_b_32-laion2b_e16-af8dbd0c.pth") in str(err.value)


def test_missing_file_and_unknown_pretrained(caches, no_network, tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="not found") as err:
        resolve_weights(TINY_MODEL, str(tmp_path / "nope.safetensors"), tmp_path)
    assert "nope.safetensors" in str(err.value)
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("ViT-B-16", "laion2b_s34b", None)
    msg = str(err.value)
    assert "neither an open_clip tag" in msg and "laion2b_s34b_b88k" in msg
    assert_no_network(no_network)


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(WeightsNotFoundError) as err:
        load_backbone(ModelSpec(name="ViT-B/16", pretrained="random"))
    assert "ViT-B-16" in str(err.value)
    with pytest.raises(WeightsNotFoundError, match=TINY_MODEL):
        resolve_weights("inspector-tiny-vlt", "random", None)
