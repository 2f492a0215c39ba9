"""HDF5 cache of backbone features per (model, weights hash, image hash, augmentation view).

Encoding is what a retraining costs on a CPU; everything after it takes seconds. One file per
backbone identity (model, weights sha256, input size, feature layers, precision) holds a group
per image hash and a sub-group per view (``orig`` or the augmentation pipeline digest + seed), so
adding one image to the few-shot folder encodes that image's views only. Patch tokens are stored
as float16 (they are L2-normalised: the rounding is far below what the reference heads resolve),
the global embedding and the dense (text-aligned) tokens as float32: the zero-shot head scores
them in log-odds units, ``T * margin`` with T ~ 100, which multiplies float16's rounding by T
(2e-4 on a score, so the gate's base arm no longer matched the engine's). A file that cannot be
opened, or was written in another format, is set aside and rebuilt: a cache costs time when lost,
never correctness.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from inspector.backbone.dense import Features

_logger = logging.getLogger(__name__)

FORMAT = "inspector-features/2"  # v2: float32 dense tokens
# One backbone call encodes at most this many views (progress and cancellation land between calls).
ENCODE_CHUNK = 8


@dataclass
class CacheStats:
    hits: int = 0
    encoded: int = 0
    encode_seconds: float = 0.0


def cache_key(*parts: object) -> str:
    """Short stable digest of the parts that decide what the backbone returns."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


