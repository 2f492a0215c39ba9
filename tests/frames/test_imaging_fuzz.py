"""Image decoding under bad files: every input gives an RGB uint8 HxWx3 frame or ImageDecodeError naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.errors import ImageDecodeError
from inspector.frames.imaging import MAX_PIXELS, load_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _encoded(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


JPEG = _encoded(".jpg", RGB)
PNG = _encoded(".png", RGB)
SEEDS = {".jpg": JPEG, ".png": PNG, ".bmp": _encoded(".bmp", RGB), ".tif": _encoded(".tif", RGB),
         ".webp": _encoded(".webp", RGB)}


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares a size, followed by a few bytes of pixel data (a header-bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """The valid JPEG with its SOF0 frame size patched."""
    data = bytearray(JPEG)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _check(path: Path) -> np.ndarray | None:
    """load_image's contract: a valid frame, or ImageDecodeError that names the file."""
    try:
        frame = load_image(path)
    except ImageDecodeError as exc:
        assert str(path) in str(exc)
        return None
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert min(frame.shape[:2]) >= 16
    return frame


@pytest.mark.parametrize(("name", "data"), [
    ("zero.png", b""),
    ("random.jpg", RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    ("text.png", b"this is not an image\n" * 10),
    ("head_only.png", PNG[:33]),
    ("half.png", PNG[: len(PNG) // 2]),
    ("half.jpg", JPEG[: len(JPEG) // 2]),
    ("soi_only.jpg", JPEG[:2]),
    ("huge_declared.png", _png_declaring(40_000, 40_000)),
    ("huge_beyond_opencv.png", _png_declaring(70_000, 70_000)),
    ("max_declared.png", _png_declaring(2**31 - 1, 2**31 - 1)),
    ("huge_declared.jpg", _jpeg_declaring(65_000, 65_000)),
    ("tiny.png", _encoded(".png", RGB[:4, :4])),
    ("int16.tif", _encoded(".tif", RNG.integers(-100, 100, (32, 32, 3)).astype(np.int16))),
    ("int32.tif", _encoded(".tif", RNG.integers(0, 100, (32, 32, 3)).astype(np.int32))),
])
def test_corrupt_or_hostile_files_are_refused_by_name(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert _check(path) is None


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(12_000, 12_000))  # 144 MP: above our cap, below Pillow's own bomb limit
    with pytest.raises(ImageDecodeError, match="declares more than") as info:
        load_image(path)
    assert f"{MAX_PIXELS:,}" in str(info.value) and "12000x12000" in str(info.value)


@pytest.mark.parametrize(("name", "image"), [
    ("grey.png", RGB[:, :, 0]),
    ("grey16.png", (RGB[:, :, 0].astype(np.uint16) * 257)),
    ("rgb16.png", RGB.astype(np.uint16) * 257),
    ("bgra.png", np.dstack([RGB, RGB[:, :, :1]])),
    ("bgra16.png", np.dstack([RGB, RGB[:, :, :1]]).astype(np.uint16) * 257),
    ("float32.tif", RGB.astype(np.float32) / 255),
    ("float64.tif", RGB.astype(np.float64) / 255),
    ("grey.tif", RGB[:, :, 1]),
])
def test_other_pixel_formats_become_rgb_uint8(tmp_path: Path, name: str, image: np.ndarray) -> None:
    path = tmp_path / name
    path.write_bytes(_encoded(Path(name).suffix, image))
    frame = _check(path)
    assert frame is not None and frame.shape == (48, 64, 3)
    if image.ndim == 3 and image.dtype == np.uint16:  # colour order kept through 16 bits and alpha
        assert np.array_equal(frame, RGB[:, :, ::-1])


def test_wrong_extension_is_decoded_by_content(tmp_path: Path) -> None:
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(JPEG)
    assert _check(path) is not None
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert _check(folder) is None


@settings(deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(ext=st.sampled_from(sorted(SEEDS)), cut=st.integers(0, 20_000),
       flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=6))
def test_fuzz_truncated_and_bit_flipped_files(tmp_path_factory: pytest.TempPathFactory, ext: str, cut: int,
                                              flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEEDS[ext])
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path_factory.getbasetemp() / f"fuzz{ext}"
    path.write_bytes(bytes(data[: cut % (len(data) + 1)]))
    _check(path)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".webp", ".gif"]))
def test_fuzz_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, ext: str) -> None:
    path = tmp_path_factory.getbasetemp() / f"random{ext}"
    path.write_bytes(data)
    _check(path)
