"""`inspector weights` operations: list, import (validated, atomic, recorded) and fetch (network mocked)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from unittest import mock

import httpx2
import huggingface_hub
import open_clip
import open_clip.pretrained
import pytest
import torch
from huggingface_hub import errors as hf_errors
from safetensors.torch import save_file

import inspector.backbone  # noqa: F401  (registers the tiny architecture)
from inspector.backbone import weights
from inspector.backbone.checkpoint import file_sha256
from inspector.backbone.loading import load_backbone
from inspector.backbone.registry import TINY_MODEL
from inspector.backbone.resolve import resolve_weights
from inspector.backbone.weights import fetch_weights, import_weights, list_weights
from inspector.config import ModelSpec
from inspector.errors import InspectorError, WeightsIntegrityError, WeightsNotFoundError

FAKE_REPO = "inspector-test/tiny-vit-fake"


def trained_state_dict(seed: int = 123) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = open_clip.create_model(TINY_MODEL, pretrained=None)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def write_safetensors(path: Path, seed: int = 123) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(trained_state_dict(seed), str(path))
    return path


@pytest.fixture
def fake_tag(monkeypatch: pytest.MonkeyPatch) -> str:
    tags = dict(open_clip.pretrained._PRETRAINED.get(TINY_MODEL, {}))
    tags["faketag"] = open_clip.pretrained._pcfg(hf_hub=f"{FAKE_REPO}/", mean=(0.5, 0.5, 0.5))
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, tags)
    return "faketag"


# --------------------------------------------------------------------------------------------
# list


def test_list_empty(tmp_path: Path, caches) -> None:
    assert list_weights(tmp_path / "models") == []
    (tmp_path / "models").mkdir()
    assert list_weights(tmp_path / "models") == []


def test_list_after_import_and_caches(tmp_path: Path, caches, fake_tag: str) -> None:
    hf, oc = caches
    model_dir = tmp_path / "models"
    src = write_safetensors(tmp_path / "in" / "line3.safetensors")
    import_weights(src, TINY_MODEL, model_dir)

    commit = "0" * 40
    repo = hf / f"models--{FAKE_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    cached = write_safetensors(repo / "snapshots" / commit / "open_clip_model.safetensors")
    (oc / "vit_b_32-laion2b_e16-af8dbd0c.pth").write_bytes(b"x" * 10)

    entries = {(e.model, e.name, e.source): e for e in list_weights(model_dir)}
    imported = entries[(TINY_MODEL, "line3.safetensors", "imported")]
    assert imported.sha256 == file_sha256(src)
    assert imported.path == model_dir / TINY_MODEL / "line3.safetensors"
    assert imported.size == src.stat().st_size
    hf_entry = entries[(TINY_MODEL, "faketag", "hf-cache")]
    assert hf_entry.path == cached and hf_entry.sha256 is None
    oc_entry = entries[("ViT-B-32", "laion2b_e16", "openclip-cache")]
    assert oc_entry.size == 10


# --------------------------------------------------------------------------------------------
# import


def test_import_copies_records_and_loads(tmp_path: Path, caches) -> None:
    model_dir = tmp_path / "models"
    src = write_safetensors(tmp_path / "usb" / "weights.safetensors")
    entry = import_weights(src, TINY_MODEL, model_dir, name="line3")
    dest = model_dir / TINY_MODEL / "line3.safetensors"
    assert entry.path == dest and dest.read_bytes() == src.read_bytes()
    sha = file_sha256(src)
    assert entry.sha256 == sha and entry.source == "imported" and entry.tag is None
    manifest = json.loads((model_dir / TINY_MODEL / "manifest.json").read_text())
    record = manifest["files"]["line3.safetensors"]
    assert record["sha256"] == sha and record["size"] == dest.stat().st_size
    assert record["imported_from"] == str(src.absolute())
    assert not [p for p in (model_dir / TINY_MODEL).iterdir() if p.name.endswith(".tmp")]

    snippet = entry.yaml_snippet()
    assert f"pretrained: line3.safetensors\nsha256: {sha}" in snippet
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="line3.safetensors", sha256=sha), model_dir)
    assert bb.identity.sha256 == sha

    # the same content again is a no-op; different content under the same name is refused
    again = import_weights(src, TINY_MODEL, model_dir, name="line3")
    assert again.sha256 == sha
    other = write_safetensors(tmp_path / "usb" / "other.safetensors", seed=5)
    with pytest.raises(InspectorError, match="already exists with different content"):
        import_weights(other, TINY_MODEL, model_dir, name="line3")
    assert file_sha256(dest) == sha


def test_import_under_tag_name_resolves_the_tag(tmp_path: Path, caches, fake_tag: str) -> None:
    model_dir = tmp_path / "models"
    src = write_safetensors(tmp_path / "usb" / "open_clip_model.safetensors")
    with mock.patch.object(huggingface_hub, "hf_hub_download", side_effect=AssertionError("network")) as dl:
        entry = import_weights(src, TINY_MODEL, model_dir, name=fake_tag)
        assert entry.tag == fake_tag and entry.path.name == "faketag.safetensors"
        assert f"pretrained: {fake_tag}\n" in entry.yaml_snippet()
        res = resolve_weights(TINY_MODEL, fake_tag, model_dir)
        assert res.kind == "tag" and res.path == entry.path and res.tag == fake_tag
        bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=fake_tag, sha256=entry.sha256), model_dir)
        assert bb.mean == (0.5, 0.5, 0.5)
        # the file name works too and still knows its tag's preprocessing
        by_file = load_backbone(ModelSpec(name=TINY_MODEL, pretrained="faketag.safetensors"), model_dir)
        assert by_file.mean == (0.5, 0.5, 0.5) and by_file.identity.source == "file"
    assert not dl.called


def test_import_infers_tag_from_hf_cache_path(tmp_path: Path, caches, fake_tag: str) -> None:
    hf, _ = caches
    snap = hf / f"models--{FAKE_REPO.replace('/', '--')}" / "snapshots" / ("1" * 40)
    src = write_safetensors(snap / "open_clip_model.safetensors")
    entry = import_weights(src, TINY_MODEL, tmp_path / "models")
    assert entry.name == "open_clip_model.safetensors" and entry.tag == fake_tag


def test_import_mismatched_checkpoint_fails(tmp_path: Path, caches) -> None:
    sd = trained_state_dict()
    del sd["visual.proj"], sd["text_projection"]
    sd["head.fc.weight"] = torch.zeros(2, 2)
    src = tmp_path / "wrong.safetensors"
    save_file(sd, str(src))
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsIntegrityError) as err:
        import_weights(src, TINY_MODEL, model_dir)
    msg = str(err.value)
    assert "missing key" in msg and "visual.proj" in msg and "text_projection" in msg
    assert "unexpected key" in msg and "head.fc.weight" in msg
    assert not (model_dir / TINY_MODEL / "wrong.safetensors").exists()
    assert not (model_dir / TINY_MODEL / "manifest.json").exists()


def test_import_for_another_architecture_fails(tmp_path: Path, caches) -> None:
    src = write_safetensors(tmp_path / "tiny.safetensors")
    with pytest.raises(WeightsIntegrityError, match="does not fit"):
        import_weights(src, "RN50", tmp_path / "models")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_import_refuses_pickle(tmp_path: Path, caches) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": _Evil(marker)}}, src)
    with pytest.raises(WeightsIntegrityError, match="Refusing to load"):
        import_weights(src, TINY_MODEL, tmp_path / "models")
    assert not marker.exists()
    assert not (tmp_path / "models" / TINY_MODEL / "evil.pt").exists()


def test_import_user_errors(tmp_path: Path, caches) -> None:
    with pytest.raises(WeightsNotFoundError, match="not found"):
        import_weights(tmp_path / "nope.safetensors", TINY_MODEL, tmp_path / "models")
    src = write_safetensors(tmp_path / "w.safetensors")
    with pytest.raises(WeightsNotFoundError, match="ViT-B-16"):
        import_weights(src, "ViT-B/16", tmp_path / "models")
    with pytest.raises(InspectorError, match="suffix"):
        import_weights(src, TINY_MODEL, tmp_path / "models", name="w.pt")
    with pytest.raises(InspectorError, match="no folders"):
        import_weights(src, TINY_MODEL, tmp_path / "models", name="../escape")


# --------------------------------------------------------------------------------------------
# fetch (network always mocked)


@pytest.fixture
def hub_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "_hub_host_resolves", lambda endpoint: True)


def _not_found(url: str) -> hf_errors.RemoteEntryNotFoundError:
    response = httpx2.Response(404, request=httpx2.Request("HEAD", url))
    return hf_errors.RemoteEntryNotFoundError("404 Entry Not Found", response=response)


def test_fetch_downloads_the_tag_file(tmp_path: Path, hub_resolves, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "open_clip_model.safetensors"
    seen_offline: list[bool] = []

    def download(**kwargs):
        seen_offline.append(huggingface_hub.constants.HF_HUB_OFFLINE)
        return str(target)

    dl = mock.Mock(side_effect=download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", dl)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    path = fetch_weights("ViT-B-16", "laion2b_s34b_b88k", progress=False)
    assert path == target
    kwargs = dl.call_args.kwargs
    assert kwargs["repo_id"] == "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"
    assert kwargs["filename"] == "open_clip_model.safetensors"
    assert seen_offline == [False]  # an explicit fetch may go online ...
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True  # ... and restores offline mode


def test_fetch_falls_back_to_bin(tmp_path: Path, hub_resolves, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def download(repo_id: str, filename: str, **_: object) -> str:
        calls.append(filename)
        if filename.endswith(".safetensors"):
            raise _not_found(f"https://huggingface.co/{repo_id}/resolve/main/{filename}")
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    path = fetch_weights("ViT-B-16", "openai", progress=False)
    assert calls == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    assert path.name == "open_clip_pytorch_model.bin"


def test_fetch_without_network_says_so(hub_resolves, monkeypatch: pytest.MonkeyPatch) -> None:
    err = hf_errors.LocalEntryNotFoundError("cannot find the requested files in the local cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", mock.Mock(side_effect=err))
    with pytest.raises(WeightsNotFoundError) as exc:
        fetch_weights("ViT-B-16", "laion2b_s34b_b88k", progress=False)
    msg = str(exc.value)
    assert "no network access" in msg
    assert "`inspector weights import FILE --model ViT-B-16 --name laion2b_s34b_b88k`" in msg


def test_fetch_fails_fast_when_hub_host_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", mock.Mock(side_effect=socket.gaierror(-2, "Name unknown")))
    dl = mock.Mock(side_effect=AssertionError("network"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", dl)
    with pytest.raises(WeightsNotFoundError, match=r"cannot resolve huggingface\.co"):
        fetch_weights("ViT-B-16", "laion2b_s34b_b88k", progress=False)
    assert not dl.called


def test_fetch_unknown_tag_or_model(monkeypatch: pytest.MonkeyPatch) -> None:
    dl = mock.Mock(side_effect=AssertionError("network"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", dl)
    with pytest.raises(WeightsNotFoundError, match="laion2b_s34b_b88k"):
        fetch_weights("ViT-B-16", "laion5b", progress=False)
    with pytest.raises(WeightsNotFoundError, match="ViT-B-16"):
        fetch_weights("ViT-B_16", "laion2b_s34b_b88k", progress=False)
    assert not dl.called
