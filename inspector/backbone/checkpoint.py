"""Weights files read safely: their sha256, their state dict (never unpickled code) and its strict fit.

``.pt/.pth/.bin`` files are read with ``torch.load(weights_only=True)`` and never with a pickle
fallback (open_clip's own ``load_state_dict`` retries with full unpickling on a ``TypeError``, so
we do not call it with a path); ``.safetensors`` files with safetensors. TorchScript archives are
refused because they carry code.
"""

from __future__ import annotations

import pickle
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from inspector.errors import WeightsIntegrityError
from inspector.files import sha256_file

WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


_HASH_MEMO: dict[tuple[str, int, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (memoised per path/size/mtime/inode for this process)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _HASH_LOCK:
        cached = _HASH_MEMO.get(key)
    if cached is not None:
        return cached
    digest = sha256_file(path)
    with _HASH_LOCK:
        _HASH_MEMO[key] = digest
    return digest


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict on CPU, read without executing any pickled code.

    Unwraps a ``state_dict`` key and strips ``module.`` prefixes as open_clip's
    ``load_state_dict`` does. Raises WeightsIntegrityError for anything else.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            checkpoint: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            msg = f"{path} is not a valid .safetensors file ({exc}); it may be truncated - copy it again"
            raise WeightsIntegrityError(msg) from None
    elif suffix in (".pt", ".pth", ".bin"):
        if _is_torchscript(path):
            msg = (f"{path} is a TorchScript archive (e.g. OpenAI's original .pt release); it is not loaded "
                   "because TorchScript archives carry code. Use the plain state dict instead: "
                   "`inspector weights fetch MODEL TAG` downloads it as .safetensors, or convert the file "
                   "on a trusted machine.")
            raise WeightsIntegrityError(msg)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = (f"Refusing to load {path}: it contains pickled Python objects, not just tensors, and "
                   f"loading it could run arbitrary code (torch.load weights_only=True rejected it: "
                   f"{first}). "
                   "Only tensors are accepted; convert the checkpoint to .safetensors on a trusted machine.")
            raise WeightsIntegrityError(msg) from None
        except Exception as exc:  # any failure of the restricted unpickler: corrupt or hostile
            msg = (f"Refusing to load {path}: it is not a readable weights-only checkpoint "
                   f"({type(exc).__name__}: {exc}). It may be truncated, or not a PyTorch state dict; "
                   "it is never re-read with full pickle loading.")
            raise WeightsIntegrityError(msg) from None
    else:
        msg = (f"Unsupported weights file type {path.suffix or '(none)'!r} for {path}; "
               f"use one of {', '.join(WEIGHTS_SUFFIXES)} (.safetensors preferred)")
        raise WeightsIntegrityError(msg)

    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        msg = f"{path} does not hold a state dict (got {type(checkpoint).__name__}, empty or not a mapping)"
        raise WeightsIntegrityError(msg)
    state_dict = dict(checkpoint)
    if next(iter(state_dict)).startswith("module"):
        state_dict = {k[7:]: v for k, v in state_dict.items()}
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        msg = f"{path} is not a plain state dict: {len(bad)} entries are not tensors (e.g. {bad[:3]})"
        raise WeightsIntegrityError(msg)
    return state_dict


def apply_state_dict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Path | str, arch: str = "this architecture"
) -> None:
    """Load a state dict strictly, with open_clip's ``load_checkpoint`` conversions.

    A mismatch raises WeightsIntegrityError naming the first missing / unexpected / mis-shaped keys.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    # Same massaging as open_clip.factory.load_checkpoint (3.3.0), without re-reading the file.
    state_dict = convert_state_dict(model, state_dict)
    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for key in ("logit_scale", "logit_bias"):
        param = getattr(model, key, None)
        if key in state_dict and param is not None and param.ndim != state_dict[key].ndim:
            state_dict[key] = state_dict[key].reshape(param.shape)
    if "logit_bias" not in state_dict and getattr(model, "logit_bias", None) is not None \
            and "logit_scale" in state_dict:
        state_dict["logit_bias"] = torch.zeros_like(state_dict["logit_scale"])
    position_id_key = "text.transformer.embeddings.position_ids"
    if position_id_key in state_dict and not hasattr(model, position_id_key):
        del state_dict[position_id_key]
    try:
        resize_pos_embed(state_dict, model)
        resize_text_pos_embed(state_dict, model)
    except Exception as exc:
        msg = (f"{source} does not fit {arch}: its positional embeddings cannot be adapted ({exc}). "
               "Is it a checkpoint for a different open_clip model?")
        raise WeightsIntegrityError(msg) from None

    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} (file {tuple(v.shape)} vs model {tuple(expected[k].shape)})"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:5])}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:3])}")
        msg = (f"{source} does not fit {arch}: {'; '.join(parts)}. "
               "Is it a checkpoint for a different open_clip model?")
        raise WeightsIntegrityError(msg)
    model.load_state_dict(state_dict, strict=True)
