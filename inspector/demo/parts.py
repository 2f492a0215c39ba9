"""Synthetic machined metal rings on a conveyor belt, good or with planted defects.

There is no camera and no real part here: the demo line, the tests and the benchmarks run on these
images. :class:`PartGenerator` renders a reproducible stream of parts: the scene (ring, belt,
light, sensor) comes from :mod:`inspector.demo.scene`, the planted defects and their masks from
:mod:`inspector.demo.defects`; :func:`inspector.demo.dataset.write_dataset` writes a few-shot data
set of them.

Pure numpy + OpenCV and deterministic for a seed (numpy ``Generator`` per part, never the global
random state); no file I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspector.demo.defects import DEFECT_KINDS, MASK_THRESHOLD, check_kind, plant_defect
from inspector.demo.scene import F32, RingGeometry, finish, render_scene

MIN_SIZE = 64


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


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """``size`` as (height, width) ints, or ValueError when too small or too elongated to hold a ring."""
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


class PartStream:
    """A reproducible stream of parts: part ``n`` is ``render(n, kind)``, a pure function of the seeds.

    Subclasses set ``count``, ``defect_rate`` and ``defect_kinds``, and define ``render`` and ``_rngs``
    (three generators per part: scene, defect, choice); the stream draws from the choice generator only.
    """

    count: int
    defect_rate: float
    defect_kinds: tuple[str, ...]

    def _rngs(self, index: int) -> list[np.random.Generator]:
        raise NotImplementedError

    def render(self, index: int, defect: str | None = None) -> SyntheticPart:
        raise NotImplementedError

    def check_kind(self, kind: str) -> None:
        """Refuse an unknown defect kind before the stream moves on."""

    def good(self) -> SyntheticPart:
        """The next part, rendered without a defect."""
        self.count += 1
        return self.render(self.count)

    def defective(self, kind: str | None = None) -> SyntheticPart:
        """The next part with a defect of ``kind`` (random among ``defect_kinds`` when None)."""
        if kind is not None:
            self.check_kind(kind)
        self.count += 1
        if kind is None:
            kind = self.defect_kinds[int(self._rngs(self.count)[2].integers(len(self.defect_kinds)))]
        return self.render(self.count, kind)

    def next(self) -> SyntheticPart:
        """The next part: defective with probability ``defect_rate``, else good."""
        self.count += 1
        choice = self._rngs(self.count)[2]
        if choice.random() < self.defect_rate:
            return self.render(self.count, self.defect_kinds[int(choice.integers(len(self.defect_kinds)))])
        return self.render(self.count)

    def __iter__(self) -> PartStream:
        return self

    def __next__(self) -> SyntheticPart:
        return self.next()


class PartGenerator(PartStream):
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
        self.size = check_size(size)
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
        kinds = tuple(check_kind(k) for k in defect_kinds)
        if not kinds:
            msg = f"defect_kinds must name at least one of: {', '.join(DEFECT_KINDS)}"
            raise ValueError(msg)
        self.seed = int(seed)
        self.stream = int(stream)
        self.defect_rate = float(defect_rate)
        self.defect_kinds = kinds
        self.count = 0  # parts produced so far; the next part is number count + 1
        h, w = self.size
        self._yy, self._xx = (a.astype(F32) for a in np.mgrid[0:h, 0:w])

    def _rngs(self, index: int) -> list[np.random.Generator]:
        ss = np.random.SeedSequence([self.seed, self.stream, index])
        return [np.random.default_rng(c) for c in ss.spawn(3)]  # scene, defect, choice

    def render(self, index: int, defect: str | None = None) -> SyntheticPart:
        """Part number ``index`` (>= 1), good or with ``defect`` planted; stateless."""
        if index < 1:
            msg = f"part index must be >= 1, got {index}"
            raise ValueError(msg)
        if defect is not None:
            check_kind(defect)
        scene_rng, defect_rng, _ = self._rngs(index)
        sc = render_scene(scene_rng, self._xx, self._yy)
        clean = finish(sc, sc.metal, sc.cov)
        ring = np.where(sc.cov >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
        part_id = f"P{index:06d}"
        if defect is None:
            mask = np.zeros(self.size, dtype=np.uint8)
            return SyntheticPart(clean, mask, None, part_id, None, ring, sc.geometry)
        on, apply = plant_defect(sc, defect, defect_rng)
        image = finish(sc, *apply())
        mask = np.where(on, 255, 0).astype(np.uint8)
        return SyntheticPart(image, mask, defect, part_id, clean, ring, sc.geometry)

    def check_kind(self, kind: str) -> None:
        check_kind(kind)
