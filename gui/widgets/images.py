"""numpy RGB / RGBA arrays -> QImage / QPixmap (copies, so the array may be freed)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


def to_qimage(array: np.ndarray) -> QImage:
    """RGB uint8 [H, W, 3] or RGBA uint8 [H, W, 4] -> an independent QImage."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8).copy()
    fmt = QImage.Format.Format_RGBA8888 if arr.shape[2] == 4 else QImage.Format.Format_RGB888
    return QImage(arr.data, w, h, arr.strides[0], fmt).copy()


def to_pixmap(array: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(array))
