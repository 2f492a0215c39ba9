"""Shared helpers of the backbone tests: stand-in trained weights, private caches, a network guard."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from unittest import mock

import huggingface_hub
import open_clip
import open_clip.pretrained
import pytest
import torch
from safetensors.torch import save_file

import inspector.backbone  # noqa: F401  (registers the tiny architecture)
from inspector.backbone import resolve
from inspector.backbone.registry import TINY_MODEL

FAKE_REPO = "inspector-test/tiny-vit-fake"


def trained_state_dict(seed: int = 123, model: str = TINY_MODEL) -> dict[str, torch.Tensor]:
    """A state dict that differs from the seed-0 'random' backbone (stands in for real weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = open_clip.create_model(model, pretrained=None)
    with torch.no_grad():
        net.logit_scale.fill_(3.0)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state_dict, str(path))
    else:
        torch.save(state_dict, path)
    return path


def open_clip_reference(model: str, path: Path) -> torch.nn.Module:
    """open_clip's own loading of a file, frozen like ours.

    Freezing matters for bit-exactness: with torch 2.14 on CPU, F.linear on a non-contiguous 3-D
    input picks a different kernel when the weight requires grad (even under no_grad), so an
    unfrozen model's text embeddings differ in the last bits (~1e-6).
    """
    ref, _, _ = open_clip.create_model_and_transforms(model, pretrained=str(path))
    return ref.eval().requires_grad_(False)


def embeddings(net: torch.nn.Module, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    images = torch.randn(2, 3, size, size, generator=gen)
    tokens = open_clip.get_tokenizer(TINY_MODEL)(["a photo of a scratch", "a flawless metal ring"])
    net.eval()
    with torch.no_grad():
        return net.encode_image(images), net.encode_text(tokens)


def fake_tag(monkeypatch: pytest.MonkeyPatch, tag: str = "faketag", **cfg: object) -> dict:
    """Register an open_clip pretrained tag for the tiny architecture (undone after the test)."""
    entry = open_clip.pretrained._pcfg(**cfg) if cfg else open_clip.pretrained._pcfg(hf_hub=f"{FAKE_REPO}/")
    tags = dict(open_clip.pretrained._PRETRAINED.get(TINY_MODEL, {}))
    tags[tag] = entry
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, tags)
    return entry


def put_in_hf_cache(cache: Path, repo_id: str, filename: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Lay a file out the way huggingface_hub caches it (refs/main -> snapshots/<commit>/file)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return save_checkpoint(repo / "snapshots" / commit / filename, state_dict)


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty, private HF hub and open_clip caches."""
    hf = tmp_path / "hf-hub"
    oc = tmp_path / "clip-cache"
    hf.mkdir()
    oc.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(resolve, "openclip_cache_dir", lambda: oc)
    return hf, oc


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> dict[str, mock.Mock]:
    """Every download path raises; the test asserts none was called."""
    guards: dict[str, mock.Mock] = {}

    def guard(target: object, name: str) -> None:
        m = mock.Mock(side_effect=AssertionError(f"network call: {name}"))
        monkeypatch.setattr(target, name, m)
        guards[f"{getattr(target, '__name__', target)}.{name}"] = m

    guard(huggingface_hub, "hf_hub_download")
    guard(huggingface_hub.file_download, "hf_hub_download")
    guard(huggingface_hub, "snapshot_download")
    guard(open_clip.pretrained, "hf_hub_download")
    guard(open_clip.pretrained, "download_pretrained")
    guard(open_clip.pretrained, "download_pretrained_from_url")
    guard(open_clip.pretrained, "download_pretrained_from_hf")
    guard(urllib.request, "urlopen")
    guard(socket, "create_connection")
    guard(socket.socket, "connect")
    return guards


def assert_no_network(guards: dict[str, mock.Mock]) -> None:
    called = [name for name, m in guards.items() if m.called]
    assert not called, f"network functions were called: {called}"
