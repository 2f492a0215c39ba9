"""Embedding side files of the index: similar-part search without loading every embedding.

Per audit file ``<stem>.h5`` the index keeps, in ``<log folder>/.index/``, two append-only files whose
row ``i`` belongs to row ``i`` of the audit file:

- ``<stem>.f16``: the unit-normalised global embedding, float16 [N, D] (zeros: not inspected);
- ``<stem>.sig``: a D-bit sign signature of the embedding after a fixed random rotation (SimHash),
  uint64 [N, ceil(D / 64)].

A search ranks every signature by Hamming distance to the query's (memory-mapped: 64 bytes per record
at D = 512, a million records in a few tens of milliseconds), then re-ranks the best candidates with the
exact cosine from the float16 rows. Hamming distance over random-rotation signs estimates the angle
between two vectors, so the exact top-k is all but always inside the candidates; the HDF5 file stays
the record of truth and both files are rebuilt from it when missing or short.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

VEC_SUFFIX = ".f16"
SIG_SUFFIX = ".sig"
_SEED = 18  # the rotation is part of the file format: never change it for a given width


@functools.lru_cache(maxsize=4)
def rotation(dim: int) -> np.ndarray:
    """The fixed random orthogonal matrix [dim, dim] the signatures of width ``dim`` are taken after."""
    q, r = np.linalg.qr(np.random.default_rng(_SEED + dim).standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def words(dim: int) -> int:
    return (dim + 63) // 64


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); rows with a NaN or of zero length become zeros."""
    v = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    v = np.where(np.isfinite(v).all(axis=1, keepdims=True), v, 0.0)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def signatures(unit: np.ndarray) -> np.ndarray:
    """uint64 [N, words(D)] sign bits of ``unit @ rotation(D)``."""
    n, dim = unit.shape
    bits = (unit @ rotation(dim)) > 0
    packed = np.packbits(bits, axis=1, bitorder="little")
    padded = np.zeros((n, words(dim) * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view(np.uint64)


class SideFiles:
    """The two side files of one audit file (``stem``) in the index folder."""

    def __init__(self, folder: Path, stem: str, dim: int) -> None:
        self.vec = Path(folder) / f"{stem}{VEC_SUFFIX}"
        self.sig = Path(folder) / f"{stem}{SIG_SUFFIX}"
        self.dim = int(dim)
        self.vec_row = 2 * self.dim
        self.sig_row = 8 * words(self.dim)

    def rows(self) -> int:
        """Rows both files hold completely."""
        try:
            return min(self.vec.stat().st_size // self.vec_row, self.sig.stat().st_size // self.sig_row)
        except FileNotFoundError:
            return 0

    def append(self, start: int, embeddings: np.ndarray) -> None:
        """Write rows ``start..`` (embeddings float [n, D], NaN rows = not inspected); cuts what lay beyond."""
        unit = normalise(embeddings)
        if unit.shape[1] != self.dim:
            msg = f"embedding width {unit.shape[1]} does not match the side file's {self.dim} ({self.vec.name})"
            raise ValueError(msg)
        for path, row, data in ((self.vec, self.vec_row, unit.astype(np.float16)),
                                (self.sig, self.sig_row, signatures(unit))):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, start * row)
                os.pwrite(fd, np.ascontiguousarray(data).tobytes(), start * row)
            finally:
                os.close(fd)

    def truncate(self, rows: int) -> None:
        for path, row in ((self.vec, self.vec_row), (self.sig, self.sig_row)):
            if path.exists() and path.stat().st_size > rows * row:
                os.truncate(path, rows * row)

    def remove(self) -> None:
        self.vec.unlink(missing_ok=True)
        self.sig.unlink(missing_ok=True)

    def hamming(self, query_sig: np.ndarray, ranges: list[tuple[int, int]], block: int = 1 << 17) -> np.ndarray:
        """Hamming distances of rows in ``ranges`` ([start, stop) pairs) to ``query_sig``, concatenated (uint16)."""
        n = self.rows()
        if n == 0 or not ranges:
            return np.empty(0, np.uint16)
        sig = np.memmap(self.sig, dtype=np.uint64, mode="r", shape=(n, words(self.dim)))
        out = []
        for start, stop in ranges:
            for s in range(start, min(stop, n), block):
                part = np.bitwise_xor(sig[s : min(s + block, stop, n)], query_sig)
                out.append(np.bitwise_count(part).sum(axis=1, dtype=np.uint16))
        return np.concatenate(out) if out else np.empty(0, np.uint16)

    def cosine(self, query_unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosine of ``rows`` to the unit query (NaN for rows without an embedding)."""
        n = self.rows()
        vec = np.memmap(self.vec, dtype=np.float16, mode="r", shape=(n, self.dim))
        order = np.argsort(rows)
        picked = np.asarray(vec[rows[order]], dtype=np.float32)
        sims = np.empty(len(rows), np.float32)
        sims[order] = picked @ query_unit
        empty = np.empty(len(rows), bool)
        empty[order] = ~picked.any(axis=1)
        sims[empty] = np.nan
        np.clip(sims, -1.0, 1.0, out=sims)  # float16 rounding
        return sims
