"""Synthetic machined metal rings on a conveyor belt, good or with planted defects.

There is no camera and no real part here: the demo line, the tests and the benchmarks run on these
images. A part is a turned steel ring (washer-like flange with a keyway in the bore and four bolt
holes, so its rotation is visible) lying on a dark rubber conveyor belt, seen from above under a
directional light: brushed/turned-metal texture, chamfer shading, an anisotropic highlight, a soft
drop shadow, lens blur and Gaussian/shot sensor noise. Position, radii, rotation, lighting and
texture vary from part to part.

Defects are planted on the ring surface: ``scratch`` (thin, tapered, bright or dark curved line),
``dent`` (elliptical depression: darker floor, one wall lit and one shaded), ``chip`` (a jagged
bite out of the outer rim that shows the belt, with a bright fracture edge) and ``stain`` (brownish
translucent blotch). Each covers 0.2 %-3 % of the image (:data:`DEFECT_AREA_RANGE`). The mask
marks the pixels where the defect's coverage of the ring is at least 0.5; the anti-aliased fringe
below that (<= 2 px) is consistently excluded. Compared with the same part rendered without the
defect (:attr:`SyntheticPart.clean`), pixels more than 3 px from the mask differ by at most one
grey level (lens-blur tails flipping a rounding) and pixels more than 5 px away are identical.

Pure numpy + OpenCV and deterministic for a seed (numpy ``Generator`` per part, never the global
random state). The only file I/O is :func:`write_dataset`.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFECT_KINDS: tuple[str, ...] = ("scratch", "dent", "chip", "stain")
MIN_SIZE = 64
# A defect's mask covers this fraction of the image (planting retries until it does).
DEFECT_AREA_RANGE: tuple[float, float] = (0.002, 0.03)
# A pixel belongs to the mask where the defect's coverage of it is at least this.
MASK_THRESHOLD = 0.5

_F = np.float32
_STEEL_TINT = np.array([0.965, 1.0, 1.035], dtype=_F)
_BELT_TINT = np.array([0.97, 1.0, 1.025], dtype=_F)
_MAX_PLANT_TRIES = 30
_DISK3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True)
class RingGeometry:
    """Where the ring lies in the image (pixels; angle of the keyway, degrees, image axes)."""

    cx: float
    cy: float
    outer_radius: float
    inner_radius: float
    angle_deg: float


@dataclass(frozen=True, eq=False)
class SyntheticPart:
    """One rendered part.

    ``clean`` is the same part rendered without its defect (None for a good part), ``ring`` is
    the clean part's metal coverage (255 on metal, 0 on belt, bore and holes).
    """

    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray  # HxW uint8, 255 where defective
    defect: str | None
    part_id: str
    clean: np.ndarray | None = None
    ring: np.ndarray | None = None
    geometry: RingGeometry | None = None

    @property
    def is_defective(self) -> bool:
        """True when a defect was planted."""
        return self.defect is not None


@dataclass
class _Scene:
    """Float layers of one part before compositing; defects edit ``metal`` and ``cov``."""

    bg: np.ndarray  # 3xHxW (planar RGB) belt, shadow applied
    metal: np.ndarray  # 3xHxW metal surface colour everywhere
    cov: np.ndarray  # HxW metal coverage 0..1
    xx: np.ndarray
    yy: np.ndarray
    geometry: RingGeometry
    hole_centers: list[tuple[float, float]]
    hole_radius: float
    light: float  # light direction, radians
    illum: np.ndarray  # HxW illumination gain
    scale: float  # pixels per nominal pixel at 256x256
    blur_sigma: float
    noise_z: np.ndarray  # 3xHxW standard normal
    read_sigma: float
    shot_gain: float


def _check_kind(kind: str) -> str:
    if kind not in DEFECT_KINDS:
        msg = f"unknown defect kind {kind!r}; allowed: {', '.join(DEFECT_KINDS)}"
        raise ValueError(msg)
    return kind


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        msg = f"size must be (height, width), got {size!r}"
        raise ValueError(msg) from None
    if h < MIN_SIZE or w < MIN_SIZE:
        msg = f"size {(h, w)} is too small; height and width must be at least {MIN_SIZE} pixels"
        raise ValueError(msg)
    if max(h, w) > 2 * min(h, w):
        msg = f"size {(h, w)} is too elongated; the longer side may be at most twice the shorter"
        raise ValueError(msg)
    return h, w


def _smooth01(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _wrap(a: np.ndarray | float) -> np.ndarray | float:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to zero mean, unit standard deviation."""
    h, w = shape
    fx, fy = max(1, int(sx // 2.0)), max(1, int(sy // 2.0))
    if fx * fy > 1:  # smooth noise: blur on a coarser grid, then upsample (much cheaper)
        small = (-(-h // fy) + 2, -(-w // fx) + 2)
        n = cv2.GaussianBlur(rng.random(small, dtype=_F) - 0.5, (0, 0), sigmaX=sx / fx, sigmaY=sy / fy)
        n = cv2.resize(n, (small[1] * fx, small[0] * fy), interpolation=cv2.INTER_CUBIC)
        n = n[fy : fy + h, fx : fx + w]
    else:
        n = cv2.GaussianBlur(rng.random(shape, dtype=_F) - 0.5, (0, 0), sigmaX=sx, sigmaY=sy)
    n = n - _F(n.mean())
    return n / _F(n.std() + 1e-6)


def _render_scene(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> _Scene:
    h, w = xx.shape
    m = min(h, w)
    s = m / 256.0
    cx = w / 2.0 + rng.uniform(-4.0, 4.0) * s
    cy = h / 2.0 + rng.uniform(-4.0, 4.0) * s
    r_out = 0.37 * m * rng.uniform(0.97, 1.03)
    r_in = 0.52 * r_out * rng.uniform(0.96, 1.04)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    light = rng.uniform(0.0, 2.0 * np.pi)
    gain = rng.uniform(0.9, 1.1)
    lx, ly = math.cos(light), math.sin(light)

    # Illumination: vignetting plus a gentle gradient towards the light.
    dx, dy = xx - _F(cx), yy - _F(cy)
    diag2 = _F((0.5 * h) ** 2 + (0.5 * w) ** 2)
    illum = (_F(gain) - _F(0.25 * gain) / diag2 * (dx * dx + dy * dy)) * (
        _F(1.0) + _F(0.10 * lx / m) * dx + _F(0.10 * ly / m) * dy
    )

    # Conveyor belt: dark rubber with streaks along the travel direction, grain and dust.
    belt = 3.0 * _unit_noise(rng, (h, w), 7.0 * s, 0.7)
    belt += _F(rng.uniform(42.0, 60.0)) + 2.0 * _unit_noise(rng, (h, 1), 0.1, 1.2)
    grain = _unit_noise(rng, (h, w), 0.7, 0.7)  # fine grain, shared by belt and metal
    belt += 1.2 * grain
    belt += 4.0 * _unit_noise(rng, (h, w), 20.0 * s, 20.0 * s)
    dust = np.zeros((h, w), dtype=_F)
    n_dust = int(rng.integers(15, 45))
    dust[rng.integers(0, h, n_dust), rng.integers(0, w, n_dust)] = rng.uniform(-30.0, 70.0, n_dust)
    belt += cv2.GaussianBlur(dust, (0, 0), 0.8)

    # Everything about the ring is computed inside its bounding box only.
    x0, x1 = max(0, int(cx - r_out) - 3), min(w, int(cx + r_out) + 4)
    y0, y1 = max(0, int(cy - r_out) - 3), min(h, int(cy + r_out) + 4)
    roi = (slice(y0, y1), slice(x0, x1))
    rdx, rdy = dx[roi], dy[roi]
    rho = np.sqrt(rdx * rdx + rdy * rdy)
    cos_l = (rdx * _F(lx) + rdy * _F(ly)) / np.maximum(rho, _F(1e-3))  # cos(polar angle - light)

    # Metal coverage from a signed distance (positive on metal), 1 px anti-aliasing.
    ca, sa = math.cos(theta), math.sin(theta)
    u = rdx * _F(ca) + rdy * _F(sa)
    v = rdy * _F(ca) - rdx * _F(sa)
    key_w = 0.22 * r_in
    key_d = 0.18 * (r_out - r_in)
    key_out = np.maximum(np.maximum(np.abs(v) - _F(key_w / 2.0), u - _F(r_in + key_d)), -u)
    sdf = np.minimum(np.minimum(_F(r_out) - rho, rho - _F(r_in)), key_out)
    hole_r = 0.055 * r_out
    hole_rho = 0.5 * (r_out + r_in)
    hole_centers = []
    hole_dist = np.full(rho.shape, 1e4, dtype=_F)  # distance to the nearest hole, exact near holes only
    reach = hole_r + 4.0 * s
    rxx, ryy = xx[roi], yy[roi]
    for k in range(4):
        a = theta + np.pi / 4.0 + k * np.pi / 2.0
        hx, hy = cx + hole_rho * math.cos(a), cy + hole_rho * math.sin(a)
        hole_centers.append((hx, hy))
        hx0, hx1 = max(0, int(hx - reach) - x0), max(0, int(hx + reach) + 2 - x0)
        hy0, hy1 = max(0, int(hy - reach) - y0), max(0, int(hy + reach) + 2 - y0)
        hr = (slice(hy0, hy1), slice(hx0, hx1))
        local = np.sqrt((rxx[hr] - _F(hx)) ** 2 + (ryy[hr] - _F(hy)) ** 2) - _F(hole_r)
        np.minimum(hole_dist[hr], local, out=hole_dist[hr])
    np.minimum(sdf, hole_dist, out=sdf)
    cov = np.zeros((h, w), dtype=_F)
    cov[roi] = np.clip(sdf + _F(0.5), 0.0, 1.0)

    # Drop shadow of the ring on the belt, away from the light.
    shadow = cv2.GaussianBlur(cov, (0, 0), 4.0 * s)
    shift = np.array([[1.0, 0.0, -5.0 * s * lx], [0.0, 1.0, -5.0 * s * ly]], dtype=np.float64)
    shadow = cv2.warpAffine(shadow, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    belt *= illum
    belt *= _F(1.0) - _F(0.5) * shadow
    tint = _BELT_TINT * (1.0 + rng.normal(0.0, 0.015, 3)).astype(_F)
    bg = tint[:, None, None] * belt[None]

    # Turned steel: radial profile, concentric turning marks, anisotropic highlight, chamfers.
    band = (rho - _F(r_in)) * _F(1.0 / (r_out - r_in)) - _F(0.5)
    b1, b2 = rng.uniform(-0.08, 0.08), rng.uniform(-0.35, 0.1)
    lum = _F(rng.uniform(125.0, 145.0)) * (_F(1.0) + band * (_F(b1) + _F(b2) * band))
    # Concentric turning marks: a 1-D radial profile sampled every 1/4 px, looked up by radius.
    n_marks = 4 * (int(math.hypot(h, w)) + 2)
    profile = 4.0 * _unit_noise(rng, (1, n_marks), 1.6, 0.1)[0] + 5.0 * _unit_noise(rng, (1, n_marks), 12.0, 0.1)[0]
    marks = profile[(rho * _F(4.0)).astype(np.int32)]
    # Anisotropic highlight of the turned surface: two radial lobes along the light direction.
    kappa = _F(1.0 / rng.uniform(0.3, 0.45) ** 2)
    lobes = np.exp(kappa * (cos_l - _F(1.0))) + _F(0.55) * np.exp(kappa * (-cos_l - _F(1.0)))
    lum += marks * (_F(1.0) + _F(0.8) * lobes) + _F(rng.uniform(40.0, 60.0)) * lobes
    spot_rho = rng.uniform(0.3, 0.7) * (r_out - r_in) + r_in
    sx, sy = cx + spot_rho * math.cos(light + 0.3), cy + spot_rho * math.sin(light + 0.3)
    spot_k = _F(-1.0 / (2.0 * (0.16 * r_out) ** 2))
    lum += _F(rng.uniform(25.0, 40.0)) * np.exp(((rxx - _F(sx)) ** 2 + (ryy - _F(sy)) ** 2) * spot_k)
    lum += _F(0.6) * grain[roi]
    cham = _F(1.0 / (2.6 * s))
    w_out = np.clip(_F(1.0) - (_F(r_out) - rho) * cham, 0.0, 1.0)
    w_in = np.clip(_F(1.0) - (rho - _F(r_in)) * cham, 0.0, 1.0)
    lum += w_out * (_F(45.0) * cos_l - _F(25.0)) - w_in * (_F(45.0) * cos_l + _F(20.0))
    edge_k = _F(1.0 / (2.0 * s))
    lum -= _F(35.0) * np.clip(_F(1.0) - key_out * edge_k, 0.0, 1.0) * (u > _F(r_in - 2.0))
    lum -= _F(40.0) * np.clip(_F(1.0) - hole_dist * edge_k, 0.0, 1.0)
    lum *= illum[roi]
    tint_m = _STEEL_TINT * (1.0 + rng.normal(0.0, 0.01, 3)).astype(_F)
    metal = np.zeros((3, h, w), dtype=_F)
    metal[:, y0:y1, x0:x1] = tint_m[:, None, None] * lum[None]

    return _Scene(
        bg=bg,
        metal=metal,
        cov=cov,
        xx=xx,
        yy=yy,
        geometry=RingGeometry(float(cx), float(cy), float(r_out), float(r_in), math.degrees(theta) % 360.0),
        hole_centers=hole_centers,
        hole_radius=float(hole_r),
        light=float(light),
        illum=illum,
        scale=s,
        blur_sigma=float(rng.uniform(0.45, 0.7)),
        noise_z=rng.standard_normal((3, h, w), dtype=_F),
        read_sigma=float(rng.uniform(0.5, 0.9)),
        shot_gain=0.002,
    )


def _finish(sc: _Scene, metal: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Composite, lens blur, sensor noise, quantise."""
    img = sc.bg + (metal - sc.bg) * cov[None]
    for plane in img:
        cv2.GaussianBlur(plane, (0, 0), sc.blur_sigma, dst=plane)
    sigma = np.sqrt(sc.read_sigma**2 + sc.shot_gain * np.maximum(img, 0.0))
    img += sigma * sc.noise_z
    np.rint(img, out=img)
    np.clip(img, 0.0, 255.0, out=img)
    return cv2.merge([plane.astype(np.uint8) for plane in img])


def _surface_point(
    sc: _Scene, rng: np.random.Generator, margin: float, hole_margin: float | None = None
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
    full = np.zeros(shape, dtype=_F)
    full[box] = local
    return full


def _edit_metal(sc: _Scene, box: tuple[slice, slice], local: np.ndarray) -> np.ndarray:
    """A copy of the metal layer with its ``box`` replaced by ``local`` (3 x box)."""
    metal = sc.metal.copy()
    metal[:, box[0], box[1]] = local
    return metal


# A planter draws one candidate defect: its coverage p (HxW, 0..1) and a function that applies it,
# returning the edited (metal, cov) layers. Rejection on the mask area only needs p.
_Apply = Callable[[], tuple[np.ndarray, np.ndarray]]


def _plant_scratch(sc: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, _Apply]:
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
    local = canvas.astype(_F) / _F(255.0)
    contrast = rng.uniform(60.0, 95.0) * rng.choice([-1.0, 1.0])
    # Depth varies along the scratch.
    depth = _F(0.8) + _F(0.2) * _unit_noise(rng, canvas.shape, 6.0 * s, 6.0 * s).clip(-1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        lift = _F(contrast) * depth * local * sc.illum[box]
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + lift[None]), sc.cov

    return _embed((h, w), box, local), apply


def _plant_dent(sc: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, _Apply]:
    s = sc.scale
    a = rng.uniform(12.0, 18.0) * s
    b = a * rng.uniform(0.55, 0.9)
    x0, y0, _, phi0 = _surface_point(sc, rng, 0.8 * b, a)
    ang = phi0 + np.pi / 2.0 + rng.uniform(-0.6, 0.6)  # roughly tangential
    ca, sa = _F(math.cos(ang)), _F(math.sin(ang))
    box = _box(sc.cov.shape, x0 - a - 2, y0 - a - 2, x0 + a + 2, y0 + a + 2)
    ddx, ddy = sc.xx[box] - _F(x0), sc.yy[box] - _F(y0)
    pu = (ddx * ca + ddy * sa) / _F(a)
    pv = (ddy * ca - ddx * sa) / _F(b)
    d2 = pu * pu + pv * pv
    # Coverage: the ellipse with a ~2 px anti-aliased edge (measured along the minor axis).
    p = _smooth01((1.0 - np.sqrt(d2)) * _F(b / (2.0 * s)))
    dull, slope = rng.uniform(45.0, 65.0), rng.uniform(22.0, 32.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        # Depression z = -(1 - d^2)^2: shaded like a bump map, one wall lit and the other in
        # shadow, plus a duller (darker) floor.
        bowl = np.clip(_F(1.0) - d2, 0.0, 1.0)
        dzdd2 = _F(2.0) * bowl  # -dz/d(d^2)
        gx = dzdd2 * (_F(2.0) * pu * ca / _F(a) - _F(2.0) * pv * sa / _F(b))
        gy = dzdd2 * (_F(2.0) * pu * sa / _F(a) + _F(2.0) * pv * ca / _F(b))
        lit = (gx * _F(math.cos(sc.light)) + gy * _F(math.sin(sc.light))) * _F(a)
        effect = (_F(slope) * lit - _F(dull) * bowl * bowl - _F(18.0)) * p
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + (effect * sc.illum[box])[None]), sc.cov

    return _embed(sc.cov.shape, box, p), apply


def _plant_chip(sc: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, _Apply]:
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
    ddx, ddy = sc.xx[box] - _F(bx), sc.yy[box] - _F(by)
    dist = np.sqrt(ddx * ddx + ddy * ddy)
    knots = rb * np.clip(1.0 + 0.18 * rng.standard_normal(9), 0.65, 1.35)  # jagged outline
    kang = np.linspace(-np.pi, np.pi, 10)
    radius = np.interp(np.arctan2(ddy, ddx).ravel(), kang, np.append(knots, knots[0]))
    radius = radius.reshape(dist.shape).astype(_F)
    removed = np.clip(radius - dist + 0.5, 0.0, 1.0)
    edge = np.clip(radius + _F(1.6 * s) - dist + 0.5, 0.0, 1.0)  # the bite plus its fracture edge
    bright = rng.uniform(35.0, 60.0)
    grain = _unit_noise(rng, dist.shape, 1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        lift = (edge - removed) * (_F(bright) + 12.0 * grain) * sc.illum[box]
        cov = sc.cov.copy()
        cov[box] *= _F(1.0) - removed
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] + lift[None]), cov

    return _embed((h, w), box, edge), apply


def _plant_stain(sc: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, _Apply]:
    s = sc.scale
    h, w = sc.cov.shape
    re = rng.uniform(10.0, 17.0) * s
    x0, y0, _, _ = _surface_point(sc, rng, 0.5 * re, 0.9 * re)
    ang = rng.uniform(0.0, np.pi)
    ell = rng.uniform(0.6, 1.0)
    reach = 1.8 * re + 4.0
    box = _box((h, w), x0 - reach, y0 - reach, x0 + reach, y0 + reach)
    ddx, ddy = sc.xx[box] - _F(x0), sc.yy[box] - _F(y0)
    pu = (ddx * _F(math.cos(ang)) + ddy * _F(math.sin(ang))) / _F(re)
    pv = (ddy * _F(math.cos(ang)) - ddx * _F(math.sin(ang))) / _F(re * ell)
    field = 1.0 - np.sqrt(pu * pu + pv * pv) + 0.16 * _unit_noise(rng, ddx.shape, 0.25 * re, 0.25 * re)
    # Crisp blotch outline: threshold, drop specks narrower than 3 px, anti-alias over ~2 px.
    blot = cv2.morphologyEx((field > 0.05).astype(np.uint8), cv2.MORPH_OPEN, _DISK3)
    p = cv2.GaussianBlur(blot.astype(_F), (0, 0), 0.7)
    # Discolouration: multiply the metal by a brown filter, denser at the dried edge, so the
    # turning marks and highlights still show through.
    brown = np.array([0.80, 0.55, 0.30], dtype=_F) * _F(rng.uniform(0.85, 1.0))
    opacity = rng.uniform(0.6, 0.85)
    density = _F(0.75) + _F(0.25) * _unit_noise(rng, ddx.shape, 2.0 * s, 2.0 * s).clip(-1.0, 1.0)

    def apply() -> tuple[np.ndarray, np.ndarray]:
        edge = cv2.GaussianBlur(p, (0, 0), 1.5 * s)
        rim = np.clip(_F(2.5) * (p - edge), 0.0, 1.0)  # inner band along the outline
        alpha = _F(opacity) * p * np.clip(density + rim, 0.0, 1.0)
        filt = _F(1.0) - alpha[None] * (_F(1.0) - brown[:, None, None])
        return _edit_metal(sc, box, sc.metal[:, box[0], box[1]] * filt), sc.cov

    return _embed((h, w), box, p), apply


_PLANTERS = {"scratch": _plant_scratch, "dent": _plant_dent, "chip": _plant_chip, "stain": _plant_stain}


class PartGenerator:
    """Renders a reproducible stream of synthetic ring parts.

    ``size`` is (height, width). Part ``n`` of a generator is a pure function of
    (seed, stream, n, defect kind): see :meth:`render`. ``stream`` separates sub-streams with the
    same seed (the dataset writer uses 0 for train and 1 for test).
    """

    def __init__(
        self,
        size: tuple[int, int] = (256, 256),
        seed: int = 0,
        defect_rate: float = 0.2,
        defect_kinds: Sequence[str] = DEFECT_KINDS,
        *,
        stream: int = 0,
    ) -> None:
        self.size = _check_size(size)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            msg = f"seed must be a non-negative integer, got {seed!r}"
            raise ValueError(msg)
        if not isinstance(stream, (int, np.integer)) or stream < 0:
            msg = f"stream must be a non-negative integer, got {stream!r}"
            raise ValueError(msg)
        if not 0.0 <= float(defect_rate) <= 1.0:
            msg = f"defect_rate must be within [0, 1], got {defect_rate!r}"
            raise ValueError(msg)
        if isinstance(defect_kinds, str):
            defect_kinds = (defect_kinds,)
        kinds = tuple(_check_kind(k) for k in defect_kinds)
        if not kinds:
            msg = f"defect_kinds must name at least one of: {', '.join(DEFECT_KINDS)}"
            raise ValueError(msg)
        self.seed = int(seed)
        self.stream = int(stream)
        self.defect_rate = float(defect_rate)
        self.defect_kinds = kinds
        self.count = 0  # parts produced so far; the next part is number count + 1
        h, w = self.size
        self._yy, self._xx = (a.astype(_F) for a in np.mgrid[0:h, 0:w])

    def _rngs(self, index: int) -> list[np.random.Generator]:
        ss = np.random.SeedSequence([self.seed, self.stream, index])
        return [np.random.default_rng(c) for c in ss.spawn(3)]  # scene, defect, choice

    def render(self, index: int, defect: str | None = None) -> SyntheticPart:
        """Part number ``index`` (>= 1), good or with ``defect`` planted; stateless."""
        if index < 1:
            msg = f"part index must be >= 1, got {index}"
            raise ValueError(msg)
        if defect is not None:
            _check_kind(defect)
        scene_rng, defect_rng, _ = self._rngs(index)
        sc = _render_scene(scene_rng, self._xx, self._yy)
        clean = _finish(sc, sc.metal, sc.cov)
        ring = np.where(sc.cov >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
        part_id = f"P{index:06d}"
        if defect is None:
            mask = np.zeros(self.size, dtype=np.uint8)
            return SyntheticPart(clean, mask, None, part_id, None, ring, sc.geometry)
        lo, hi = (f * self.size[0] * self.size[1] for f in DEFECT_AREA_RANGE)
        best: tuple[float, np.ndarray, _Apply] | None = None
        for _ in range(_MAX_PLANT_TRIES):
            p, apply = _PLANTERS[defect](sc, defect_rng)
            on = (p * sc.cov) >= MASK_THRESHOLD
            area = float(np.count_nonzero(on))
            miss = max(lo - area, area - hi, 0.0)
            if best is None or miss < best[0]:
                best = (miss, on, apply)
            if miss == 0.0:
                break
        assert best is not None
        _, on, apply = best
        image = _finish(sc, *apply())
        mask = np.where(on, 255, 0).astype(np.uint8)
        return SyntheticPart(image, mask, defect, part_id, clean, ring, sc.geometry)

    def good(self) -> SyntheticPart:
        """The next part, rendered without a defect."""
        self.count += 1
        return self.render(self.count)

    def defective(self, kind: str | None = None) -> SyntheticPart:
        """The next part with a defect of ``kind`` (random among ``defect_kinds`` when None)."""
        if kind is not None:
            _check_kind(kind)
        self.count += 1
        if kind is None:
            kind = self.defect_kinds[int(self._rngs(self.count)[2].integers(len(self.defect_kinds)))]
        return self.render(self.count, kind)

    def next(self) -> SyntheticPart:
        """The next part: defective with probability ``defect_rate``, else good."""
        self.count += 1
        choice = self._rngs(self.count)[2]
        if choice.random() < self.defect_rate:
            kind = self.defect_kinds[int(choice.integers(len(self.defect_kinds)))]
            return self.render(self.count, kind)
        return self.render(self.count)

    def __iter__(self) -> PartGenerator:
        return self

    def __next__(self) -> SyntheticPart:
        return self.next()


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED]
    ok, buf = cv2.imencode(".png", data, params)
    if not ok:
        msg = f"could not encode {path} as PNG"
        raise OSError(msg)
    path.write_bytes(buf.tobytes())


_README = """# Synthetic demo line data

Images for the embedded demo line: a machined steel ring (flange with a keyway and four bolt
holes) on a dark conveyor belt, {h}x{w} RGB PNG. There is no real camera or part in this project;
the images are rendered by `inspector.demo.parts` (random position jitter, rotation, radii,
lighting, turning marks, lens blur and sensor noise).

Defects planted on the ring: {kinds}. Masks are single-channel PNGs, 255 where the defect
covers the ring (coverage >= {thr}), all zero for good parts.

Regenerate (deterministic: with the same numpy/OpenCV versions the PNGs come out byte-identical):

    {command}

Parameters: seed={seed}, size=({h}, {w}); train parts come from sub-stream 0 and test parts from
sub-stream 1 of that seed, so the two never share an image.

Layout:

- `good/good_NNN.png` - {n_good} good reference parts
- `defect/<kind>/<kind>_NNN.png` and `defect/<kind>/masks/<kind>_NNN.png` - {n_def} per kind
- `test/test_NNN_<label>.png` and `test/masks/test_NNN_<label>.png` - {n_tg} good + {n_td} per kind,
  shuffled; `<label>` is `good` or the defect kind
"""


def write_dataset(
    root: Path,
    n_good_train: int,
    n_defect_per_kind: int,
    n_test_good: int,
    n_test_defect_per_kind: int,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    *,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Write a few-shot dataset (layout in the README it writes) under ``root``; return a summary.

    Refuses to touch an existing ``good/``, ``defect/`` or ``test/`` under ``root`` unless
    ``overwrite``, in which case those folders are replaced.
    """
    for name, n in (
        ("n_good_train", n_good_train),
        ("n_defect_per_kind", n_defect_per_kind),
        ("n_test_good", n_test_good),
        ("n_test_defect_per_kind", n_test_defect_per_kind),
    ):
        if not isinstance(n, (int, np.integer)) or n < 0 or n > 999:
            msg = f"{name} must be an integer in [0, 999], got {n!r}"
            raise ValueError(msg)
    size = _check_size(size)
    root = Path(root)
    subdirs = [root / "good", root / "defect", root / "test"]
    existing = [d for d in subdirs if d.exists()]
    if existing and not overwrite:
        msg = f"{existing[0]} already exists; pass overwrite=True to replace the dataset under {root}"
        raise FileExistsError(msg)
    for d in existing:
        shutil.rmtree(d)
    root.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    train = PartGenerator(size, seed, stream=0)
    for i in range(n_good_train):
        path = root / "good" / f"good_{i:03d}.png"
        _write_png(path, train.good().image)
        files.append(path)
    for kind in DEFECT_KINDS:
        for i in range(n_defect_per_kind):
            part = train.defective(kind)
            name = f"{kind}_{i:03d}.png"
            _write_png(root / "defect" / kind / name, part.image)
            _write_png(root / "defect" / kind / "masks" / name, part.mask)
            files += [root / "defect" / kind / name, root / "defect" / kind / "masks" / name]

    test = PartGenerator(size, seed, stream=1)
    labels = ["good"] * n_test_good + [k for k in DEFECT_KINDS for _ in range(n_test_defect_per_kind)]
    order = np.random.default_rng(np.random.SeedSequence([seed, 1, 0])).permutation(len(labels))
    test_items = []
    for i, j in enumerate(order):
        label = labels[int(j)]
        part = test.good() if label == "good" else test.defective(label)
        name = f"test_{i:03d}_{label}.png"
        _write_png(root / "test" / name, part.image)
        _write_png(root / "test" / "masks" / name, part.mask)
        files += [root / "test" / name, root / "test" / "masks" / name]
        test_items.append({"file": f"test/{name}", "label": label, "part_id": part.part_id})

    h, w = size
    readme = _README.format(
        h=h,
        w=w,
        kinds=", ".join(DEFECT_KINDS),
        thr=MASK_THRESHOLD,
        seed=seed,
        command=command
        or (
            'python -c "from pathlib import Path; from inspector.demo.parts import write_dataset; '
            f"write_dataset(Path('{root.as_posix()}'), {n_good_train}, {n_defect_per_kind}, {n_test_good}, "
            f'{n_test_defect_per_kind}, size=({h}, {w}), seed={seed}, overwrite=True)"'
        ),
        n_good=n_good_train,
        n_def=n_defect_per_kind,
        n_tg=n_test_good,
        n_td=n_test_defect_per_kind,
    )
    (root / "README.md").write_text(readme, encoding="utf-8")
    return {
        "root": str(root),
        "size": [h, w],
        "seed": seed,
        "good": n_good_train,
        "defect": {k: n_defect_per_kind for k in DEFECT_KINDS},
        "test": {"good": n_test_good, **{k: n_test_defect_per_kind for k in DEFECT_KINDS}},
        "test_items": test_items,
        "n_files": len(files) + 1,
        "bytes": sum(f.stat().st_size for f in files) + (root / "README.md").stat().st_size,
    }
