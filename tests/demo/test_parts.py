"""Synthetic ring generator: determinism, stream separation, shapes, good parts, argument checks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inspector.demo.parts import PartGenerator

SIZE = (256, 256)


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
