"""Fitted inspection engines per product line, with backbones shared between lines.

A changeover to a line seen before costs nothing; to a new line it costs the few-shot fit but
never a second load of a backbone that is already in memory (lines on the same weights share it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inspector.backbone.loading import LoadedBackbone, load_backbone
from inspector.config import ModelSpec, StationConfig
from inspector.engine import Inspector
from inspector.plc.port import UnknownLineError
from inspector.text.embeddings import TextEmbeddingCache

_logger = logging.getLogger(__name__)

BackboneLoader = Callable[[ModelSpec, Path | None], LoadedBackbone]


LoadKey = tuple[str, str, str | None, str]


def _load_key(spec: ModelSpec) -> LoadKey:
    """Which loaded backbone object two lines can share, known before loading (weights and device).

    Not an engine identity: that is ``Inspector.model_key``, which needs the loaded weights' digest
    and adds the input size and feature layers (they live in each engine's extractor, not in the
    shared backbone).
    """
    return (spec.name, spec.pretrained, spec.sha256.lower() if spec.sha256 else None, spec.device)


def embedding_dim(inspector: Inspector) -> int:
    """Width of the global image embedding the inspector produces."""
    return int(inspector.text.normal.shape[-1])


class StartupProgress:
    """Which step of building a line's engine is running, for a GUI that shows start-up as it moves.

    Steps of a first start: load the backbone, prepare the engine (compile the backbone pass, encode
    the prompts), fit the few-shot set; a cached step is skipped. Thread-safe: the building thread
    writes, the GUI's timer reads :meth:`snapshot`.
    """

    STEPS = 3

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._step: tuple[int, str, float] | None = None

    def begin(self, index: int, what: str) -> None:
        with self._lock:
            self._step = (index, what, time.monotonic())
        _logger.info("start-up step %d/%d: %s", index, self.STEPS, what)

    def done(self) -> None:
        with self._lock:
            self._step = None

    def snapshot(self) -> tuple[int, int, str, float] | None:
        """(step, of steps, what it does, seconds in it), or None when no engine is being built."""
        with self._lock:
            if self._step is None:
                return None
            index, what, since = self._step
        return index, self.STEPS, what, time.monotonic() - since


class EngineCache:
    """Builds and keeps one fitted :class:`Inspector` per line; thread-safe."""

    def __init__(self, station: StationConfig, *, fit: bool = True, loader: BackboneLoader = load_backbone) -> None:
        self.station = station
        self.fit = fit
        self._loader = loader
        self._backbones: dict[LoadKey, LoadedBackbone] = {}
        self._inspectors: dict[str, Inspector] = {}
        self._lock = threading.RLock()
        self.backbone_loads = 0
        self.progress = StartupProgress()

    def line_names(self) -> tuple[str, ...]:
        return tuple(line.name for line in self.station.lines)

    def backbone(self, spec: ModelSpec) -> LoadedBackbone:
        key = _load_key(spec)
        with self._lock:
            if key not in self._backbones:
                self._backbones[key] = self._loader(spec, self.station.resolve(self.station.model_dir))
                self.backbone_loads += 1
            return self._backbones[key]

    def put(self, inspector: Inspector) -> None:
        """Install an already fitted inspector for its line (tests, GUI tools)."""
        with self._lock:
            self._inspectors[inspector.line.name] = inspector
            self._backbones.setdefault(_load_key(inspector.line.model), inspector.backbone)

    def get(self, line_name: str) -> Inspector:
        """The fitted inspector of a line, built on first use (seconds: backbone load and few-shot fit)."""
        if line_name not in self.line_names():
            msg = f"unknown line {line_name!r}; this station has: {', '.join(self.line_names())}"
            raise UnknownLineError(msg)
        with self._lock:
            cached = self._inspectors.get(line_name)
            if cached is not None:
                return cached
            t0 = time.perf_counter()
            line = self.station.line(line_name)
            model = line.model
            try:
                self.progress.begin(1, f"loading the backbone {model.name}")
                backbone = self.backbone(model)
                self.progress.begin(2, "preparing the engine")  # the backbone pass (compiled, cached) and the prompts
                cache_dir = self.station.resolve(self.station.cache_dir)
                inspector = Inspector(line, backbone, TextEmbeddingCache(cache_dir))
                if self.fit and line.fewshot.folder is not None:
                    int8 = " + int8 check" if model.precision == "int8" else ""
                    self.progress.begin(3, f"fitting the few-shot samples{int8}")
                    inspector.fit_folder(self.station.resolve(line.fewshot.folder), cache_dir)
            finally:
                self.progress.done()
            self._inspectors[line_name] = inspector
            _logger.info("line %s ready in %.1f s", line_name, time.perf_counter() - t0)
            return inspector

    def cached(self, line_name: str) -> Inspector | None:
        with self._lock:
            return self._inspectors.get(line_name)
