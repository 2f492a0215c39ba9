"""Synthetic surface textures (woven fabric, brushed metal), good or with planted defects.

The ring parts (:mod:`inspector.demo.parts`) are objects; a texture line inspects a stationary
surface, where every patch should look like every other (MVTec's carpet / grid / wood family).
:class:`TextureGenerator` renders a reproducible stream of such surfaces:

- ``woven``: a plain weave (warp over weft in a checkerboard), thread period, angle, tint and
  per-thread brightness varying from part to part;
- ``brushed``: brushed metal, long streaks along a slightly varying direction, fine grain.

Both get an illumination gradient, lens blur and sensor noise. Planted defects
(:data:`TEXTURE_DEFECT_KINDS`): ``scratch`` (a thin bright or dark curved line), ``stain`` (a
brownish translucent blotch), ``snag`` (the texture turned askew inside a blob: pulled threads or
a patch rubbed across the grain) and ``pit`` (a dark spot with a lit rim). The mask marks coverage >= 0.5.

Pure numpy + OpenCV, deterministic for (kind, seed, stream, index); no file I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from inspector.demo.parts import PartStream, SyntheticPart, check_size
from inspector.demo.scene import F32, unit_noise

TEXTURE_KINDS: tuple[str, ...] = ("woven", "brushed")
TEXTURE_DEFECT_KINDS: tuple[str, ...] = ("scratch", "stain", "snag", "pit")
MASK_THRESHOLD = 0.5

# A surface: the pixel grid -> luminance (HxW float32), drawn from the part's generator. Called
# twice for a snag (the same surface on a turned grid); all its random draws happen when it is built.
Surface = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _woven(rng: np.random.Generator, h: int, w: int, s: float) -> Surface:
    period = rng.uniform(9.0, 11.0) * s
    angle = math.radians(rng.uniform(-4.0, 4.0))
    phase = rng.uniform(0.0, period, 2)
    n_threads = int(2 * max(h, w) / period) + 8
    warp_gain = rng.normal(1.0, 0.06, n_threads).astype(F32)
    weft_gain = rng.normal(1.0, 0.06, n_threads).astype(F32)
    base, contrast = rng.uniform(120.0, 140.0), rng.uniform(0.4, 0.55)

    def surface(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        ca, sa = math.cos(angle), math.sin(angle)
        u = (xx * F32(ca) + yy * F32(sa) + F32(phase[0])) / F32(period)
        v = (yy * F32(ca) - xx * F32(sa) + F32(phase[1])) / F32(period)
        i, j = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        fu, fv = u - i, v - j
        warp_on_top = (i + j) % 2 == 0
        # A thread is bright along its crown and dark where it dives under the crossing one.
        across = np.where(warp_on_top, np.cos(np.pi * (fu - 0.5)), np.cos(np.pi * (fv - 0.5)))
        along = np.where(warp_on_top, np.cos(np.pi * (fv - 0.5)), np.cos(np.pi * (fu - 0.5)))
        gain = np.where(warp_on_top, warp_gain[i % n_threads], weft_gain[j % n_threads])
        shade = F32(1.0 - contrast) + F32(contrast) * across * (F32(0.55) + F32(0.45) * along)
        return (F32(base) * gain * shade).astype(F32)

    return surface


def _brushed(rng: np.random.Generator, h: int, w: int, s: float) -> Surface:
    angle = rng.uniform(-5.0, 5.0)
    pad = int(0.3 * max(h, w)) + 4
    big = (h + 2 * pad, w + 2 * pad)
    streaks = 9.0 * unit_noise(rng, big, 40.0 * s, 0.6) + 5.0 * unit_noise(rng, big, 120.0 * s, 2.5 * s)
    grain = 1.5 * unit_noise(rng, big, 0.7, 0.7)
    layer = (streaks + grain + F32(rng.uniform(140.0, 160.0))).astype(F32)
    rot = cv2.getRotationMatrix2D((big[1] / 2.0, big[0] / 2.0), angle, 1.0)
    layer = cv2.warpAffine(layer, rot, (big[1], big[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def surface(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        return cv2.remap(layer, xx + F32(pad), yy + F32(pad), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    return surface


def _blob(rng: np.random.Generator, shape: tuple[int, int], s: float, radius: tuple[float, float]) -> np.ndarray:
    """A soft irregular blob (0..1) somewhere away from the border."""
    h, w = shape
    r = rng.uniform(*radius) * s
    cx, cy = rng.uniform(r + 4, w - r - 4), rng.uniform(r + 4, h - r - 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(F32)
    ang = math.radians(rng.uniform(0.0, 180.0))
    ratio = rng.uniform(0.5, 1.0)
    du = (xx - F32(cx)) * F32(math.cos(ang)) + (yy - F32(cy)) * F32(math.sin(ang))
    dv = ((yy - F32(cy)) * F32(math.cos(ang)) - (xx - F32(cx)) * F32(math.sin(ang))) / F32(ratio)
    dist = np.sqrt(du * du + dv * dv) / F32(r) + F32(0.25) * unit_noise(rng, shape, 4.0 * s, 4.0 * s)
    return np.clip((F32(1.2) - dist) / F32(0.4), 0.0, 1.0)


def _scratch(rng: np.random.Generator, shape: tuple[int, int], s: float) -> np.ndarray:
    h, w = shape
    length = rng.uniform(0.3, 0.6) * min(h, w)
    x0, y0 = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    ang = rng.uniform(0.0, 2.0 * np.pi)
    t = np.linspace(-0.5, 0.5, 64)
    bend = rng.uniform(-0.15, 0.15) * length * (1.0 - 4.0 * t * t)
    px = x0 + length * t * math.cos(ang) - bend * math.sin(ang)
    py = y0 + length * t * math.sin(ang) + bend * math.cos(ang)
    pts = np.stack([np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)], axis=1)
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.polylines(canvas, [np.rint(pts * 16).astype(np.int32)], False, 255, max(2, round(2 * s)), cv2.LINE_AA, 4)
    return canvas.astype(F32) / F32(255.0)


class TextureGenerator(PartStream):
    """Renders a reproducible stream of synthetic texture parts of one ``kind``.

    Part ``n`` is a pure function of (kind, seed, stream, n, defect kind); ``stream`` separates
    sub-streams with the same seed (e.g. 0 for the few-shot set, 1 for fresh parts).
    """

    def __init__(self, kind: str = "woven", size: tuple[int, int] = (256, 256), seed: int = 0,
                 defect_rate: float = 0.2, defect_kinds: Sequence[str] = TEXTURE_DEFECT_KINDS, *,
                 stream: int = 0) -> None:
        if kind not in TEXTURE_KINDS:
            msg = f"unknown texture {kind!r}; allowed: {', '.join(TEXTURE_KINDS)}"
            raise ValueError(msg)
        kinds = (defect_kinds,) if isinstance(defect_kinds, str) else tuple(defect_kinds)
        bad = [k for k in kinds if k not in TEXTURE_DEFECT_KINDS]
        if bad or not kinds:
            msg = f"defect_kinds must be among {', '.join(TEXTURE_DEFECT_KINDS)}, got {kinds!r}"
            raise ValueError(msg)
        if not 0.0 <= float(defect_rate) <= 1.0:
            msg = f"defect_rate must be within [0, 1], got {defect_rate!r}"
            raise ValueError(msg)
        if int(seed) < 0 or int(stream) < 0:
            msg = f"seed and stream must be non-negative, got {seed!r}, {stream!r}"
            raise ValueError(msg)
        self.kind = kind
        self.size = check_size(size)
        self.seed, self.stream = int(seed), int(stream)
        self.defect_rate = float(defect_rate)
        self.defect_kinds = kinds
        self.count = 0
        h, w = self.size
        self._yy, self._xx = (a.astype(F32) for a in np.mgrid[0:h, 0:w])

    def _rngs(self, index: int) -> list[np.random.Generator]:
        salt = TEXTURE_KINDS.index(self.kind) + 101  # other streams than the ring parts of the same seed
        ss = np.random.SeedSequence([self.seed, self.stream, index, salt])
        return [np.random.default_rng(c) for c in ss.spawn(3)]  # scene, defect, choice

    def render(self, index: int, defect: str | None = None) -> SyntheticPart:
        """Part number ``index`` (>= 1), good or with ``defect`` planted; stateless."""
        if index < 1:
            msg = f"part index must be >= 1, got {index}"
            raise ValueError(msg)
        if defect is not None and defect not in TEXTURE_DEFECT_KINDS:
            msg = f"unknown defect kind {defect!r}; allowed: {', '.join(TEXTURE_DEFECT_KINDS)}"
            raise ValueError(msg)
        scene_rng, defect_rng, _ = self._rngs(index)
        h, w = self.size
        s = min(h, w) / 256.0
        surface = (_woven if self.kind == "woven" else _brushed)(scene_rng, h, w, s)
        lum = surface(self._xx, self._yy)
        tint = np.array([1.0, 1.0, 1.0], dtype=F32) + scene_rng.normal(0.0, 0.03, 3).astype(F32)
        if self.kind == "woven":
            tint = tint * np.array([1.05, 0.97, 0.9], dtype=F32)
        # Illumination: a gentle gradient and vignetting.
        gx, gy = scene_rng.uniform(-0.12, 0.12, 2)
        dx, dy = (self._xx - F32(w / 2)) / F32(w), (self._yy - F32(h / 2)) / F32(h)
        illum = F32(scene_rng.uniform(0.92, 1.08)) * (F32(1.0) + F32(gx) * dx + F32(gy) * dy
                                                       - F32(0.2) * (dx * dx + dy * dy))
        blur = float(scene_rng.uniform(0.45, 0.7))
        noise = scene_rng.standard_normal((h, w, 3), dtype=F32)
        read_sigma = float(scene_rng.uniform(0.6, 1.0))
        mask = np.zeros((h, w), dtype=np.uint8)
        color_gain = np.ones((h, w, 3), dtype=F32)
        clean = None
        if defect is not None:
            clean = self._finish(lum, tint, illum, color_gain, blur, noise, read_sigma)
            lum, color_gain, cover = self._plant(defect, defect_rng, surface, lum, color_gain, s)
            mask = np.where(cover >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
        image = self._finish(lum, tint, illum, color_gain, blur, noise, read_sigma)
        return SyntheticPart(image, mask, defect, f"{self.kind[0].upper()}{index:06d}", clean)

    def _plant(self, defect: str, rng: np.random.Generator, surface: Surface, lum: np.ndarray,
               color_gain: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shape = lum.shape
        if defect == "scratch":
            cover = _scratch(rng, shape, s)
            lum = lum + F32(rng.uniform(50.0, 80.0) * rng.choice([-1.0, 1.0])) * cover
        elif defect == "stain":
            cover = _blob(rng, shape, s, (10.0, 22.0))
            strength = F32(rng.uniform(0.35, 0.55))
            brown = np.array([0.85, 0.62, 0.4], dtype=F32)
            color_gain = F32(1.0) - strength * cover[..., None] * (F32(1.0) - brown)
        elif defect == "snag":
            cover = _blob(rng, shape, s, (9.0, 18.0))
            # The texture turned by 25-50 degrees inside the blob: threads pulled askew, a patch rubbed across.
            turn = math.radians(rng.uniform(25.0, 50.0) * rng.choice([-1.0, 1.0]))
            h, w = shape
            dx, dy = self._xx - F32(w / 2), self._yy - F32(h / 2)
            c, si = F32(math.cos(turn)), F32(math.sin(turn))
            moved = surface(F32(w / 2) + c * dx - si * dy, F32(h / 2) + si * dx + c * dy)
            lum = lum + cover * (moved - lum)
        else:  # pit
            cover = _blob(rng, shape, s, (4.0, 8.0))
            rim = np.clip(cv2.GaussianBlur(cover, (0, 0), 2.0 * s) - cover, 0.0, 1.0)
            lum = lum * (F32(1.0) - F32(0.55) * cover) + F32(60.0) * rim
        return lum.astype(F32), color_gain, cover

    def _finish(self, lum: np.ndarray, tint: np.ndarray, illum: np.ndarray, color_gain: np.ndarray,
                blur: float, noise: np.ndarray, read_sigma: float) -> np.ndarray:
        img = (lum * illum)[..., None] * tint[None, None, :] * color_gain
        img = cv2.GaussianBlur(img, (0, 0), blur)
        sigma = np.sqrt(F32(read_sigma**2) + F32(0.002) * np.maximum(img, 0.0))
        img = np.clip(np.rint(img + sigma * noise), 0.0, 255.0)
        return img.astype(np.uint8)
