"""Defects planted on a rendered ring: scratch, dent, chip and stain, with the mask that marks them.

``scratch`` is a thin, tapered, bright or dark curved line; ``dent`` an elliptical depression
(darker floor, one wall lit and one shaded); ``chip`` a jagged bite out of the outer rim that shows
the belt, with a bright fracture edge; ``stain`` a brownish translucent blotch. Each covers
0.2 %-3 % of the image (:data:`DEFECT_AREA_RANGE`). The mask marks the pixels where the defect's
coverage of the ring is at least :data:`MASK_THRESHOLD`; the anti-aliased fringe below that
(<= 2 px) is consistently excluded. Compared with the same part rendered without the defect,
pixels more than 3 px from the mask differ by at most one grey level (lens-blur tails flipping a
rounding) and pixels more than 5 px away are identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from inspector.demo.scene import F32, Scene, unit_noise

DEFECT_KINDS: tuple[str, ...] = ("scratch", "dent", "chip", "stain")
# A defect's mask covers this fraction of the image (planting retries until it does).
DEFECT_AREA_RANGE: tuple[float, float] = (0.002, 0.03)
# A pixel belongs to the mask where the defect's coverage of it is at least this.
MASK_THRESHOLD = 0.5

_MAX_PLANT_TRIES = 30
_DISK3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

# A planter draws one candidate defect: its coverage p (HxW, 0..1) and a function that applies it,
# returning the edited (metal, cov) layers. Rejection on the mask area only needs p.
Apply = Callable[[], tuple[np.ndarray, np.ndarray]]


def check_kind(kind: str) -> str:
    """``kind`` when it is one of :data:`DEFECT_KINDS`, else ValueError naming them."""
    if kind not in DEFECT_KINDS:
        msg = f"unknown defect kind {kind!r}; allowed: {', '.join(DEFECT_KINDS)}"
        raise ValueError(msg)
    return kind


def _smooth01(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _wrap(a: np.ndarray | float) -> np.ndarray | float:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _surface_point(
    sc: Scene, rng: np.random.Generator, margin: float, hole_margin: float | None = None
) -> tuple[float, float, float, float]:
    """A point on clear metal ``margin`` px from the rims and ``hole_margin`` from holes: (x, y, rho, phi)."""
    g = sc.geometry
    hole_margin = margin if hole_margin is None else hole_margin
    lo, hi = g.inner_radius + margin, g.outer_radius - margin
    if hi <= lo:
        lo = hi = 0.5 * (g.inner_radius + g.outer_radius)
    for _ in range(50):
        rho, phi = rng.uniform(lo, hi), rng.uniform(0.0, 2.0 * np.pi)
        x, y = g.cx + rho * math.cos(phi), g.cy + rho * math.sin(phi)
        clear = all(math.hypot(x - hx, y - hy) > sc.hole_radius + hole_margin for hx, hy in sc.hole_centers)
        if clear and abs(_wrap(phi - math.radians(g.angle_deg))) > 0.35:
            break
    return x, y, rho, phi


def _box(shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
    """The pixel box covering [x0, x1] x [y0, y1], clipped to the image."""
    h, w = shape
    return (slice(max(0, int(y0)), min(h, int(y1) + 2)), slice(max(0, int(x0)), min(w, int(x1) + 2)))


def _embed(shape: tuple[int, int], box: tuple[slice, slice], local: np.ndarray) -> np.ndarray:
    full = np.zeros(shape, dtype=F32)
    full[box] = local
    return full


def _edit_metal(sc: Scene, box: tuple[slice, slice], local: np.ndarray) -> np.ndarray:
    """A copy of the metal layer with its ``box`` replaced by ``local`` (3 x box)."""
    metal = sc.metal.copy()
    metal[:, box[0], box[1]] = local
    return metal


def _plant_scratch(sc: Scene, rng: np.random.Generator) -> tuple[np.ndarray, Apply]:
    g, s = sc.geometry, sc.scale
    h, w = sc.cov.shape
    lo, hi = g.inner_radius + 5.0 * s, g.outer_radius - 5.0 * s
    # Metal at least 3 px from any edge: the scratch path must not cross a hole or the keyway.
    clear = cv2.erode((sc.cov >= 1.0).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    for _ in range(20):
        length = rng.uniform(70.0, 120.0) * s
        rho_a = rng.uniform(lo, hi)
        rho_b = float(np.clip(rho_a + rng.uniform(-0.6, 0.6) * length, lo, hi))
        dphi = length / (0.5 * (rho_a + rho_b)) * rng.choice([-1.0, 1.0])
        t = np.linspace(0.0, 1.0, 128)
        wobble = rng.uniform(-2.0, 2.0) * s * np.sin(np.pi * t * rng.uniform(1, 3))
        rho_t = rho_a + (rho_b - rho_a) * t + wobble
        phi_t = rng.uniform(0.0, 2.0 * np.pi) + dphi * t
        pts = np.stack([g.cx + rho_t * np.cos(phi_t), g.cy + rho_t * np.sin(phi_t)], axis=1)
        ix = np.clip(np.rint(pts[:, 0]).astype(np.intp), 0, w - 1)
        iy = np.clip(np.rint(pts[:, 1]).astype(np.intp), 0, h - 1)
        if clear[iy, ix].all():
            break
    thin = max(2, round(2 * s))
    box = _box((h, w), *(pts.min(axis=0) - thin - 2), *(pts.max(axis=0) + thin + 2))
    org = np.array([box[1].start, box[0].start])
    fixed = np.rint((pts[::4] - org) * 16).astype(np.int32)
    canvas = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), dtype=np.uint8)
    # Tapered: thinner towards both ends (never under 2 px, so the coverage still reaches 0.5).
    cv2.polylines(canvas, [fixed], False, 255, thin, cv2.LINE_AA, 4)
    cv2.polylines(canvas, [fixed[5:-5]], False, 255, thin + int(rng.integers(0, 2)), cv2.LINE_AA, 4)
    local = canvas.astype(F32) / F32(255.0)
    contrast = rng.uniform(60.0, 95.0) * rng.choice([-1.0, 1.0])
    # Depth varies along the scratch.
    depth = F32(0.8) + F32(0.2) * unit_noise(rng, canvas.shape, 6.0 * s, 6.0 * s).clip(-1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        lift = F32(contrast) * depth * local * sc.illum[box]
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + lift[None]), sc.cov

    return _embed((h, w), box, local), apply


def _plant_dent(sc: Scene, rng: np.random.Generator) -> tuple[np.ndarray, Apply]:
    s = sc.scale
    a = rng.uniform(12.0, 18.0) * s
    b = a * rng.uniform(0.55, 0.9)
    x0, y0, _, phi0 = _surface_point(sc, rng, 0.8 * b, a)
    ang = phi0 + np.pi / 2.0 + rng.uniform(-0.6, 0.6)  # roughly tangential
    ca, sa = F32(math.cos(ang)), F32(math.sin(ang))
    box = _box(sc.cov.shape, x0 - a - 2, y0 - a - 2, x0 + a + 2, y0 + a + 2)
    ddx, ddy = sc.xx[box] - F32(x0), sc.yy[box] - F32(y0)
    pu = (ddx * ca + ddy * sa) / F32(a)
    pv = (ddy * ca - ddx * sa) / F32(b)
    d2 = pu * pu + pv * pv
    # Coverage: the ellipse with a ~2 px anti-aliased edge (measured along the minor axis).
    p = _smooth01((1.0 - np.sqrt(d2)) * F32(b / (2.0 * s)))
    dull, slope = rng.uniform(45.0, 65.0), rng.uniform(22.0, 32.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        # Depression z = -(1 - d^2)^2: shaded like a bump map, one wall lit and the other in
        # shadow, plus a duller (darker) floor.
        bowl = np.clip(F32(1.0) - d2, 0.0, 1.0)
        dzdd2 = F32(2.0) * bowl  # -dz/d(d^2)
        gx = dzdd2 * (F32(2.0) * pu * ca / F32(a) - F32(2.0) * pv * sa / F32(b))
        gy = dzdd2 * (F32(2.0) * pu * sa / F32(a) + F32(2.0) * pv * ca / F32(b))
        lit = (gx * F32(math.cos(sc.light)) + gy * F32(math.sin(sc.light))) * F32(a)
        effect = (F32(slope) * lit - F32(dull) * bowl * bowl - F32(18.0)) * p
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + (effect * sc.illum[box])[None]), sc.cov

    return _embed(sc.cov.shape, box, p), apply


def _plant_chip(sc: Scene, rng: np.random.Generator) -> tuple[np.ndarray, Apply]:
    g, s = sc.geometry, sc.scale
    rb = rng.uniform(11.0, 19.0) * s
    key = math.radians(g.angle_deg)
    holes = [key + np.pi / 4.0 + k * np.pi / 2.0 for k in range(4)]
    for _ in range(50):
        phi0 = rng.uniform(0.0, 2.0 * np.pi)
        if min(abs(_wrap(phi0 - a)) for a in holes) * g.outer_radius > rb + sc.hole_radius:
            break
    rc = g.outer_radius + rb * rng.uniform(0.0, 0.4)
    bx, by = g.cx + rc * math.cos(phi0), g.cy + rc * math.sin(phi0)
    h, w = sc.cov.shape
    reach = 1.4 * rb + 4.0 * s
    box = _box((h, w), bx - reach, by - reach, bx + reach, by + reach)
    ddx, ddy = sc.xx[box] - F32(bx), sc.yy[box] - F32(by)
    dist = np.sqrt(ddx * ddx + ddy * ddy)
    knots = rb * np.clip(1.0 + 0.18 * rng.standard_normal(9), 0.65, 1.35)  # jagged outline
    kang = np.linspace(-np.pi, np.pi, 10)
    radius = np.interp(np.arctan2(ddy, ddx).ravel(), kang, np.append(knots, knots[0]))
    radius = radius.reshape(dist.shape).astype(F32)
    removed = np.clip(radius - dist + 0.5, 0.0, 1.0)
    edge = np.clip(radius + F32(1.6 * s) - dist + 0.5, 0.0, 1.0)  # the bite plus its fracture edge
    bright = rng.uniform(35.0, 60.0)
    grain = unit_noise(rng, dist.shape, 1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        lift = (edge - removed) * (F32(bright) + 12.0 * grain) * sc.illum[box]
        cov = sc.cov.copy()
        cov[box] *= F32(1.0) - removed
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + lift[None]), cov

    return _embed((h, w), box, edge), apply


def _plant_stain(sc: Scene, rng: np.random.Generator) -> tuple[np.ndarray, Apply]:
    s = sc.scale
    h, w = sc.cov.shape
    re = rng.uniform(10.0, 17.0) * s
    x0, y0, _, _ = _surface_point(sc, rng, 0.5 * re, 0.9 * re)
    ang = rng.uniform(0.0, np.pi)
    ell = rng.uniform(0.6, 1.0)
    reach = 1.8 * re + 4.0
    box = _box((h, w), x0 - reach, y0 - reach, x0 + reach, y0 + reach)
    ddx, ddy = sc.xx[box] - F32(x0), sc.yy[box] - F32(y0)
    pu = (ddx * F32(math.cos(ang)) + ddy * F32(math.sin(ang))) / F32(re)
    pv = (ddy * F32(math.cos(ang)) - ddx * F32(math.sin(ang))) / F32(re * ell)
    field = 1.0 - np.sqrt(pu * pu + pv * pv) + 0.16 * unit_noise(rng, ddx.shape, 0.25 * re, 0.25 * re)
    # Crisp blotch outline: threshold, drop specks narrower than 3 px, anti-alias over ~2 px.
    blot = cv2.morphologyEx((field > 0.05).astype(np.uint8), cv2.MORPH_OPEN, _DISK3)
    p = cv2.GaussianBlur(blot.astype(F32), (0, 0), 0.7)
    # Discolouration: multiply the metal by a brown filter, denser at the dried edge, so the
    # turning marks and highlights still show through.
    brown = np.array([0.80, 0.55, 0.30], dtype=F32) * F32(rng.uniform(0.85, 1.0))
    opacity = rng.uniform(0.6, 0.85)
    density = F32(0.75) + F32(0.25) * unit_noise(rng, ddx.shape, 2.0 * s, 2.0 * s).clip(-1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        edge = cv2.GaussianBlur(p, (0, 0), 1.5 * s)
        rim = np.clip(F32(2.5) * (p - edge), 0.0, 1.0)  # inner band along the outline
        alpha = F32(opacity) * p * np.clip(density + rim, 0.0, 1.0)
        filt = F32(1.0) - alpha[None] * (F32(1.0) - brown[:, None, None])
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] * filt), sc.cov

    return _embed((h, w), box, p), apply


_PLANTERS = {"scratch": _plant_scratch, "dent": _plant_dent, "chip": _plant_chip, "stain": _plant_stain}


def plant_defect(sc: Scene, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, Apply]:
    """Draw ``kind`` candidates until one's mask area is within :data:`DEFECT_AREA_RANGE` (else the closest).

    Returns the mask (HxW bool: coverage of the ring >= :data:`MASK_THRESHOLD`) and the function
    that applies the defect to the scene's layers.
    """
    h, w = sc.cov.shape
    lo, hi = (f * h * w for f in DEFECT_AREA_RANGE)
    best: tuple[float, np.ndarray, Apply] | None = None
    for _ in range(_MAX_PLANT_TRIES):
        p, apply = _PLANTERS[kind](sc, rng)
        on = (p * sc.cov) >= MASK_THRESHOLD
        area = float(np.count_nonzero(on))
        miss = max(lo - area, area - hi, 0.0)
        if best is None or miss < best[0]:
            best = (miss, on, apply)
        if miss == 0.0:
            break
    assert best is not None
    return best[1], best[2]
