"""Training augmentation with albumentations, built from the line's ``training.augment`` settings.

Each augmented view is a pure function of (pipeline settings, view seed, image): the feature
cache keys a view by the pipeline digest and its seed, so a retraining finds the views it already
encoded. Geometric transforms move the mask with the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any

# albumentations checks PyPI for updates on import; the station is offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np

from inspector.config.training import AugmentSpec
from inspector.errors import ConfigError

# Reflect at borders: a constant (black) border next to a bright part would look like a defect.
_BORDER = cv2.BORDER_REFLECT_101


def _transforms(spec: AugmentSpec, source: str) -> list[A.BasicTransform]:
    out: list[A.BasicTransform] = []
    if spec.hflip > 0:
        out.append(A.HorizontalFlip(p=spec.hflip))
    if spec.vflip > 0:
        out.append(A.VerticalFlip(p=spec.vflip))
    if spec.rotate90 > 0:
        out.append(A.RandomRotate90(p=spec.rotate90))
    if spec.rotate.p > 0:
        out.append(A.Rotate(limit=spec.rotate.limit, border_mode=_BORDER, p=spec.rotate.p))
    if spec.perspective.p > 0:
        out.append(A.Perspective(scale=spec.perspective.scale, border_mode=_BORDER, p=spec.perspective.p))
    bc = spec.brightness_contrast
    if bc.p > 0:
        out.append(A.RandomBrightnessContrast(brightness_limit=bc.brightness, contrast_limit=bc.contrast, p=bc.p))
    if spec.clahe.p > 0:
        out.append(A.CLAHE(clip_limit=(1.0, spec.clahe.clip_limit), p=spec.clahe.p))
    if spec.blur.p > 0:
        out.append(A.GaussianBlur(blur_limit=0, sigma_limit=spec.blur.sigma, p=spec.blur.p))
    if spec.noise.p > 0:
        out.append(A.GaussNoise(std_range=spec.noise.std, p=spec.noise.p))
    for i, extra in enumerate(spec.extra):
        out.append(_extra(source, i, extra.name, extra.p, extra.params))
    return out


def _extra(source: str, index: int, name: str, p: float, params: dict[str, Any]) -> A.BasicTransform:
    where = f"training.augment.extra[{index}]"
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        msg = f"{name!r} is not an albumentations transform (see albumentations.ai/docs for the names)"
        raise ConfigError(source, [(where, msg)])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transform = cls(**params, p=p)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, [(where, f"{name}: {exc}")]) from None
    invalid = [str(w.message) for w in caught if "not valid" in str(w.message)]
    if invalid:  # albumentations only warns about unknown arguments; a typo must not pass silently
        raise ConfigError(source, [(where, f"{name}: {invalid[0]}")])
    return transform


def augmentation_digest(spec: AugmentSpec) -> str:
    """Identity of the pipeline: settings and albumentations version (its maths may change)."""
    blob = json.dumps([A.__version__, spec.model_dump(mode="json", exclude={"views"})], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def view_seed(base_seed: int, sha256: str, index: int) -> int:
    """Seed of augmented view ``index`` (>= 1) of an image: stable across runs and processes."""
    blob = f"{base_seed}:{sha256}:{index}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


class Augmenter:
    """Deterministic augmented views of training images (and their masks)."""

    def __init__(self, spec: AugmentSpec, seed: int = 0, source: str = "line config") -> None:
        self.spec = spec
        self.seed = seed
        self.digest = augmentation_digest(spec)
        self._compose = A.Compose(_transforms(spec, source), seed=seed)

    @property
    def views(self) -> int:
        return self.spec.views

    def view_id(self, sha256: str, index: int) -> str:
        """Cache key part of a view: ``orig`` for the image itself, else pipeline digest + view seed."""
        if index == 0:
            return "orig"
        return f"aug-{self.digest}-{view_seed(self.seed, sha256, index)}"

    def view(self, image: np.ndarray, mask: np.ndarray | None, sha256: str, index: int
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """View ``index`` of an image: 0 is the image itself, 1..views augmented copies."""
        if index == 0:
            return image, mask
        self._compose.set_random_seed(view_seed(self.seed, sha256, index))
        if mask is None:
            return np.ascontiguousarray(self._compose(image=image)["image"]), None
        out = self._compose(image=image, mask=mask)
        return np.ascontiguousarray(out["image"]), np.ascontiguousarray(out["mask"]).astype(np.uint8)
