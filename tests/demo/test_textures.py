from __future__ import annotations

import numpy as np
import pytest

from inspector.demo.textures import TEXTURE_DEFECT_KINDS, TEXTURE_KINDS, TextureGenerator

SIZE = (96, 96)


@pytest.mark.parametrize("kind", TEXTURE_KINDS)
def test_texture_parts_are_reproducible_and_vary(kind: str) -> None:
    a, b = TextureGenerator(kind, SIZE, seed=3), TextureGenerator(kind, SIZE, seed=3)
    first, again = a.good(), b.good()
    assert np.array_equal(first.image, again.image) and first.image.shape == (*SIZE, 3)
    assert not first.is_defective and not first.mask.any()
    assert not np.array_equal(first.image, a.good().image)  # part to part variation
    other = TextureGenerator(kind, SIZE, seed=3, stream=1).render(1)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("kind", TEXTURE_KINDS)
@pytest.mark.parametrize("defect", TEXTURE_DEFECT_KINDS)
def test_planted_defect_is_masked_and_local(kind: str, defect: str) -> None:
    part = TextureGenerator(kind, SIZE, seed=1).render(4, defect)
    assert part.defect == defect
    area = (part.mask > 0).mean()
    assert 0.0005 < area < 0.06, area
    diff = np.abs(part.image.astype(int) - part.clean.astype(int)).max(axis=2)
    inside = diff[part.mask > 0].mean()
    far = diff[np.ones(SIZE, bool) & ~_dilate(part.mask > 0, 8)]
    assert inside > 5 and far.max() <= 2  # the defect changes its region, nothing far from it


def test_next_mixes_good_and_defective_parts() -> None:
    gen = TextureGenerator("woven", SIZE, seed=0, defect_rate=0.5)
    parts = [gen.next() for _ in range(20)]
    assert 3 < sum(p.is_defective for p in parts) < 17


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown texture"):
        TextureGenerator("felt")
    with pytest.raises(ValueError, match="defect_kinds"):
        TextureGenerator("woven", defect_kinds=("dent",))
    with pytest.raises(ValueError, match="index"):
        TextureGenerator("woven", SIZE).render(0)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
