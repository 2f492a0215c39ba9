"""`inspector weights` sub-commands, run in-process through argparse."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import huggingface_hub
import open_clip
import pytest
import torch
from safetensors.torch import save_file

import inspector.backbone  # noqa: F401  (registers the tiny architecture)
from inspector.backbone import resolve, weights
from inspector.backbone.checkpoint import file_sha256
from inspector.backbone.registry import TINY_MODEL
from inspector.cli import weights as weights_cli


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector")
    sub = parser.add_subparsers(dest="command")
    weights_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def tiny_file(path: Path, seed: int = 123) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = open_clip.create_model(TINY_MODEL, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(autouse=True)
def private_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf = tmp_path / "hf-hub"
    hf.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(resolve, "openclip_cache_dir", lambda: tmp_path / "clip-cache")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", mock.Mock(side_effect=AssertionError("network")))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no wrapping inside the asserted cells


def test_list_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["weights", "list", "--model-dir", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "No backbone weights on this machine" in out
    assert "inspector weights fetch MODEL TAG" in out


def test_import_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_file(tmp_path / "usb" / "w.safetensors")
    model_dir = tmp_path / "models"
    code = run(["weights", "import", str(src), "--model", TINY_MODEL, "--model-dir", str(model_dir),
                "--name", "line3"])
    out = capsys.readouterr().out
    assert code == 0
    sha = file_sha256(src)
    assert "pretrained: line3.safetensors" in out
    assert f"sha256: {sha}" in out
    manifest = json.loads((model_dir / TINY_MODEL / "manifest.json").read_text())
    assert manifest["files"]["line3.safetensors"]["sha256"] == sha

    assert run(["weights", "list", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert TINY_MODEL in out and "line3.safetensors" in out and "imported" in out and sha[:12] in out
    assert run(["weights", "list", "--model-dir", str(model_dir), "--model", "ViT-B-16"]) == 0
    assert "No backbone weights" in capsys.readouterr().out


def test_import_mismatch_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_file(tmp_path / "w.safetensors")
    code = run(["weights", "import", str(src), "--model", "RN50", "--model-dir", str(tmp_path / "models")])
    captured = capsys.readouterr()
    assert code == 2
    assert "does not fit RN50" in captured.err and captured.out == ""


def test_import_missing_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["weights", "import", str(tmp_path / "nope.safetensors"), "--model", TINY_MODEL,
                "--model-dir", str(tmp_path / "models")])
    assert code == 2
    assert "nope.safetensors not found" in capsys.readouterr().err


def test_fetch_prints_path_and_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tiny_file(tmp_path / "hub" / "open_clip_model.safetensors")
    dl = mock.Mock(return_value=str(target))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", dl)
    monkeypatch.setattr(weights, "_hub_host_resolves", lambda endpoint: True)
    assert run(["weights", "fetch", "ViT-B-16", "laion2b_s34b_b88k", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(target) in out and file_sha256(target) in out
    assert "inspector weights import open_clip_model.safetensors --model ViT-B-16 --name laion2b_s34b_b88k" in out
    assert dl.call_args.kwargs["repo_id"] == "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"


def test_fetch_offline_is_a_user_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "_hub_host_resolves", lambda endpoint: False)
    assert run(["weights", "fetch", "ViT-B-16", "laion2b_s34b_b88k"]) == 2
    err = capsys.readouterr().err
    assert "no network access" in err
    assert "inspector weights import FILE --model ViT-B-16 --name laion2b_s34b_b88k" in err


def test_fetch_unknown_tag_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["weights", "fetch", "ViT-B-16", "nope"]) == 2
    assert "not an open_clip pretrained tag" in capsys.readouterr().err


def test_weights_without_subcommand_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["weights"]) == 2
    assert "usage:" in capsys.readouterr().err
