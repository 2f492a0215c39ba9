"""Load an open_clip backbone offline-first: a local file, a locally cached tag, or random weights.

Nothing here touches the network. A tag is resolved from the station's imported weights
(``model_dir/<model>/``), the Hugging Face hub cache and open_clip's own download cache; a miss
raises :class:`WeightsNotFoundError` naming the exact commands that fix it. ``.pt/.pth/.bin``
files are read with ``torch.load(weights_only=True)`` and never with a pickle fallback
(open_clip's own ``load_state_dict`` retries with full unpickling on a ``TypeError``, so we do not
call it with a path); ``.safetensors`` files with safetensors.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import pickle
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
from open_clip.constants import (
    HF_SAFE_WEIGHTS_NAME,
    HF_WEIGHTS_NAME,
    OPENAI_DATASET_MEAN,
    OPENAI_DATASET_STD,
)

from inspector.backbone.registry import register_model_configs
from inspector.config import ModelSpec
from inspector.errors import InspectorError, WeightsIntegrityError, WeightsNotFoundError

logger = logging.getLogger(__name__)

RANDOM = "random"
RANDOM_SEED = 0
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
MANIFEST_NAME = "manifest.json"

WeightsKind = Literal["tag", "file", "random"]


# --------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class BackboneIdentity:
    """Which weights a backbone runs: recorded with every result."""

    model: str
    pretrained: str
    source: WeightsKind
    sha256: str | None
    untrained: bool

    def label(self) -> str:
        """Short human string, e.g. ``ViT-B-16/laion2b_s34b_b88k sha256:1a2b3c4d``."""
        if self.untrained:
            return f"{self.model} (untrained backbone)"
        name = Path(self.pretrained).name if self.source == "file" else self.pretrained
        digest = f" sha256:{self.sha256[:8]}" if self.sha256 else ""
        return f"{self.model}/{name}{digest}"


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the weights for (model, pretrained) are on this machine."""

    kind: WeightsKind
    path: Path | None
    sha256: str | None
    # The open_clip tag whose preprocessing (mean/std) and activation the weights were trained
    # with: the tag itself, or the one recorded when the file was imported.
    tag: str | None = None


