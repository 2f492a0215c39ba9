"""Backbone loading: local files equal open_clip's own loading, tags resolve offline, pickles are refused."""

from __future__ import annotations

import os
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
from inspector.backbone import loading
from inspector.backbone.loading import load_backbone, resolve_device, resolve_weights
from inspector.backbone.registry import TINY_MODEL
from inspector.config import ModelSpec
from inspector.errors import InspectorError, WeightsIntegrityError, WeightsNotFoundError

FAKE_REPO = "inspector-test/tiny-vit-fake"


# --------------------------------------------------------------------------------------------
# helpers


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
    monkeypatch.setattr(loading, "openclip_cache_dir", lambda: oc)
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
    assert ident.sha256 == loading.file_sha256(path)
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


def test_sha256_pin(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "w.safetensors", trained_state_dict())
    actual = loading.file_sha256(path)
    bb = load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path), sha256=actual.upper()))
    assert bb.identity.sha256 == actual
    wrong = "0" * 64
    with pytest.raises(WeightsIntegrityError) as err:
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path), sha256=wrong))
    msg = str(err.value)
    assert str(path) in msg and wrong in msg and actual in msg


def test_mismatched_checkpoint_names_keys(tmp_path: Path) -> None:
    sd = trained_state_dict()
    sd.pop("visual.proj")
    sd["extra.weight"] = torch.zeros(3)
    sd["text_projection"] = torch.zeros(5, 5)
    path = save_checkpoint(tmp_path / "bad.safetensors", sd)
    with pytest.raises(WeightsIntegrityError) as err:
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    msg = str(err.value)
    assert "visual.proj" in msg and "extra.weight" in msg and "text_projection" in msg
    assert "missing" in msg and "unexpected" in msg and "shape" in msg


class _Evil:
    """Pickles to a call of os.system: loading it with full unpickling would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(2), "payload": _Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(WeightsIntegrityError) as err:
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    assert not marker.exists()
    msg = str(err.value)
    assert "Refusing to load" in msg and str(path) in msg and "arbitrary code" in msg


def _typeerror_pickle(marker: Path) -> bytes:
    """A raw pickle that makes torch's weights-only unpickler raise TypeError (not UnpicklingError)
    before it reaches an os.system call; full unpickling runs the call."""
    cmd = f"touch '{marker}'".encode()
    return (b"\x80\x02" + b"ctorch\nTensor\n)R" + b"\x89NN\x87b0"
            + f"c{os.system.__module__}\nsystem\n".encode()
            + b"X" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R.")


def test_no_unsafe_fallback_on_typeerror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # open_clip's load_state_dict retries torch.load WITHOUT weights_only on TypeError; with this
    # variable set torch then unpickles fully. Our reader passes weights_only=True and never retries.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(_typeerror_pickle(marker))
    calls: list[object] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(WeightsIntegrityError, match="never re-read with full pickle"):
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    assert calls == [True]
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jit.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsIntegrityError, match="TorchScript"):
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))


def test_corrupt_and_unsupported_files(tmp_path: Path) -> None:
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsIntegrityError, match=r"not a valid \.safetensors"):
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(bad)))
    npz = tmp_path / "w.npz"
    npz.write_bytes(b"PK")
    with pytest.raises(WeightsIntegrityError, match="Unsupported weights file type"):
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(npz)))


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
    assert bb.identity.sha256 == loading.file_sha256(path)
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
    sha = loading.file_sha256(tmp)
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
