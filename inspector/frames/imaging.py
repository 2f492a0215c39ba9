"""Image files and frames: decoding and validation with errors that name the file / frame."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import ImageDecodeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_SIDE = 16
# A declared size beyond this is refused before decoding (a corrupt or hostile header must not allocate gigabytes).
MAX_PIXELS = 1 << 27  # 134 MP: above any line-scan or area camera frame the station expects


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3 (grey, 16-bit and alpha are converted)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        msg = f"{path}: cannot read image file ({exc.strerror or exc})"
        raise ImageDecodeError(msg) from None
    _check_declared_size(data, path)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as exc:  # OpenCV asserts on some headers (e.g. its own pixel limit) instead of returning None
        msg = f"{path}: not a decodable image ({str(exc).strip().splitlines()[-1]}); replace or remove it"
        raise ImageDecodeError(msg) from None
    if image is None:
        msg = f"{path}: not a decodable image (corrupt, truncated or unsupported format); replace or remove it"
        raise ImageDecodeError(msg)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        # BGR(A) -> RGB by indexing: cvtColor refuses int16 / int32 / float64 TIFFs with a raw cv2.error.
        image = image[:, :, 2::-1]
    return validate_frame(image, source=str(path))


def _check_declared_size(data: np.ndarray, path: Path) -> None:
    """Refuse a file whose header declares more than MAX_PIXELS before anything allocates the pixels."""
    from PIL import Image  # header only (lazy open); Pillow comes with torchvision

    too_big = f"{path}: the image declares more than the {MAX_PIXELS:,} pixels a frame may have"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb and corrupt-EXIF warnings: the header is only peeked at
        try:
            with Image.open(io.BytesIO(memoryview(data))) as peek:
                width, height = peek.size
        except Image.DecompressionBombError:  # Pillow's own limit (above ours) tripped while reading the header
            raise ImageDecodeError(f"{too_big}; it is corrupt or not a camera frame - replace or remove it") from None
        except Exception:  # not a format Pillow knows, or a broken header: OpenCV decides
            return
    if width * height > MAX_PIXELS:
        msg = f"{too_big} ({width}x{height}); it is corrupt or not a camera frame - replace or remove it"
        raise ImageDecodeError(msg)


def validate_frame(frame: object, source: str = "frame") -> np.ndarray:
    """Return the frame as contiguous RGB uint8 HxWx3, or raise ImageDecodeError saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        msg = f"{source}: expected a numpy image, got {type(frame).__name__}"
        raise ImageDecodeError(msg)
    if frame.size == 0:
        msg = f"{source}: empty frame (camera returned no data)"
        raise ImageDecodeError(msg)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif not (frame.ndim == 3 and frame.shape[2] in (3, 4)):
        msg = f"{source}: expected HxW or HxWx3 image, got shape {frame.shape}"
        raise ImageDecodeError(msg)
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            msg = f"{source}: frame contains NaN/inf pixels"
            raise ImageDecodeError(msg)
        frame = np.clip(frame * 255.0 if frame.max() <= 1.0 else frame, 0, 255).astype(np.uint8)
    elif frame.dtype != np.uint8:
        msg = f"{source}: unsupported pixel type {frame.dtype} (expected uint8, uint16 or float)"
        raise ImageDecodeError(msg)
    if min(frame.shape[:2]) < MIN_SIDE:
        msg = f"{source}: frame {frame.shape[1]}x{frame.shape[0]} is smaller than {MIN_SIDE} px"
        raise ImageDecodeError(msg)
    return np.ascontiguousarray(frame)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
