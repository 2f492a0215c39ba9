"""Station fixtures: a fitted tiny engine shared by the module, configs, and scripted frame sources."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inspector.backbone.registry import TINY_MODEL
from inspector.config import StationConfig, parse_station_config
from inspector.config.camera import SyntheticCameraSpec
from inspector.demo.parts import PartGenerator
from inspector.engine import Inspector
from inspector.station.engines import EngineCache
from inspector.station.sources import CameraError, FrameSource, RawFrame, SourceExhausted, SyntheticSource
from inspector.text.embeddings import TextEmbeddingCache
from tests.conftest import tiny_line

SIZE = 64
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "fewshot_data" / "demo"


def tiny_station_dict(tmp_path: Path, cache_dir: Path, lines: Sequence[str] = ("ring",), **sections: Any) -> dict:
    """A station on the tiny ViT at 64 px, synthetic 64 px camera, software trigger, log in tmp_path/logs."""
    data: dict[str, Any] = {
        "station": "test-station",
        "cache_dir": str(cache_dir),
        "lines": [{
            "name": name,
            "object_name": "metal ring",
            "model": {"name": TINY_MODEL, "pretrained": "random", "image_size": SIZE, "feature_layers": [1, 2]},
            "prompts": {"defects": {"scratch": "a scratch on the surface", "dent": "a dent in the metal"}},
        } for name in lines],
        "camera": {"kind": "synthetic", "synthetic": {"size": [SIZE, SIZE]}, "reconnect_min_s": 0.01,
                   "reconnect_max_s": 0.05, "grab_timeout_s": 5},
        "trigger": {"mode": "software"},
        "log": {"folder": str(tmp_path / "logs"), "heatmap_px": 8, "thumbnail_px": 32, "fsync_interval_s": None},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def write_handle_station(folder: Path, cache_dir: Path) -> Path:
    """A station YAML as the GUI runs it, on the tiny architecture: lines ring and ring2 fitted on demo samples
    (``folder/fewshot``), synthetic 128 px camera, free-run 8 Hz, audit log in ``folder/logs``."""
    fewshot = folder / "fewshot"
    (fewshot / "good").mkdir(parents=True)
    for name in ("good_000.png", "good_001.png", "good_002.png", "good_003.png"):
        shutil.copy(DEMO / "good" / name, fewshot / "good" / name)
    (fewshot / "defect" / "scratch").mkdir(parents=True)
    shutil.copy(DEMO / "defect" / "scratch" / "scratch_000.png", fewshot / "defect" / "scratch" / "scratch_000.png")
    lines = [tiny_line(name=name, fewshot={"folder": "fewshot", "max_shots": 4, "augment": False},
                       heads={"zero_shot": 1.0, "references": 1.0, "probe": 0.0},
                       training={"max_epochs": 2, "heads": ["clip_adapter", "patch"], "validation": {"folds": 2}})
             for name in ("ring", "ring2")]
    config = {
        "station": "test-station",
        "cache_dir": str(cache_dir),
        "model_dir": "models",
        "lines": lines,
        "camera": {"kind": "synthetic", "synthetic": {"size": [128, 128], "defect_rate": 0.5}},
        "trigger": {"mode": "free_run", "rate_hz": 8.0},
        "log": {"folder": "logs", "fsync_interval_s": None, "min_free_mb": 1},
    }
    path = folder / "station.yaml"
    path.write_text("# test station\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def text_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="session")
def fitted(tiny_backbone, text_cache_dir: Path) -> Inspector:
    """The tiny engine of line 'ring', fitted on four good 64 px parts (all heads but the probe)."""
    station = parse_station_config(tiny_station_dict(Path("."), text_cache_dir))
    inspector = Inspector(station.line("ring"), tiny_backbone, TextEmbeddingCache(text_cache_dir))
    gen = PartGenerator((SIZE, SIZE), seed=0)
    inspector.fit([gen.good().image for _ in range(4)])
    return inspector


@pytest.fixture
def make_station(tmp_path: Path, text_cache_dir: Path) -> Callable[..., StationConfig]:
    def make(lines: Sequence[str] = ("ring",), **sections: Any) -> StationConfig:
        return parse_station_config(tiny_station_dict(tmp_path, text_cache_dir, lines, **sections))

    return make


@pytest.fixture
def engines_for(fitted: Inspector) -> Callable[[StationConfig], EngineCache]:
    def make(station: StationConfig) -> EngineCache:
        cache = EngineCache(station, fit=False)
        cache.put(fitted)
        return cache

    return make


class FlakySource(FrameSource):
    """Synthetic frames; while ``down`` is set the camera is unplugged (read and open fail)."""

    def __init__(self) -> None:
        self.inner = SyntheticSource(SyntheticCameraSpec(size=(SIZE, SIZE)))
        self.down = threading.Event()
        self.label = "flaky camera"
        self.opens = 0

    def open(self) -> None:
        if self.down.is_set():
            msg = "flaky camera: device not found"
            raise CameraError(msg)
        self.opens += 1

    def read(self, timeout_s: float) -> RawFrame:
        if self.down.is_set():
            msg = "flaky camera: cable pulled"
            raise CameraError(msg)
        return self.inner.read(timeout_s)


class ScriptedSource(FrameSource):
    """Delivers the given raw images in order (anything: arrays of any shape / dtype, junk objects)."""

    def __init__(self, items: Sequence[object]) -> None:
        self.items = list(items)
        self.label = "scripted camera"

    def read(self, timeout_s: float) -> RawFrame:
        if not self.items:
            msg = "scripted camera: no more frames"
            raise SourceExhausted(msg)
        n = len(self.items)
        return RawFrame(self.items.pop(0), f"item-{n}")


class GateSource(FrameSource):
    """Synthetic frames, but each read waits for ``gate`` (up to the grab timeout); ``entered`` tells a read began."""

    def __init__(self) -> None:
        self.inner = SyntheticSource(SyntheticCameraSpec(size=(SIZE, SIZE)))
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.label = "gated camera"

    def read(self, timeout_s: float) -> RawFrame:
        self.entered.set()
        if not self.gate.wait(timeout_s):
            msg = f"gated camera: no frame within {timeout_s} s"
            raise CameraError(msg)
        return self.inner.read(timeout_s)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll until true (a deadline, not a sleep-based assumption)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def good_frame(seed: int = 1) -> np.ndarray:
    return PartGenerator((SIZE, SIZE), seed=seed).good().image


def write_trained_station(folder: Path, trained: Any) -> Path:
    """A station YAML (as the GUI runs it) on a trained line (tests.training's ``trained``: v1 registered,
    models/ and cache/ copied into ``folder``), rolled back to the base heads so v1 is a candidate to approve;
    synthetic camera, free-run 8 Hz, audit log in ``folder/logs``."""
    from inspector.training.registry import ModelRegistry
    from tests.training.conftest import FAST_TRAINING

    trained.copy(folder)
    registry = ModelRegistry(folder / "models", "ring")
    if registry.deployed() != "base":  # the gate may have deployed v1 (or refused it: then it is a candidate already)
        registry.rollback(who="setup")
    line = tiny_line(training=FAST_TRAINING, fewshot={"folder": str(trained.station.lines[0].fewshot.folder)})
    config = {
        "station": "test-station", "model_dir": "models", "cache_dir": "cache", "lines": [line],
        "camera": {"kind": "synthetic", "synthetic": {"size": [128, 128], "defect_rate": 0.5}},
        "trigger": {"mode": "free_run", "rate_hz": 8.0},
        "log": {"folder": "logs", "fsync_interval_s": None, "min_free_mb": 1},
    }
    path = folder / "station.yaml"
    path.write_text("# trained station\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
