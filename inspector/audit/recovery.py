"""Seal an audit file left open by a crashed writer, so that plain tools open it again.

A SWMR writer marks the file "open for writing" in the superblock. After ``kill -9`` or a power
cut the mark stays, the data are intact (SWMR keeps the file consistent at every moment), but
HDF5 then refuses a plain open ("file is already open for write ... h5clear") and only a SWMR
reader (``h5py.File(path, "r", swmr=True)``) reads it. Sealing does what HDF5's ``h5clear -s``
does: clear the superblock's file-consistency flags and recompute its checksum. It is done only
under the writer's folder lock (so the file cannot belong to a live writer), only for the
superblock layout we know (versions 2/3, checksum verified before and after), and it is undone if
the sealed file does not open.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import struct
from pathlib import Path
from typing import Any

import h5py

_logger = logging.getLogger(__name__)

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLAGS_AT = 11
_M32 = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M32
    pos = 0
    while length > 12:
        x, y, z = struct.unpack_from("<3I", data, pos)
        a, b, c = (a + x) & _M32, (b + y) & _M32, (c + z) & _M32
        a = (a - c) & _M32; a ^= _rot(c, 4); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rot(a, 6); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rot(b, 8); b = (b + a) & _M32  # noqa: E702
        a = (a - c) & _M32; a ^= _rot(c, 16); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rot(a, 19); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rot(b, 4); b = (b + a) & _M32  # noqa: E702
        length -= 12
        pos += 12
    if length == 0:
        return c
    x, y, z = struct.unpack("<3I", data[pos:].ljust(12, b"\0"))
    a, b, c = (a + x) & _M32, (b + y) & _M32, (c + z) & _M32
    c ^= b; c = (c - _rot(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M32  # noqa: E702
    return c


class _Superblock:
    """Superblock version 2/3 at offset 0: signature, version, sizes, flags, 4 addresses, checksum."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.version = raw[8]
        self.offset_size = raw[9]
        self.flags = raw[_FLAGS_AT]
        self.length = 12 + 4 * self.offset_size
        fmt = {4: "<I", 8: "<Q"}[self.offset_size]
        self.eoa_at = 12 + 2 * self.offset_size
        self.eoa = struct.unpack_from(fmt, raw, self.eoa_at)[0]
        self.checksum = struct.unpack_from("<I", raw, self.length)[0]
        self._fmt = fmt

    @classmethod
    def read(cls, path: Path) -> _Superblock | None:
        try:
            with path.open("rb") as fh:
                head = fh.read(12 + 4 * 8 + 4)
        except OSError as exc:  # unreadable (permissions, vanished): not ours to seal
            _logger.warning("%s: cannot read its superblock (%s)", path, exc)
            return None
        if len(head) < 12 or head[:8] != SIGNATURE or head[8] not in (2, 3) or head[9] not in (4, 8):
            return None
        if len(head) < 12 + 4 * head[9] + 4:  # a file cut inside its superblock
            return None
        sb = cls(head)
        if lookup3(head[: sb.length]) != sb.checksum:
            return None
        return sb

    def sealed(self, eoa: int) -> bytes:
        body = bytearray(self.raw[: self.length])
        body[_FLAGS_AT] = 0
        struct.pack_into(self._fmt, body, self.eoa_at, eoa)
        return bytes(body) + struct.pack("<I", lookup3(bytes(body)))


def truncation(path: Path) -> tuple[int, int] | None:
    """(file size, size the superblock expects) when a v2/v3 HDF5 file is shorter than it says; else None."""
    path = Path(path)
    sb = _Superblock.read(path)
    if sb is None:
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return (size, sb.eoa) if size < sb.eoa else None


def open_flags(path: Path) -> int | None:
    """The superblock's file-consistency flags (0 = closed cleanly); None if not a v2/v3 HDF5 file."""
    sb = _Superblock.read(Path(path))
    return None if sb is None else sb.flags


def seal(path: Path) -> bool:
    """Clear the "open for write" mark of a file whose writer died; True if the file was changed.

    Call only when no process can be writing the file (the audit writer holds its folder lock).
    """
    import h5py

    path = Path(path)
    sb = _Superblock.read(path)
    if sb is None or sb.flags == 0:
        return False
    size = path.stat().st_size
    if sb.eoa > size:
        _logger.warning("%s: file is shorter than its superblock says (%d < %d bytes); left for SWMR readers",
                        path, size, sb.eoa)
        return False
    original = sb.raw[: sb.length + 4]
    patched = sb.sealed(max(sb.eoa, size))
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, patched, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with h5py.File(path, "r") as fh:
            fh["inspections"].shape  # noqa: B018  (the table must open)
    except Exception:
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, original, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        _logger.warning("%s: sealed file did not open; restored the original superblock", path, exc_info=True)
        return False
    _logger.info("%s: sealed (left open by a writer that did not close it)", path)
    return True


# HDF5 retries unreadable metadata of a SWMR file 100 times with a backoff growing to 1 s (a writer may be
# half-way through an update): minutes per read of a damaged file. 20 attempts still ride out a live
# writer's flush (about 1 s of backoff in all) and turn damage into an error within seconds.
SWMR_READ_ATTEMPTS = 20
_set_read_attempts: Any = None


def open_swmr(path: Path) -> h5py.File:
    """``h5py.File(path, "r", swmr=True)`` with at most SWMR_READ_ATTEMPTS metadata read attempts."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    setter = _read_attempts_setter()
    if setter is not None:
        setter(fapl.id, SWMR_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def _read_attempts_setter() -> Any:
    """HDF5's H5Pset_metadata_read_attempts from the library h5py loaded (h5py does not wrap it); None if absent."""
    global _set_read_attempts
    if _set_read_attempts is None:
        _set_read_attempts = False
        try:
            maps = Path("/proc/self/maps").read_text()
            libs = sorted({m for m in re.findall(r"(/\S*/libhdf5(?:-[0-9a-f]+)?\.so[.0-9]*)", maps)})
            if libs:
                fn = ctypes.CDLL(libs[0]).H5Pset_metadata_read_attempts
                fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
                _set_read_attempts = fn
        except (OSError, AttributeError):  # not Linux, or another HDF5 build: HDF5's default attempts
            _logger.debug("cannot limit SWMR metadata read attempts", exc_info=True)
    return _set_read_attempts or None
