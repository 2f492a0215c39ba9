"""Pixels in the audit log: JPEG thumbnails, lossless full frames, low-resolution heatmaps (pure)."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.errors import ImageDecodeError

# Fast PNG: full frames are evidence (lossless) but must not hold the log thread for long.
PNG_LEVEL = 1


def _bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def encode_thumbnail(frame: np.ndarray, max_side: int, quality: int = 85) -> bytes:
    """RGB frame -> JPEG bytes with the longer side at most ``max_side`` px (b"" when 0)."""
    if max_side <= 0:
        return b""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = frame
    if scale < 1.0:
        small = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", _bgr(small), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        msg = "JPEG encoding of a thumbnail failed"
        raise ImageDecodeError(msg)
    return buf.tobytes()


def encode_frame(frame: np.ndarray) -> bytes:
    """RGB frame -> lossless PNG bytes."""
    ok, buf = cv2.imencode(".png", _bgr(frame), [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        msg = "PNG encoding of a full frame failed"
        raise ImageDecodeError(msg)
    return buf.tobytes()


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG / PNG bytes -> RGB uint8 HxWx3."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    image = cv2.imdecode(arr, cv2.IMREAD_COLOR) if arr.size else None
    if image is None:
        msg = "stored image blob is not decodable (truncated or corrupt record)"
        raise ImageDecodeError(msg)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def downsample_heatmap(anomaly_map: np.ndarray | None, side: int) -> np.ndarray | None:
    """Anomaly map [h, w] -> float16 [side, side] (area averaging); None stays None."""
    if anomaly_map is None or side <= 0:
        return None
    small = cv2.resize(np.asarray(anomaly_map, dtype=np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return small.astype(np.float16)
