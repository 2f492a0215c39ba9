"""Synthetic ring generator: determinism, masks that match the planted defects, dataset layout."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.demo.parts import (
    DEFECT_AREA_RANGE,
    DEFECT_KINDS,
    PartGenerator,
    SyntheticPart,
    write_dataset,
)

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


def test_same_seed_same_parts_and_different_seeds_differ() -> None:
    a, b = PartGenerator(SIZE, seed=3, defect_rate=0.5), PartGenerator(SIZE, seed=3, defect_rate=0.5)
    for _ in range(6):
        pa, pb = a.next(), b.next()
        assert pa.part_id == pb.part_id
        assert pa.defect == pb.defect
        np.testing.assert_array_equal(pa.image, pb.image)
        np.testing.assert_array_equal(pa.mask, pb.mask)
    c = PartGenerator(SIZE, seed=4)
    d = PartGenerator(SIZE, seed=3, stream=1)
    first = PartGenerator(SIZE, seed=3).good().image
    for other in (c.good().image, d.good().image):
        assert np.abs(first.astype(int) - other.astype(int)).mean() > 5.0


def test_consecutive_parts_vary_and_render_is_stateless() -> None:
    gen = PartGenerator(SIZE, seed=11)
    parts = [gen.good() for _ in range(4)]
    geoms = {(round(p.geometry.cx, 2), round(p.geometry.angle_deg, 1)) for p in parts if p.geometry}
    assert len(geoms) == 4
    np.testing.assert_array_equal(gen.render(2).image, parts[1].image)


def test_shapes_dtypes_and_ids() -> None:
    gen = PartGenerator((200, 240), seed=1)
    parts = [gen.good(), gen.defective("dent"), gen.next()]
    assert [p.part_id for p in parts] == ["P000001", "P000002", "P000003"]
    for p in parts:
        assert p.image.shape == (200, 240, 3) and p.image.dtype == np.uint8
        assert p.mask.shape == (200, 240) and p.mask.dtype == np.uint8
        assert set(np.unique(p.mask)) <= {0, 255}
        assert p.image.flags["C_CONTIGUOUS"]


def test_good_parts_have_empty_masks_and_look_like_a_ring() -> None:
    gen = PartGenerator(SIZE, seed=2)
    for _ in range(5):
        p = gen.good()
        assert p.defect is None and p.clean is None and not p.is_defective
        assert not p.mask.any()
        ring = p.ring > 0
        grey = p.image.mean(axis=2)
        # Bright metal on a dark belt; the ring covers roughly a quarter to a third of the frame.
        assert 0.2 < ring.mean() < 0.4
        assert grey[ring].mean() > grey[~ring].mean() + 50.0


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


def test_next_follows_defect_rate_and_kinds() -> None:
    assert all(not p.is_defective for p in (PartGenerator(SIZE, defect_rate=0.0).next() for _ in range(5)))
    gen = PartGenerator((96, 96), seed=5, defect_rate=1.0, defect_kinds=["stain", "chip"])
    kinds = [gen.next().defect for _ in range(12)]
    assert set(kinds) == {"stain", "chip"}
    assert {gen.defective().defect for _ in range(6)} <= {"stain", "chip"}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=r"'rust'.*scratch, dent, chip, stain"):
        PartGenerator(defect_kinds=["scratch", "rust"])
    with pytest.raises(ValueError, match="'crack'"):
        PartGenerator().defective("crack")
    with pytest.raises(ValueError, match="too small"):
        PartGenerator(size=(32, 256))
    with pytest.raises(ValueError, match="defect_rate"):
        PartGenerator(defect_rate=1.5)
    with pytest.raises(ValueError, match="at least one"):
        PartGenerator(defect_kinds=[])
    with pytest.raises(ValueError, match="seed"):
        PartGenerator(seed=-1)


def test_render_is_fast() -> None:
    gen = PartGenerator(SIZE, seed=0)
    gen.good()
    start = time.perf_counter()
    for _ in range(10):
        gen.next()
    per_part = (time.perf_counter() - start) / 10
    assert per_part < 0.1  # typically ~10 ms; generous for a loaded CI box


def _digest(path: Path) -> str:
    return hashlib.sha256(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes()).hexdigest()


def test_write_dataset_layout(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    summary = write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0)
    assert sorted(p.name for p in (root / "good").iterdir()) == ["good_000.png", "good_001.png", "good_002.png"]
    for kind in DEFECT_KINDS:
        assert sorted(p.name for p in (root / "defect" / kind).glob("*.png")) == [f"{kind}_000.png"]
        mask = cv2.imread(str(root / "defect" / kind / "masks" / f"{kind}_000.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (96, 96) and mask.any()
    tests = sorted(p.name for p in (root / "test").glob("*.png"))
    labels = [name.removesuffix(".png").split("_", 2)[2] for name in tests]
    assert sorted(labels) == sorted(["good", "good", *DEFECT_KINDS])
    assert [n.split("_")[1] for n in tests] == [f"{i:03d}" for i in range(len(tests))]
    for name, label in zip(tests, labels):
        image = cv2.imread(str(root / "test" / name), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(root / "test" / "masks" / name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert mask.any() == (label != "good")
    assert (root / "README.md").read_text().count("good/good_NNN.png") == 1
    assert summary["test"]["good"] == 2 and summary["defect"] == dict.fromkeys(DEFECT_KINDS, 1)
    # Train and test never share an image.
    train = {_digest(p) for p in root.glob("good/*.png")} | {_digest(p) for p in root.glob("defect/*/*.png")}
    assert not train & {_digest(p) for p in root.glob("test/*.png")}
    # Deterministic; refuses to overwrite unless asked.
    with pytest.raises(FileExistsError):
        write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")}
    write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0, overwrite=True)
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")} == before
