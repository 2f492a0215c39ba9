"""Checkpoints are read only as safetensors or with torch.load(weights_only=True): real pickle payloads
(a ``__reduce__`` that would run a command) are refused with a clear error and never executed, on every
path a checkpoint can take: backbone weights (.pt / .pth / .bin), ``inspector weights import``, and the
trained-adapter files of the model registry."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from inspector.backbone.checkpoint import read_state_dict
from inspector.backbone.loading import load_backbone
from inspector.backbone.registry import TINY_MODEL
from inspector.backbone.weights import import_weights
from inspector.config import ModelSpec
from inspector.errors import WeightsIntegrityError
from inspector.training.errors import RegistryError
from inspector.training.registry import ADAPTER_FILE, ModelRegistry
from tests.training.conftest import tiny_adapter


class _Payload:
    """Unpickling this runs ``touch MARKER`` (os.system): proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Exec:
    """A second gadget: builtins.exec of Python source that writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _torch_checkpoint(path: Path, payload: object) -> Path:
    torch.save({"state_dict": {"visual.proj": torch.zeros(2)}, "extra": payload}, path)
    return path


def _raw_pickle(path: Path, payload: object) -> Path:
    """A legacy (non-zip) pickle file, as older tools write ``.bin`` files."""
    path.write_bytes(pickle.dumps({"visual.proj": payload}, protocol=2))
    return path


def _payload_proof_of_concept(marker: Path) -> None:
    """The payload is real: plain pickle loading does create the marker (then it is removed)."""
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
@pytest.mark.parametrize("writer", [_torch_checkpoint, _raw_pickle])
@pytest.mark.parametrize("gadget", [_Payload, _Exec])
def test_backbone_checkpoint_with_pickle_payload_is_refused(tmp_path: Path, suffix: str, writer, gadget) -> None:
    marker = tmp_path / "pwned"
    if gadget is _Payload:
        _payload_proof_of_concept(marker)
    path = writer(tmp_path / f"evil{suffix}", gadget(marker))
    with pytest.raises(WeightsIntegrityError) as info:
        load_backbone(ModelSpec(name=TINY_MODEL, pretrained=str(path)))
    assert not marker.exists(), "the pickle payload ran"
    msg = str(info.value)
    assert str(path) in msg and "Refusing to load" in msg


def test_import_refuses_payload_and_copies_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = _raw_pickle(tmp_path / "evil.bin", _Payload(marker))
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsIntegrityError, match="Refusing to load"):
        import_weights(src, TINY_MODEL, model_dir)
    assert not marker.exists()
    assert not (model_dir / TINY_MODEL).exists() or not any((model_dir / TINY_MODEL).iterdir())


def test_payload_renamed_to_safetensors_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _torch_checkpoint(tmp_path / "evil.pt", _Payload(marker))
    disguised = tmp_path / "weights.safetensors"
    shutil.copy(path, disguised)
    with pytest.raises(WeightsIntegrityError, match=r"not a valid \.safetensors"):
        read_state_dict(disguised)
    assert not marker.exists()


def test_safetensors_header_cannot_smuggle_objects(tmp_path: Path) -> None:
    """safetensors is a JSON header + raw bytes: a header claiming a pickled dtype is just refused."""
    header = json.dumps({"x": {"dtype": "object", "shape": [1], "data_offsets": [0, 8]}}).encode()
    bad = tmp_path / "odd.safetensors"
    bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(WeightsIntegrityError):
        read_state_dict(bad)


def test_weights_only_is_always_passed_even_when_torch_default_is_unsafe(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD flips torch's default to full pickle; our reader is unaffected."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = _torch_checkpoint(tmp_path / "evil.pt", _Payload(marker))
    with pytest.raises(WeightsIntegrityError):
        read_state_dict(path)
    assert not marker.exists()


# --- the registry's adapter checkpoints ------------------------------------------------------------

METRICS = {"gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": None, "threshold": 1.0}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"]}


@pytest.mark.parametrize("writer", [_torch_checkpoint, _raw_pickle])
def test_adapter_checkpoint_with_pickle_payload_is_refused(tmp_path: Path, writer) -> None:
    """A version folder whose adapter.safetensors was replaced by a pickle: RegistryError, payload never runs."""
    registry = ModelRegistry(tmp_path / "models", "ring")
    info = registry.register(tiny_adapter(), METRICS, CARD)
    marker = tmp_path / "pwned"
    adapter = info.path / ADAPTER_FILE
    adapter.unlink()
    writer(adapter, _Payload(marker))
    with pytest.raises(RegistryError) as err:
        registry.load(info.version)
    assert not marker.exists()
    assert str(adapter) in str(err.value) and "roll back or retrain" in str(err.value)


def test_adapter_zip_with_pickle_inside_is_refused(tmp_path: Path) -> None:
    """A torch zip archive named adapter.safetensors (data.pkl inside): refused, never unpickled."""
    registry = ModelRegistry(tmp_path / "models", "ring")
    info = registry.register(tiny_adapter(), METRICS, CARD)
    marker = tmp_path / "pwned"
    adapter = info.path / ADAPTER_FILE
    adapter.unlink()
    with zipfile.ZipFile(adapter, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Payload(marker)))
    with pytest.raises(RegistryError):
        registry.load(info.version)
    assert not marker.exists()


def test_no_module_of_the_product_calls_unsafe_loaders() -> None:
    """A static guard: torch.load only with weights_only=True; no pickle.load(s), no numpy allow_pickle."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*root.joinpath("inspector").rglob("*.py"), *root.joinpath("gui").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path}:{lineno}: {line.strip()}")
            if any(bad in code for bad in ("pickle.load(", "pickle.loads(", "allow_pickle=True", "joblib.load(",
                                           "torch.jit.load(", "dill.load")):
                offenders.append(f"{path}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
