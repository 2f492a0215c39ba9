"""GenICam pixel formats (PFNC names) to RGB uint8: pure array work, no device.

A camera buffer arrives as a flat array plus its width, height and PFNC pixel format name; the
station inspects RGB uint8 HxWx3. Packed formats (Mono12p, ...) and YUV are refused with the list of
what is supported, so the fix (set ``camera.genicam.pixel_format``) is in the message.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.errors import ImageDecodeError

# Bayer tile name -> OpenCV conversion to RGB. OpenCV names a Bayer pattern by the second row's
# first two pixels, hence the "shifted" names (PFNC BayerRG = OpenCV BayerBG).
_BAYER = {"RG": cv2.COLOR_BayerBG2RGB, "GR": cv2.COLOR_BayerGB2RGB, "GB": cv2.COLOR_BayerGR2RGB,
          "BG": cv2.COLOR_BayerRG2RGB}
_BITS = {"8": 8, "10": 10, "12": 12, "14": 14, "16": 16}
# format -> (channels, OpenCV conversion to RGB; None: already RGB). OpenCV's SIMD paths are 5-10x
# faster than numpy channel indexing on multi-megapixel frames (benchmarks/camera.py).
_COLOUR = {"RGB8": (3, None), "BGR8": (3, cv2.COLOR_BGR2RGB), "RGBa8": (4, cv2.COLOR_RGBA2RGB),
           "BGRa8": (4, cv2.COLOR_BGRA2RGB), "RGB8Packed": (3, None), "BGR8Packed": (3, cv2.COLOR_BGR2RGB),
           "RGBA8Packed": (4, cv2.COLOR_RGBA2RGB), "BGRA8Packed": (4, cv2.COLOR_BGRA2RGB)}

SUPPORTED = ("Mono8", "Mono10", "Mono12", "Mono14", "Mono16", *_COLOUR,
             *(f"Bayer{t}{b}" for t in _BAYER for b in ("8", "10", "12", "16")))


def to_rgb(data: np.ndarray, width: int, height: int, pixel_format: str, source: str = "frame") -> np.ndarray:
    """The buffer ``data`` (flat or shaped) as RGB uint8 HxWx3; ImageDecodeError names what is wrong.

    An RGB8 result is a view of ``data`` (no copy): pass a buffer the caller owns.
    """
    fmt = pixel_format
    flat = np.asarray(data).reshape(-1)
    if fmt in _COLOUR:
        channels, code = _COLOUR[fmt]
        img = _shaped(flat, height, width, channels, np.uint8, fmt, source)
        return img if code is None else cv2.cvtColor(img, code)
    bits = _bits(fmt)
    if fmt.startswith("Mono") and bits is not None:
        grey = _to8(_shaped(flat, height, width, 1, np.uint8 if bits == 8 else np.uint16, fmt, source), bits)
        return cv2.cvtColor(grey[:, :, 0], cv2.COLOR_GRAY2RGB)
    if fmt.startswith("Bayer") and fmt[5:7] in _BAYER and bits is not None:
        raw = _to8(_shaped(flat, height, width, 1, np.uint8 if bits == 8 else np.uint16, fmt, source), bits)
        return cv2.cvtColor(raw[:, :, 0], _BAYER[fmt[5:7]])
    msg = (f"{source}: pixel format {fmt} is not supported by the station; set camera.genicam.pixel_format to "
           f"one the camera offers among: {', '.join(SUPPORTED)}")
    raise ImageDecodeError(msg)


def _bits(fmt: str) -> int | None:
    for prefix in ("Mono", "BayerRG", "BayerGR", "BayerGB", "BayerBG"):
        if fmt.startswith(prefix):
            return _BITS.get(fmt[len(prefix):])
    return None


def _shaped(flat: np.ndarray, height: int, width: int, channels: int, dtype: type, fmt: str,
            source: str) -> np.ndarray:
    if flat.dtype != dtype:
        if flat.dtype == np.uint8 and dtype == np.uint16 and flat.size % 2 == 0:
            flat = flat.view(np.uint16)  # little-endian 16-bit pixels delivered as bytes
        else:
            msg = f"{source}: {fmt} buffer holds {flat.dtype} values, expected {np.dtype(dtype).name}"
            raise ImageDecodeError(msg)
    need = height * width * channels
    if width <= 0 or height <= 0 or flat.size < need:
        msg = (f"{source}: {fmt} buffer has {flat.size} values, a {width}x{height} frame needs {need} "
               "(incomplete transfer: check the link bandwidth / packet size)")
        raise ImageDecodeError(msg)
    return flat[:need].reshape(height, width, channels)


def _to8(img: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return img
    return (img >> (bits - 8)).astype(np.uint8)  # keep the top 8 of the sensor's bits
