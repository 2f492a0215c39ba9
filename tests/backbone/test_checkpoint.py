"""Weights files: pickled code, TorchScript, corrupt files and mismatched checkpoints are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inspector.backbone.loading import load_backbone
from inspector.backbone.registry import TINY_MODEL
from inspector.config import ModelSpec
from inspector.errors import WeightsIntegrityError
from tests.backbone.conftest import save_checkpoint, trained_state_dict


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
