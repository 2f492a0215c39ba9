"""The engine's reading of one frame (:class:`InspectionResult`) and its parts.

It is the first shape of the verdict path, built once by the engine and passed on by reference: the
station wraps it into its ``StationResult`` with the part's number, timings and the PLC answer
(``PartVerdict``), and the audit log row is made from that (see :mod:`inspector.station.results`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


class VerdictCounts:
    """``inspected`` and ``yield_pct`` for any tally with ``ok`` and ``ng`` counts (faults are neither)."""

    ok: int
    ng: int

    @property
    def inspected(self) -> int:
        return self.ok + self.ng

    @property
    def yield_pct(self) -> float | None:
        return 100.0 * self.ok / self.inspected if self.inspected else None


@dataclass(frozen=True)
class Region:
    """A connected area of the thresholded anomaly map, in frame pixels."""

    x: int
    y: int
    width: int
    height: int
    area_px: int
    peak: float


@dataclass
class InspectionResult:
    """Verdict, score and evidence of one frame, and which model (line, backbone, version, config) made it."""

    verdict: Literal["OK", "NG"]
    score: float  # fused anomaly score (higher = worse), same units as threshold
    threshold: float
    defect: str | None  # defect class for NG parts ("anomaly" when no class is known)
    defect_confidence: float | None
    anomaly_map: np.ndarray | None  # float32 [h, w] over the ROI (the whole frame without ROI)
    roi: tuple[int, int, int, int]  # x, y, width, height of the map in frame pixels
    regions: list[Region] = field(default_factory=list)
    head_scores: dict[str, float] = field(default_factory=dict)  # raw per-head scores
    timings_ms: dict[str, float] = field(default_factory=dict)
    line: str = ""
    model: str = ""  # backbone identity label
    model_version: str = "base"  # adapter version from the registry, "base" = no adapter
    config_hash: str = ""
    # Per layer, the part's patch tokens (float16 [N, D]) when the line runs the mutual head: the
    # station's buffer keeps a coreset of them from parts judged OK (inspector/station/mutual.py).
    part_tokens: dict[int, np.ndarray] | None = None
    untrained_backbone: bool = False
    # Buffered parts the mutual head scored against: 0 while it warms up, -1 = no mutual head on the line.
    mutual_parts: int = -1
    embedding: np.ndarray | None = None  # float32 [D] global CLIP image embedding

    @property
    def ok(self) -> bool:
        return self.verdict == "OK"

    def summary(self) -> str:
        label = f" {self.defect} ({self.defect_confidence:.2f})" if self.defect and self.defect_confidence else ""
        flag = " [untrained backbone]" if self.untrained_backbone else ""
        return f"{self.verdict} score={self.score:.3f} thr={self.threshold:.3f}{label}{flag}"