@dataclass
class LoadedBackbone:
    """An eval-mode, frozen open_clip model with what is needed to feed it."""

    model: open_clip.CLIP | open_clip.CustomTextCLIP
    tokenizer: Callable[..., torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_image_size: int
    identity: BackboneIdentity
    device: torch.device


# --------------------------------------------------------------------------------------------
# Device


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; an unavailable explicit device is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            msg = (f"model.device is {spec!r} but CUDA is not available on this machine "
                   f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                   "set model.device to 'auto' or 'cpu', or check the GPU driver (nvidia-smi)")
            raise InspectorError(msg)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            msg = (f"model.device is {spec!r} but this machine has {count} CUDA device(s) "
                   f"(cuda:0..cuda:{count - 1})")
            raise InspectorError(msg)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        msg = "model.device is 'mps' but MPS is not available; set model.device to 'auto' or 'cpu'"
        raise InspectorError(msg)
    return device


# --------------------------------------------------------------------------------------------
# Hashing


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
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    with _HASH_LOCK:
        _HASH_MEMO[key] = digest
    return digest


# --------------------------------------------------------------------------------------------
# Where weights can be


def openclip_cache_dir() -> Path:
    """open_clip's download cache for URL tags (its default, ``~/.cache/clip``)."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_candidates(cfg: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(repo_id, filenames in preference order) of a tag's hf_hub entry, as open_clip downloads it."""
    hub = cfg.get("hf_hub") or ""
    if not hub:
        return None
    repo_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    names: list[str] = []
    if filename == HF_WEIGHTS_NAME:
        names.append(HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.append(filename[:-4] + ".safetensors")
    names.append(filename)
    return repo_id, names


def _hf_repo_cache(repo_id: str) -> Path:
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def find_in_hf_cache(cfg: Mapping[str, Any]) -> Path | None:
    """The tag's weights file in the local HF hub cache, without any network access."""
    from huggingface_hub import try_to_load_from_cache

    cand = hf_candidates(cfg)
    if cand is None:
        return None
    repo_id, names = cand
    for name in names:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache_dir())
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def _url_expected_sha256(url: str) -> str:
    """The sha256 (or prefix) open_clip checks for a URL download; '' when none."""
    filename = os.path.basename(url)
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(filename)[0].split("-")[-1]
    return ""


def openclip_cache_path(cfg: Mapping[str, Any]) -> Path | None:
    """Where open_clip stores a URL tag's download (whether or not it is there)."""
    url = cfg.get("url") or ""
    return openclip_cache_dir() / os.path.basename(url) if url else None


def read_manifest(model_dir: Path, model: str) -> dict[str, dict[str, Any]]:
    """``model_dir/<model>/manifest.json`` files section: file name -> record ({} when absent)."""
    path = Path(model_dir) / model / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable weights manifest %s: %s", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def imported_for_tag(model_dir: Path, model: str, tag: str) -> Path | None:
    """An imported file recorded for this tag, or named ``<tag>.<ext>``."""
    folder = Path(model_dir) / model
    for name, record in sorted(read_manifest(model_dir, model).items()):
        if record.get("tag") == tag and (folder / name).is_file():
            return folder / name
    for suffix in WEIGHTS_SUFFIXES:
        if (folder / f"{tag}{suffix}").is_file():
            return folder / f"{tag}{suffix}"
    return None


def _tag_of_imported(path: Path, model_dir: Path | None, model: str) -> str | None:
    """The tag recorded in the manifest for an imported file (None when not imported or unknown)."""
    if model_dir is None:
        return None
    folder = (Path(model_dir) / model).resolve()
    if path.resolve().parent != folder:
        return None
    tag = read_manifest(model_dir, model).get(path.name, {}).get("tag")
    if tag is None and is_known_tag(model, path.stem):
        tag = path.stem
    return tag if isinstance(tag, str) and is_known_tag(model, tag) else None


# --------------------------------------------------------------------------------------------
# Names


def check_model_name(model: str) -> None:
    """Raise WeightsNotFoundError with close matches when ``model`` is not an open_clip architecture."""
    register_model_configs()
    models = open_clip.list_models()
    if model in models:
        return
    close = difflib.get_close_matches(model, models, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    msg = (f"Unknown open_clip architecture {model!r}.{hint} "
           "Run `python -c \"import open_clip; print(open_clip.list_models())\"` for all names.")
    raise WeightsNotFoundError(msg)


def is_known_tag(model: str, tag: str) -> bool:
    """Whether open_clip has a pretrained config for (model, tag)."""
    return bool(open_clip.get_pretrained_cfg(model, tag))


def canonical_tag(model: str, tag: str) -> str:
    """open_clip's normalised tag (lower case, '-' -> '_') when known, else ``tag``."""
    clean = tag.lower().replace("-", "_")
    return clean if clean in open_clip.list_pretrained_tags_by_model(model) else tag


def fix_hint(model: str, tag: str, model_dir: Path | None) -> str:
    """The exact commands that put a tag's weights on an offline station."""
    dir_opt = f" --model-dir {model_dir}" if model_dir is not None else ""
    return (f"Fix: on a machine with internet run `inspector weights fetch {model} {tag}`, copy the file "
            f"to this station and run `inspector weights import FILE --model {model} --name {tag}{dir_opt}`; "
            "or set model.pretrained to a local .safetensors file; "
            "or use `pretrained: random` for a demo (untrained).")


# --------------------------------------------------------------------------------------------
# Resolution


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(WEIGHTS_SUFFIXES)


def resolve_weights(model: str, pretrained: str, model_dir: Path | None) -> ResolvedWeights:
    """Find the weights for (model, pretrained) on this machine, without any network access.

    ``pretrained`` is ``random``, a known open_clip tag, or a file (absolute, relative to the
    current directory, or a file name in ``model_dir/<model>/``).
    """
    check_model_name(model)
    if pretrained == RANDOM:
        return ResolvedWeights(kind="random", path=None, sha256=None)
    model_dir = Path(model_dir) if model_dir is not None else None

    if is_known_tag(model, pretrained):
        tag = canonical_tag(model, pretrained)
        cfg = open_clip.get_pretrained_cfg(model, tag)
        looked: list[str] = []
        found: Path | None = None
        if model_dir is not None:
            looked.append(f"{model_dir / model}{os.sep}")
            found = imported_for_tag(model_dir, model, tag)
        if found is None:
            cand = hf_candidates(cfg)
            if cand is not None:
                looked.append(str(_hf_repo_cache(cand[0])))
                found = find_in_hf_cache(cfg)
        if found is None:
            url_path = openclip_cache_path(cfg)
            if url_path is not None:
                looked.append(str(url_path))
                if url_path.is_file():
                    found = url_path
                    _check_url_download(url_path, cfg["url"])
        if found is None:
            msg = (f"No local weights for {model} / {tag} (looked in: {', '.join(looked)}).\n"
                   f" {fix_hint(model, tag, model_dir)}")
            raise WeightsNotFoundError(msg)
        logger.info("weights for %s/%s: %s", model, tag, found)
        return ResolvedWeights(kind="tag", path=found, sha256=file_sha256(found), tag=tag)

    candidates = [Path(pretrained).expanduser()]
    if model_dir is not None and not Path(pretrained).is_absolute():
        candidates.append(model_dir / model / pretrained)
    for path in candidates:
        if path.is_file():
            return ResolvedWeights(kind="file", path=path, sha256=file_sha256(path),
                                   tag=_tag_of_imported(path, model_dir, model))

    where = ", ".join(str(p.absolute()) for p in candidates)
    if _looks_like_path(pretrained):
        msg = (f"Weights file {pretrained!r} for {model} not found (looked in: {where}). "
               f"Check the path in model.pretrained, or import the file with "
               f"`inspector weights import FILE --model {model}"
               f"{f' --model-dir {model_dir}' if model_dir is not None else ''}`.")
        raise WeightsNotFoundError(msg)
    tags = open_clip.list_pretrained_tags_by_model(model)
    close = difflib.get_close_matches(pretrained.lower(), tags, n=3, cutoff=0.5)
    known = f"its open_clip tags are: {', '.join(tags)}" if tags else "open_clip has no tags for it"
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    msg = (f"model.pretrained {pretrained!r} is neither an open_clip tag of {model} nor a weights file "
           f"(looked in: {where}); {known}.{hint} "
           "Use a tag, a .safetensors file, or `random` (untrained demo).")
    raise WeightsNotFoundError(msg)


def _check_url_download(path: Path, url: str) -> None:
    expected = _url_expected_sha256(url)
    if expected and not file_sha256(path).startswith(expected):
        msg = (f"{path} does not match the checksum in its download URL ({expected[:16]}...): the "
               f"download is incomplete or corrupt. Delete it and fetch the weights again.")
        raise WeightsIntegrityError(msg)


# --------------------------------------------------------------------------------------------
# Reading checkpoints safely


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


# --------------------------------------------------------------------------------------------
# Building


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make any Hugging Face hub request fail fast instead of reaching the network."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


class _DropRandomInitWarning(logging.Filter):
    # open_clip logs "initialized randomly" on the root logger; we load weights right after.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def build_model(
    model: str,
    precision: str = "fp32",
    preprocess: Mapping[str, Any] | None = None,
    quick_gelu: bool = False,
) -> open_clip.CLIP | open_clip.CustomTextCLIP:
    """A randomly initialised open_clip model on CPU, seeded (0) in a forked RNG.

    The global RNG state is left untouched, and no base tower weights are downloaded.
    """
    register_model_configs()
    quiet = _DropRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    with torch.random.fork_rng(devices=[]), _hub_offline():
        torch.manual_seed(RANDOM_SEED)
        try:
            net = open_clip.create_model(
                model,
                pretrained=None,
                load_weights=False,
                precision=precision,
                device="cpu",
                force_quick_gelu=quick_gelu,
                force_preprocess_cfg=dict(preprocess) if preprocess else None,
                pretrained_image=False,
                pretrained_text=False,
            )
        except (ImportError, OSError) as exc:
            msg = (f"Cannot build {model}: it needs a component that is not available offline "
                   f"({type(exc).__name__}: {exc})")
            raise WeightsNotFoundError(msg) from None
        finally:
            logging.getLogger().removeFilter(quiet)
    return net


def _tokenizer(model: str) -> Callable[..., torch.Tensor]:
    with _hub_offline():
        try:
            return open_clip.get_tokenizer(model)
        except (ImportError, OSError, ValueError) as exc:
            msg = (f"Cannot load the tokenizer of {model} offline ({type(exc).__name__}: {exc}); "
                   "its files must be in the local Hugging Face cache")
            raise WeightsNotFoundError(msg) from None


def _triple(values: Any) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        msg = f"expected 3 per-channel normalisation values, got {vals}"
        raise ValueError(msg)
    return vals  # type: ignore[return-value]


def _native_size(net: torch.nn.Module) -> int:
    size = getattr(net.visual, "image_size", None) or net.visual.preprocess_cfg.get("size", 224)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            logger.warning("non-square native input size %s; using %s", tuple(size), size[0])
        size = size[0]
    return int(size)


def load_backbone(spec: ModelSpec, model_dir: Path | None = None) -> LoadedBackbone:
    """Resolve, verify and load the backbone of ``spec`` (offline), frozen and in eval mode.

    The weights stay fp32 and the model keeps its native input size (``native_image_size``), so
    its embeddings equal open_clip's own loading; ``spec.precision`` (torch.autocast),
    ``spec.image_size`` and ``spec.feature_layers`` are applied by the feature extractor.
    """
    device = resolve_device(spec.device)
    resolved = resolve_weights(spec.name, spec.pretrained, model_dir)

    if resolved.kind == "random":
        if spec.sha256:
            logger.warning("model.sha256 is set but pretrained is 'random'; the pin is ignored")
    elif spec.sha256 and resolved.sha256 != spec.sha256.lower():
        msg = (f"Weights file {resolved.path} does not match model.sha256: expected {spec.sha256.lower()}, "
               f"actual {resolved.sha256}. The file was replaced or corrupted; restore the right file or "
               "update model.sha256 deliberately.")
        raise WeightsIntegrityError(msg)

    tag_cfg = open_clip.get_pretrained_cfg(spec.name, resolved.tag) if resolved.tag else {}
    model_cfg = open_clip.get_model_config(spec.name) or {}
    quick_gelu = bool(tag_cfg.get("quick_gelu")) and not model_cfg.get("quick_gelu", False)
    if quick_gelu:
        logger.info("%s/%s was trained with QuickGELU; building the model with it", spec.name, resolved.tag)

    net = build_model(spec.name, preprocess=tag_cfg or None, quick_gelu=quick_gelu)
    if resolved.path is not None:
        state_dict = read_state_dict(resolved.path)
        apply_state_dict(net, state_dict, resolved.path, spec.name)
        del state_dict
    else:
        logger.warning("%s runs with RANDOM weights (seed %d): results are from an untrained backbone",
                       spec.name, RANDOM_SEED)

    net.eval().requires_grad_(False)
    net.to(device)

    pp = getattr(net.visual, "preprocess_cfg", None) or {}
    mean = _triple(tag_cfg.get("mean") or pp.get("mean") or OPENAI_DATASET_MEAN)
    std = _triple(tag_cfg.get("std") or pp.get("std") or OPENAI_DATASET_STD)

    identity = BackboneIdentity(
        model=spec.name,
        pretrained=resolved.tag if resolved.kind == "tag" and resolved.tag else spec.pretrained,
        source=resolved.kind,
        sha256=resolved.sha256,
        untrained=resolved.kind == "random",
    )
    logger.info("backbone %s on %s", identity.label(), device)
    return LoadedBackbone(
        model=net,
        tokenizer=_tokenizer(spec.name),
        mean=mean,
        std=std,
        native_image_size=_native_size(net),
        identity=identity,
        device=device,
    )
