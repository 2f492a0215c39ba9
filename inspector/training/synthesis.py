"""Defect synthesis for lines with good images only (CutPaste, scar, Perlin-noise pasting).

In the spirit of CutPaste (Li et al., CVPR 2021), NSA (Schlüter et al., ECCV 2022) and DRAEM
(Zavrtanik et al., ICCV 2021): a region of the part is replaced by foreign content - a patch cut
from elsewhere in the image (cutpaste), a thin stripe (scar) or an irregular Perlin-noise blob
filled with a random texture (perlin). The mask marks the pixels that actually changed, so a
paste that happens to look like its surroundings does not teach the adapter that normal texture
is a defect. Deterministic for (stream, seed, image hash, index); pure numpy + OpenCV.

Two families: CutPaste (cutpaste, scar: content moved from the image itself) and Perlin (blended
foreign texture in an irregular blob). :func:`plan_synthesis` keeps the defects that judge a
candidate apart from those it trained on: the other family, or at least an independent stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspector.config.training import SynthesisSpec

# A pixel is part of the defect where the paste moved it by more than this (grey levels, max over RGB).
CHANGE_THRESHOLD = 12
# Retry a paste whose changed area is below this fraction of what was pasted.
MIN_VISIBLE_FRACTION = 0.3
_MAX_TRIES = 12


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise in about [-1, 1] on a ``res`` lattice (any shape)."""
    h, w = shape
    ry, rx = max(1, res[0]), max(1, res[1])
    angles = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    ys = np.linspace(0, ry, h, endpoint=False)
    xs = np.linspace(0, rx, w, endpoint=False)
    yi, xi = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - yi)[:, None], (xs - xi)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[yi[:, None] + dy, xi[None, :] + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return (top * (1 - uy) + bottom * uy) * np.sqrt(2)


def foreground_mask(image: np.ndarray) -> np.ndarray | None:
    """The part, as Otsu's class that touches the image border least; None if that fails."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (0, 0), 2.0)
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([binary[0], binary[-1], binary[:, 0], binary[:, -1]])
    fg = binary if border.mean() < 0.5 else 1 - binary
    frac = float(fg.mean())
    if not 0.02 <= frac <= 0.98:
        return None
    return cv2.erode(fg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))


def _texture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Foreign content: noise, a smooth colour field or the image itself moved and turned."""
    h, w = image.shape[:2]
    kind = rng.integers(3)
    if kind == 0:
        tex = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        sigma = rng.uniform(0.0, 1.5)
        return cv2.GaussianBlur(tex, (0, 0), sigma) if sigma > 0.3 else tex
    if kind == 1:
        field = (perlin_noise((h, w), (4, 4), rng)[..., None] * 0.5 + 0.5)
        colours = rng.integers(0, 256, (2, 3)).astype(np.float32)
        return (colours[0] * field + colours[1] * (1 - field)).clip(0, 255).astype(np.uint8)
    moved = np.roll(image, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
    moved = np.rot90(moved, int(rng.integers(1, 4))).copy()
    return cv2.resize(moved, (w, h)) if moved.shape[:2] != (h, w) else moved


def _center(shape: tuple[int, int], fg: np.ndarray | None, margin: int, rng: np.random.Generator) -> tuple[int, int]:
    h, w = shape
    if fg is not None:
        ys, xs = np.nonzero(fg[margin : h - margin, margin : w - margin])
        if len(ys):
            k = int(rng.integers(len(ys)))
            return int(ys[k]) + margin, int(xs[k]) + margin
    y = int(rng.integers(margin, max(margin + 1, h - margin)))
    return y, int(rng.integers(margin, max(margin + 1, w - margin)))


def _cutpaste(image: np.ndarray, area: float, fg: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    ph = int(np.clip(np.sqrt(area / aspect), 2, h // 2))
    pw = int(np.clip(area / max(ph, 1), 2, w // 2))
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    patch = image[sy : sy + ph, sx : sx + pw].astype(np.float32)
    patch = np.rot90(patch, int(rng.integers(4))).copy()
    patch = patch * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)  # colour jitter, as CutPaste does
    ph, pw = patch.shape[:2]
    cy, cx = _center((h, w), fg, max(ph, pw) // 2 + 1, rng)
    y0, x0 = int(np.clip(cy - ph // 2, 0, h - ph)), int(np.clip(cx - pw // 2, 0, w - pw))
    out = image.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = patch.clip(0, 255).astype(np.uint8)
    return out


def _scar(image: np.ndarray, area: float, fg: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    width = int(rng.integers(2, max(3, min(h, w) // 32 + 3)))
    length = int(np.clip(area / width, 6, 0.6 * min(h, w)))
    cy, cx = _center((h, w), fg, length // 2 + 1, rng)
    angle = rng.uniform(0, 180)
    region = np.zeros((h, w), np.uint8)
    box = cv2.boxPoints(((float(cx), float(cy)), (float(length), float(width)), float(angle)))
    cv2.fillPoly(region, [np.round(box).astype(np.int32)], 1)
    tex = _texture(image, rng)
    out = image.copy()
    out[region.astype(bool)] = tex[region.astype(bool)]
    return out


def _perlin(image: np.ndarray, area: float, fg: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(np.clip(np.sqrt(area) * 2.0, 8, min(h, w)))
    cy, cx = _center((h, w), fg, side // 2, rng)
    y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
    scale = int(rng.integers(1, 4))  # lattice cells per window side: coherent blobs
    noise = perlin_noise((side, side), (scale, scale), rng)
    yy, xx = np.mgrid[0:side, 0:side] / max(side - 1, 1) * 2 - 1
    noise = noise - 0.6 * (yy**2 + xx**2)  # keep the blob near the window's centre
    thr = np.quantile(noise, 1.0 - min(area / side**2, 0.9))
    blob = np.zeros((h, w), np.float32)
    blob[y0 : y0 + side, x0 : x0 + side] = (noise > thr).astype(np.float32)
    opacity = rng.uniform(0.5, 1.0)  # DRAEM blends the foreign texture with the part
    alpha = blob[..., None] * opacity
    out = image.astype(np.float32) * (1 - alpha) + _texture(image, rng).astype(np.float32) * alpha
    return out.clip(0, 255).astype(np.uint8)


_METHODS: dict[str, Callable[[np.ndarray, float, np.ndarray | None, np.random.Generator], np.ndarray]] = {
    "cutpaste": _cutpaste, "scar": _scar, "perlin": _perlin}


def changed_mask(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels the paste changed visibly (uint8 0/1)."""
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=-1)
    return (diff > CHANGE_THRESHOLD).astype(np.uint8)


FAMILIES: dict[str, tuple[str, ...]] = {"cutpaste": ("cutpaste", "scar"), "perlin": ("perlin",)}
TRAIN_STREAM, JUDGE_STREAM = "train", "judge"


def family(method: str) -> str:
    """The synthesis family of a method (``cutpaste`` or ``perlin``)."""
    return next(name for name, methods in FAMILIES.items() if method in methods)


@dataclass(frozen=True)
class SynthesisPlan:
    """Which synthetic defects train (and choose) and which judge: never the same draws."""

    train: SynthesisSpec
    judge: SynthesisSpec
    policy: str  # other_family | other_seed
    note: str

    def record(self) -> dict[str, Any]:
        return {"policy": self.policy, "train_methods": list(self.train.methods),
                "judge_methods": list(self.judge.methods), "train_stream": TRAIN_STREAM,
                "judge_stream": JUDGE_STREAM, "note": self.note}


def plan_synthesis(spec: SynthesisSpec) -> SynthesisPlan:
    """Split the configured methods into training and judging defects (``spec.judge`` says how)."""
    if spec.judge == "other_seed":
        return SynthesisPlan(spec, spec, "other_seed", "judging defects: the training methods from an independent "
                             "seed stream (the gate sees the family it trained on)")
    used = {family(m) for m in spec.methods}
    if len(used) == 1:
        (trained,) = used
        judge = "perlin" if trained == "cutpaste" else "cutpaste"
        train_spec = spec
    else:  # every family configured: train on CutPaste, judge on Perlin
        trained, judge = "cutpaste", "perlin"
        train_spec = spec.model_copy(update={"methods": tuple(m for m in spec.methods if family(m) == trained)})
    judge_spec = spec.model_copy(update={"methods": FAMILIES[judge]})
    note = (f"judging defects: {judge} family (training pastes {', '.join(train_spec.methods)}), "
            "independent seed stream")
    return SynthesisPlan(train_spec, judge_spec, "other_family", note)


class DefectSynthesizer:
    """Synthetic defects with masks, deterministic for (stream, seed, source image hash, index)."""

    def __init__(self, spec: SynthesisSpec, seed: int = 0, stream: str = TRAIN_STREAM) -> None:
        self.spec = spec
        self.seed = seed
        self.stream = stream

    def _rng(self, sha256: str, index: int) -> np.random.Generator:
        prefix = "synth" if self.stream == TRAIN_STREAM else f"synth-{self.stream}"  # train: the old draws
        blob = hashlib.sha256(f"{prefix}:{self.seed}:{sha256}:{index}".encode()).digest()
        return np.random.default_rng(int.from_bytes(blob[:8], "little"))

    def make(self, image: np.ndarray, sha256: str, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Defect ``index`` of a good image: (image, mask, method)."""
        rng = self._rng(sha256, index)
        method = self.spec.methods[int(rng.integers(len(self.spec.methods)))]
        h, w = image.shape[:2]
        fg = foreground_mask(image) if self.spec.placement == "auto" else None
        best: tuple[int, np.ndarray, np.ndarray] | None = None
        for _ in range(_MAX_TRIES):
            target = float(rng.uniform(*self.spec.area)) * h * w
            out = _METHODS[method](image, target, fg, rng)
            mask = changed_mask(image, out)
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
            visible = int(mask.sum())
            if best is None or visible > best[0]:
                best = (visible, out, mask)
            if visible >= MIN_VISIBLE_FRACTION * target:
                break
        assert best is not None
        _, out, mask = best
        return out, mask, method
