"""Planted defects: masks that match the planted defects, in area, place and pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.demo.defects import DEFECT_AREA_RANGE, DEFECT_KINDS
from inspector.demo.parts import PartGenerator, SyntheticPart

SIZE = (256, 256)


@pytest.fixture(scope="module")
def defect_parts() -> dict[str, list[SyntheticPart]]:
    gen = PartGenerator(SIZE, seed=7)
    return {kind: [gen.defective(kind) for _ in range(4)] for kind in DEFECT_KINDS}


def _ring_zone(part: SyntheticPart) -> np.ndarray:
    """The annulus the ring occupies (holes and keyway included), a pixel of slack either side."""
    g = part.geometry
    assert g is not None
    h, w = part.mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    rho = np.hypot(xx - g.cx, yy - g.cy)
    return (rho >= g.inner_radius - 1.5) & (rho <= g.outer_radius + 1.5)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, disk) > 0


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_mask_area_location_and_pixels(kind: str, defect_parts: dict[str, list[SyntheticPart]]) -> None:
    lo, hi = DEFECT_AREA_RANGE
    for p in defect_parts[kind]:
        assert p.defect == kind and p.clean is not None
        on = p.mask > 0
        assert lo <= on.mean() <= hi, f"{kind} covers {on.mean():.4f} of the image"
        # On the ring: within the annulus and on metal of the clean part.
        assert not (on & ~_ring_zone(p)).any()
        assert (on & (p.ring > 0)).sum() >= 0.95 * on.sum()
        diff = np.abs(p.image.astype(np.int16) - p.clean.astype(np.int16)).max(axis=2)
        assert diff[on].mean() > 25.0, f"{kind}: masked pixels barely changed"
        # Past a 3 px anti-aliasing / lens-blur fringe at most a rounding flip; past 5 px nothing.
        assert diff[~_dilate(p.mask, 3)].max() <= 1
        assert not diff[~_dilate(p.mask, 5)].any()


def test_chip_shows_background_and_stain_is_brownish(defect_parts: dict[str, list[SyntheticPart]]) -> None:
    for p in defect_parts["chip"]:
        assert p.clean is not None
        on = p.mask > 0
        assert p.image[on].mean() < p.clean[on].mean() - 30.0  # dark belt where the metal was
    for p in defect_parts["stain"]:
        assert p.clean is not None
        on = p.mask > 0
        r, _, b = (p.image[on].astype(float) - p.clean[on].astype(float)).mean(axis=0)
        assert r > b + 10.0  # blue drops more than red: brown
