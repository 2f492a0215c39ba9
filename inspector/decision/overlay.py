"""Heatmap overlays for reports and `inspector predict` (pure: arrays in, arrays out)."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.decision.result import InspectionResult

OK_RGB = (40, 170, 80)
NG_RGB = (220, 40, 40)


def colorize(anomaly_map: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map values in [low, high] to an RGB jet heatmap (uint8)."""
    span = max(high - low, 1e-12)
    scaled = np.clip((anomaly_map - low) / span * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def render_overlay(frame: np.ndarray, result: InspectionResult, alpha: float = 0.45) -> np.ndarray:
    """The frame with the anomaly heatmap blended over the ROI, region boxes and a verdict banner."""
    out = frame.copy()
    x, y, w, h = result.roi
    if result.anomaly_map is not None:
        low = min(float(result.anomaly_map.min()), result.threshold)
        heat = colorize(result.anomaly_map, low, max(result.threshold * 2 - low, float(result.anomaly_map.max())))
        region = out[y : y + h, x : x + w]
        out[y : y + h, x : x + w] = cv2.addWeighted(region, 1 - alpha, heat, alpha, 0)
    colour = OK_RGB if result.ok else NG_RGB
    for r in result.regions:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.width - 1, r.y + r.height - 1), colour, 2)
    label = result.verdict + (f" {result.defect}" if result.defect else "") + f"  {result.score:.3f}"
    scale = max(out.shape[1] / 640.0, 0.4)
    cv2.rectangle(out, (0, 0), (out.shape[1], int(28 * scale)), colour, -1)
    cv2.putText(out, label, (6, int(21 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255),
                max(1, int(2 * scale)), cv2.LINE_AA)
    return out
