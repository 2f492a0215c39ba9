"""Frame -> network input in tensor ops: ROI crop, resize, normalise (no per-pixel Python)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.errors import ImageDecodeError


def crop_roi(frame: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """The region of interest (a view, no copy); the whole frame when roi is None."""
    if roi is None:
        return frame
    x, y, w, h = roi
    if x + w > frame.shape[1] or y + h > frame.shape[0]:
        msg = (f"roi [{x}, {y}, {w}, {h}] does not fit in the {frame.shape[1]}x{frame.shape[0]} frame; "
               "fix lines[].roi in the station config")
        raise ImageDecodeError(msg)
    return frame[y : y + h, x : x + w]


class Preprocessor:
    """Resize (antialiased bilinear) and normalise a batch of RGB uint8 crops to [B, 3, H, W]."""

    def __init__(self, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu") -> None:
        self.size = size
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0

    def __call__(self, crops: Sequence[np.ndarray]) -> Tensor:
        out = []
        pin = self.device.type == "cuda"
        for crop in crops:
            t = torch.from_numpy(np.ascontiguousarray(crop))
            if pin:
                t = t.pin_memory()
            t = t.to(self.device, non_blocking=True).permute(2, 0, 1).unsqueeze(0).float()
            if tuple(t.shape[-2:]) != self.size:
                t = F.interpolate(t, size=self.size, mode="bilinear", align_corners=False, antialias=True)
            out.append(t)
        batch = torch.cat(out)
        return (batch - self.mean) / self.std
