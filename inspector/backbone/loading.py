"""Build an open_clip backbone from resolved weights: frozen, in eval mode, on its device.

Where the weights are comes from :mod:`inspector.backbone.resolve` (offline-first: a local file, a
locally cached tag, or random weights); the file is read by :mod:`inspector.backbone.checkpoint`.
Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from inspector.backbone.checkpoint import apply_state_dict, read_state_dict
from inspector.backbone.registry import register_model_configs
from inspector.backbone.resolve import WeightsKind, resolve_weights
from inspector.config import ModelSpec
from inspector.errors import InspectorError, WeightsIntegrityError, WeightsNotFoundError

logger = logging.getLogger(__name__)

RANDOM_SEED = 0


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