class FeatureCache:
    """Features of (image sha256, view id) pairs for one backbone identity.

    ``path`` None keeps everything in memory (tests, read-only stations).
    """

    def __init__(self, path: Path | None, model_key: str, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.model_key = model_key
        self.read_only = read_only  # e.g. DDP ranks other than 0: they read what rank 0 wrote
        self.stats = CacheStats()
        self._memory: dict[tuple[str, str], Features] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_backbone(cls, folder: Path | None, model_key: str, read_only: bool = False) -> FeatureCache:
        """The cache file of a backbone identity inside ``folder`` (None: in memory only)."""
        if folder is None:
            return cls(None, model_key)
        return cls(Path(folder) / f"features-{cache_key(model_key)}.h5", model_key, read_only)

    # ------------------------------------------------------------------------------------ file
    def _open(self, mode: str) -> h5py.File | None:
        assert self.path is not None
        if mode == "r" and not self.path.exists():
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = h5py.File(self.path, mode)
        except OSError as exc:
            if "lock" in str(exc).lower():  # another process has it open: not ours to touch
                raise
            self._set_aside(exc)
            if mode == "r":
                return None
            fh = h5py.File(self.path, mode)
        stored = fh.attrs.get("model_key")
        if stored is not None and stored != self.model_key:
            fh.close()
            self._set_aside(ValueError(f"belongs to {stored!r}"))
            return None if mode == "r" else self._open(mode)
        if stored is not None and fh.attrs.get("format") != FORMAT:
            found = fh.attrs.get("format")
            fh.close()
            self._set_aside(ValueError(f"format {found!r}, this version writes {FORMAT!r}"))
            return None if mode == "r" else self._open(mode)
        if stored is None and mode != "r":
            fh.attrs["model_key"] = self.model_key
            fh.attrs["format"] = FORMAT
        return fh

    def _set_aside(self, exc: BaseException) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        _logger.warning("feature cache %s is unusable (%s): moved to %s and rebuilt", self.path, exc, aside.name)
        self.path.replace(aside)

    def _read(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Features]:
        out: dict[tuple[str, str], Features] = {}
        if self.path is None:
            return out
        try:
            fh = self._open("r")
        except OSError as exc:
            _logger.warning("feature cache %s not readable now (%s): encoding instead", self.path, exc)
            return out
        if fh is None:
            return out
        with fh:
            for key in keys:
                name = f"{key[0]}/{key[1]}"
                if name not in fh:
                    continue
                try:
                    out[key] = _features_from_group(fh[name])
                except (KeyError, OSError, ValueError) as exc:  # a torn entry: re-encode it
                    _logger.warning("feature cache entry %s unreadable (%s): re-encoding", name, exc)
        return out

    def _write(self, items: dict[tuple[str, str], Features]) -> None:
        if self.path is None or not items or self.read_only:
            return
        try:
            fh = self._open("a")
        except OSError as exc:  # read-only folder, disk full: slower next time, not wrong
            _logger.warning("cannot write feature cache %s: %s", self.path, exc)
            return
        if fh is None:
            return
        with fh:
            for (sha, view), feats in items.items():
                name = f"{sha}/{view}"
                if name in fh:
                    del fh[name]
                _features_to_group(fh.create_group(name), feats)
            fh.flush()

    # ------------------------------------------------------------------------------------ API
    def get_or_encode(
        self,
        keys: Sequence[tuple[str, str]],
        images: Callable[[int], np.ndarray],
        encode: Callable[[list[np.ndarray]], Features],
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Features:
        """Features of every key, in order; ``images(i)`` renders the view of ``keys[i]`` only on a miss.

        ``encode`` takes a list of views and returns their Features; ``progress(done, total)`` is
        called after each encoded chunk; ``should_stop()`` is checked between chunks.
        """
        with self._lock:
            found = {k: self._memory[k] for k in keys if k in self._memory}
            missing_keys = [k for k in dict.fromkeys(keys) if k not in found]
            found.update(self._read(missing_keys))
            todo = [k for k in dict.fromkeys(keys) if k not in found]
            pending = set(todo)
            self.stats.hits += sum(1 for k in keys if k not in pending)
            index = {k: i for i, k in enumerate(keys)}
            done = 0
            if progress is not None:
                progress(0, len(todo))
            for start in range(0, len(todo), ENCODE_CHUNK):
                if should_stop is not None and should_stop():
                    from inspector.training.errors import TrainingCancelledError

                    msg = "cancelled while encoding features (what was encoded so far is cached)"
                    raise TrainingCancelledError(msg)
                chunk = todo[start : start + ENCODE_CHUNK]
                t0 = time.perf_counter()
                feats = encode([images(index[k]) for k in chunk])
                self.stats.encode_seconds += time.perf_counter() - t0
                self.stats.encoded += len(chunk)
                fresh = {k: _detach(feats.index(i)) for i, k in enumerate(chunk)}
                self._write(fresh)
                self._memory.update(fresh)
                found.update(fresh)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(todo))
            self._memory.update(found)
            return Features.cat([found[k] for k in keys]) if keys else _empty()

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()


def _detach(f: Features) -> Features:
    """A plain (non-inference) CPU float32 copy, as read back from the file (float16 patch tokens)."""
    def rt(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu", torch.float16).float().clone()

    return Features(f.global_emb.detach().to("cpu", torch.float32).clone(),
                    None if f.dense is None else f.dense.detach().to("cpu", torch.float32).clone(),
                    {k: rt(v) for k, v in f.patches.items()}, f.grid)


def _empty() -> Features:
    return Features(torch.empty(0, 0), None, {}, (1, 1))


def _features_to_group(group: h5py.Group, f: Features) -> None:
    group.attrs["grid"] = np.asarray(f.grid, dtype=np.int64)
    group.create_dataset("global", data=f.global_emb[0].numpy().astype(np.float32))
    if f.dense is not None:
        group.create_dataset("dense", data=f.dense[0].numpy().astype(np.float32))
    for layer, tokens in f.patches.items():
        group.create_dataset(f"patch_{layer}", data=tokens[0].numpy().astype(np.float16))
    group.attrs["complete"] = True  # written last: an entry without it is torn


def _features_from_group(group: h5py.Group) -> Features:
    if not group.attrs.get("complete", False):
        msg = "incomplete entry"
        raise ValueError(msg)
    grid = tuple(int(x) for x in group.attrs["grid"])
    glob = torch.from_numpy(np.asarray(group["global"], dtype=np.float32))[None]
    dense = torch.from_numpy(np.asarray(group["dense"], dtype=np.float32))[None] if "dense" in group else None
    patches = {int(name.split("_", 1)[1]): torch.from_numpy(np.asarray(group[name], dtype=np.float32))[None]
               for name in group if name.startswith("patch_")}
    return Features(glob, dense, patches, grid)  # type: ignore[arg-type]
