"""GenICam pixel formats to RGB: every supported family, and errors that name the fix."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.errors import ImageDecodeError
from inspector.frames.pixels import SUPPORTED, to_rgb


def test_mono_colour_and_alpha_formats() -> None:
    grey = np.arange(16 * 20, dtype=np.uint8)
    out = to_rgb(grey, 20, 16, "Mono8")
    assert out.shape == (16, 20, 3) and out.dtype == np.uint8 and (out[..., 0] == out[..., 2]).all()
    assert out[1, 0, 0] == 20  # row-major: the second row starts at pixel 20
    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert (to_rgb(rgb.reshape(-1), 20, 16, "RGB8")[..., 0] == 200).all()
    assert (to_rgb(rgb.reshape(-1), 20, 16, "BGR8")[..., 2] == 200).all()  # BGR: the first byte is blue
    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 90, 255
    out = to_rgb(rgba, 20, 16, "RGBa8")
    assert out.shape == (16, 20, 3) and (out[..., 1] == 90).all() and out.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(("bits", "value", "expected"), [(10, 1023, 255), (12, 2048, 128), (16, 256, 1)])
def test_high_bit_depth_keeps_the_top_eight_bits(bits: int, value: int, expected: int) -> None:
    data = np.full(16 * 16, value, np.uint16)
    assert (to_rgb(data, 16, 16, f"Mono{bits}") == expected).all()
    # The same pixels delivered as little-endian bytes (how a producer hands over a buffer)
    assert (to_rgb(data.view(np.uint8), 16, 16, f"Mono{bits}") == expected).all()


@pytest.mark.parametrize(("pattern", "red_at"), [("RG", (0, 0)), ("GR", (0, 1)), ("GB", (1, 0)), ("BG", (1, 1))])
def test_bayer_patterns_follow_pfnc_names(pattern: str, red_at: tuple[int, int]) -> None:
    mosaic = np.zeros((32, 32), np.uint8)
    mosaic[red_at[0]::2, red_at[1]::2] = 255  # only the red sites lit: a red scene
    out = to_rgb(mosaic, 32, 32, f"Bayer{pattern}8")
    centre = out[8:24, 8:24].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 200 and centre[1] < 30 and centre[2] < 30


def test_errors_name_the_format_and_the_fix() -> None:
    with pytest.raises(ImageDecodeError, match=r"YUV422_8 is not supported.*camera\.genicam\.pixel_format.*Mono8"):
        to_rgb(np.zeros(64, np.uint8), 8, 8, "YUV422_8", source="cam frame 3")
    with pytest.raises(ImageDecodeError, match=r"cam frame 3: Mono8 buffer has 10 values, a 8x8 frame needs 64"):
        to_rgb(np.zeros(10, np.uint8), 8, 8, "Mono8", source="cam frame 3")
    with pytest.raises(ImageDecodeError, match="holds float32 values"):
        to_rgb(np.zeros(64, np.float32), 8, 8, "Mono8")
    assert "BayerRG12" in SUPPORTED and "RGB8" in SUPPORTED
