"""Anomaly map -> defect regions (boxes and pixel areas) (pure)."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.decision.result import Region


def find_regions(anomaly_map: np.ndarray, threshold: float, min_area: int = 1,
                 offset: tuple[int, int] = (0, 0), max_regions: int = 32) -> list[Region]:
    """Connected components (8-connectivity) of ``map >= threshold``, largest first."""
    mask = (anomaly_map >= threshold).astype(np.uint8)
    if not mask.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        peak = float(anomaly_map[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i].max())
        regions.append(Region(x + offset[0], y + offset[1], w, h, area, peak))
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return regions[:max_regions]
