"""The rendered scene of one ring part: belt, turned-steel texture, light, shadow and sensor.

A part is a turned steel ring (washer-like flange with a keyway in the bore and four bolt
holes, so its rotation is visible) lying on a dark rubber conveyor belt, seen from above under a
directional light: brushed/turned-metal texture, chamfer shading, an anisotropic highlight, a soft
drop shadow, lens blur and Gaussian/shot sensor noise. Position, radii, rotation, lighting and
texture vary from part to part. :func:`render_scene` draws the float layers (:class:`Scene`),
defects (:mod:`inspector.demo.defects`) edit them, :func:`finish` turns them into the 8-bit image.

Pure numpy + OpenCV; every random draw comes from the ``Generator`` handed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

F32 = np.float32
_STEEL_TINT = np.array([0.965, 1.0, 1.035], dtype=F32)
_BELT_TINT = np.array([0.97, 1.0, 1.025], dtype=F32)


@dataclass(frozen=True)
class RingGeometry:
    """Where the ring lies in the image (pixels; angle of the keyway, degrees, image axes)."""

    cx: float
    cy: float
    outer_radius: float
    inner_radius: float
    angle_deg: float


@dataclass
class Scene:
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


def unit_noise(rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to zero mean, unit standard deviation."""
    h, w = shape
    fx, fy = max(1, int(sx // 2.0)), max(1, int(sy // 2.0))
    if fx * fy > 1:  # smooth noise: blur on a coarser grid, then upsample (much cheaper)
        small = (-(-h // fy) + 2, -(-w // fx) + 2)
        n = cv2.GaussianBlur(rng.random(small, dtype=F32) - 0.5, (0, 0), sigmaX=sx / fx, sigmaY=sy / fy)
        n = cv2.resize(n, (small[1] * fx, small[0] * fy), interpolation=cv2.INTER_CUBIC)
        n = n[fy : fy + h, fx : fx + w]
    else:
        n = cv2.GaussianBlur(rng.random(shape, dtype=F32) - 0.5, (0, 0), sigmaX=sx, sigmaY=sy)
    n = n - F32(n.mean())
    return n / F32(n.std() + 1e-6)


def render_scene(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> Scene:
    """The float layers of one good part on pixel grids ``xx``/``yy`` (HxW float32), drawn from ``rng``."""
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
    dx, dy = xx - F32(cx), yy - F32(cy)
    diag2 = F32((0.5 * h) ** 2 + (0.5 * w) ** 2)
    illum = (F32(gain) - F32(0.25 * gain) / diag2 * (dx * dx + dy * dy)) * (
        F32(1.0) + F32(0.10 * lx / m) * dx + F32(0.10 * ly / m) * dy
    )

    # Conveyor belt: dark rubber with streaks along the travel direction, grain and dust.
    belt = 3.0 * unit_noise(rng, (h, w), 7.0 * s, 0.7)
    belt += F32(rng.uniform(42.0, 60.0)) + 2.0 * unit_noise(rng, (h, 1), 0.1, 1.2)
    grain = unit_noise(rng, (h, w), 0.7, 0.7)  # fine grain, shared by belt and metal
    belt += 1.2 * grain
    belt += 4.0 * unit_noise(rng, (h, w), 20.0 * s, 20.0 * s)
    dust = np.zeros((h, w), dtype=F32)
    n_dust = int(rng.integers(15, 45))
    dust[rng.integers(0, h, n_dust), rng.integers(0, w, n_dust)] = rng.uniform(-30.0, 70.0, n_dust)
    belt += cv2.GaussianBlur(dust, (0, 0), 0.8)

    # Everything about the ring is computed inside its bounding box only.
    x0, x1 = max(0, int(cx - r_out) - 3), min(w, int(cx + r_out) + 4)
    y0, y1 = max(0, int(cy - r_out) - 3), min(h, int(cy + r_out) + 4)
    roi = (slice(y0, y1), slice(x0, x1))
    rdx, rdy = dx[roi], dy[roi]
    rho = np.sqrt(rdx * rdx + rdy * rdy)
    cos_l = (rdx * F32(lx) + rdy * F32(ly)) / np.maximum(rho, F32(1e-3))  # cos(polar angle - light)

    # Metal coverage from a signed distance (positive on metal), 1 px anti-aliasing.
    ca, sa = math.cos(theta), math.sin(theta)
    u = rdx * F32(ca) + rdy * F32(sa)
    v = rdy * F32(ca) - rdx * F32(sa)
    key_w = 0.22 * r_in
    key_d = 0.18 * (r_out - r_in)
    key_out = np.maximum(np.maximum(np.abs(v) - F32(key_w / 2.0), u - F32(r_in + key_d)), -u)
    sdf = np.minimum(np.minimum(F32(r_out) - rho, rho - F32(r_in)), key_out)
    hole_r = 0.055 * r_out
    hole_rho = 0.5 * (r_out + r_in)
    hole_centers = []
    hole_dist = np.full(rho.shape, 1e4, dtype=F32)  # distance to the nearest hole, exact near holes only
    reach = hole_r + 4.0 * s
    rxx, ryy = xx[roi], yy[roi]
    for k in range(4):
        a = theta + np.pi / 4.0 + k * np.pi / 2.0
        hx, hy = cx + hole_rho * math.cos(a), cy + hole_rho * math.sin(a)
        hole_centers.append((hx, hy))
        hx0, hx1 = max(0, int(hx - reach) - x0), max(0, int(hx + reach) + 2 - x0)
        hy0, hy1 = max(0, int(hy - reach) - y0), max(0, int(hy + reach) + 2 - y0)
        hr = (slice(hy0, hy1), slice(hx0, hx1))
        local = np.sqrt((rxx[hr] - F32(hx)) ** 2 + (ryy[hr] - F32(hy)) ** 2) - F32(hole_r)
        np.minimum(hole_dist[hr], local, out=hole_dist[hr])
    np.minimum(sdf, hole_dist, out=sdf)
    cov = np.zeros((h, w), dtype=F32)
    cov[roi] = np.clip(sdf + F32(0.5), 0.0, 1.0)

    # Drop shadow of the ring on the belt, away from the light.
    shadow = cv2.GaussianBlur(cov, (0, 0), 4.0 * s)
    shift = np.array([[1.0, 0.0, -5.0 * s * lx], [0.0, 1.0, -5.0 * s * ly]], dtype=np.float64)
    shadow = cv2.warpAffine(shadow, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    belt *= illum
    belt *= F32(1.0) - F32(0.5) * shadow
    tint = _BELT_TINT * (1.0 + rng.normal(0.0, 0.015, 3)).astype(F32)
    bg = tint[:, None, None] * belt[None]

    # Turned steel: radial profile, concentric turning marks, anisotropic highlight, chamfers.
    band = (rho - F32(r_in)) * F32(1.0 / (r_out - r_in)) - F32(0.5)
    b1, b2 = rng.uniform(-0.08, 0.08), rng.uniform(-0.35, 0.1)
    lum = F32(rng.uniform(125.0, 145.0)) * (F32(1.0) + band * (F32(b1) + F32(b2) * band))
    # Concentric turning marks: a 1-D radial profile sampled every 1/4 px, looked up by radius.
    n_marks = 4 * (int(math.hypot(h, w)) + 2)
    profile = 4.0 * unit_noise(rng, (1, n_marks), 1.6, 0.1)[0] + 5.0 * unit_noise(rng, (1, n_marks), 12.0, 0.1)[0]
    marks = profile[(rho * F32(4.0)).astype(np.int32)]
    # Anisotropic highlight of the turned surface: two radial lobes along the light direction.
    kappa = F32(1.0 / rng.uniform(0.3, 0.45) ** 2)
    lobes = np.exp(kappa * (cos_l - F32(1.0))) + F32(0.55) * np.exp(kappa * (-cos_l - F32(1.0)))
    lum += marks * (F32(1.0) + F32(0.8) * lobes) + F32(rng.uniform(40.0, 60.0)) * lobes
    spot_rho = rng.uniform(0.3, 0.7) * (r_out - r_in) + r_in
    sx, sy = cx + spot_rho * math.cos(light + 0.3), cy + spot_rho * math.sin(light + 0.3)
    spot_k = F32(-1.0 / (2.0 * (0.16 * r_out) ** 2))
    lum += F32(rng.uniform(25.0, 40.0)) * np.exp(((rxx - F32(sx)) ** 2 + (ryy - F32(sy)) ** 2) * spot_k)
    lum += F32(0.6) * grain[roi]
    cham = F32(1.0 / (2.6 * s))
    w_out = np.clip(F32(1.0) - (F32(r_out) - rho) * cham, 0.0, 1.0)
    w_in = np.clip(F32(1.0) - (rho - F32(r_in)) * cham, 0.0, 1.0)
    lum += w_out * (F32(45.0) * cos_l - F32(25.0)) - w_in * (F32(45.0) * cos_l + F32(20.0))
    edge_k = F32(1.0 / (2.0 * s))
    lum -= F32(35.0) * np.clip(F32(1.0) - key_out * edge_k, 0.0, 1.0) * (u > F32(r_in - 2.0))
    lum -= F32(40.0) * np.clip(F32(1.0) - hole_dist * edge_k, 0.0, 1.0)
    lum *= illum[roi]
    tint_m = _STEEL_TINT * (1.0 + rng.normal(0.0, 0.01, 3)).astype(F32)
    metal = np.zeros((3, h, w), dtype=F32)
    metal[:, y0:y1, x0:x1] = tint_m[:, None, None] * lum[None]

    return Scene(
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
        noise_z=rng.standard_normal((3, h, w), dtype=F32),
        read_sigma=float(rng.uniform(0.5, 0.9)),
        shot_gain=0.002,
    )


def finish(sc: Scene, metal: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Composite, lens blur, sensor noise, quantise."""
    img = sc.bg + (metal - sc.bg) * cov[None]
    for plane in img:
        cv2.GaussianBlur(plane, (0, 0), sc.blur_sigma, dst=plane)
    sigma = np.sqrt(sc.read_sigma**2 + sc.shot_gain * np.maximum(img, 0.0))
    img += sigma * sc.noise_z
    np.rint(img, out=img)
    np.clip(img, 0.0, 255.0, out=img)
    return cv2.merge([plane.astype(np.uint8) for plane in img])
