"""Fixtures for training tests: a synthetic ring line with planted defects, on the tiny random ViT."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspector.config import StationConfig, parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.training.modules import AdapterStack, ClipAdapterHead, CoOpHead, ResidualPatchHead, TipAdapterHead
from tests.conftest import plant as plant_texture
from tests.conftest import tiny_line
from tests.heads.conftest import random_features

SIZE = (128, 128)
GRID, DIM, LAYERS = (4, 4), 16, (0, 1)
# Small, fast settings: tests run real Lightning fits, a few epochs each.
FAST_TRAINING = {
    "heads": ["patch", "clip_adapter", "tip_adapter", "coop"],
    "max_epochs": 6,
    "patience": 3,
    "batch_size": 16,
    "lr": 3e-3,
    "augment": {"views": 1},
    "patch": {"memory_size": 1024, "hidden": 32},
}


def plant(part, rng: np.random.Generator, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """A CutPaste-style foreign texture disc on the ring surface, and its mask (0/255)."""
    img, mask = plant_texture(part, rng, radius)
    return img, mask * 255


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), data)


def make_fewshot(root: Path, n_good: int = 8, n_defect: int = 8, radius: tuple[int, int] = (4, 8), seed: int = 0,
                 classes: tuple[str, ...] = ("scratch", "dent"), masks: bool = True) -> Path:
    """good/*.png and defect/<class>/*.png (+ masks/) of synthetic rings; returns ``root``."""
    goods = PartGenerator(size=SIZE, seed=seed)
    parts = PartGenerator(size=SIZE, seed=seed, stream=2)  # its own stream: n_good does not change the defects
    rng = np.random.default_rng(seed + 100)
    for i in range(n_good):
        _write(root / "good" / f"good_{i:03d}.png", goods.good().image)
    for i in range(n_defect):
        cls = classes[i % len(classes)]
        img, mask = plant(parts.good(), rng, int(rng.integers(radius[0], radius[1] + 1)))
        _write(root / "defect" / cls / f"{cls}_{i:03d}.png", img)
        if masks:
            _write(root / "defect" / cls / "masks" / f"{cls}_{i:03d}.png", mask)
    return root


def make_station(tmp_path: Path, folder: Path | None, **training: object) -> StationConfig:
    """A station with one tiny line whose few-shot folder is ``folder``; ``training`` overrides FAST_TRAINING."""
    line = tiny_line(training={**FAST_TRAINING, **training})
    if folder is not None:
        line["fewshot"] = {"folder": str(folder)}
    cfg = parse_station_config({"model_dir": str(tmp_path / "models"), "cache_dir": str(tmp_path / "cache"),
                                "lines": [line]})
    return cfg


def fresh_parts(n: int = 24, radius: tuple[int, int] = (4, 8), seed: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
    """Held-out parts (fresh generator stream): alternately good and with a planted defect."""
    gen = PartGenerator(size=SIZE, seed=seed, stream=1)
    rng = np.random.default_rng(seed + 7)
    images, labels = [], []
    for i in range(n):
        part = gen.good()
        if i % 2:
            images.append(plant(part, rng, int(rng.integers(radius[0], radius[1] + 1)))[0])
        else:
            images.append(part.image)
        labels.append(i % 2)
    return images, np.array(labels)


def tiny_adapter() -> AdapterStack:
    """A 4-head adapter on random 16-d features (grid 4x4, layers 0 and 1): no training needed."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _build_tiny_adapter()


def _build_tiny_adapter() -> AdapterStack:
    classes = ("normal", "scratch", "dent")
    feats = random_features(5, GRID, DIM, LAYERS, seed=3)
    text = F.normalize(torch.randn(3, DIM), dim=-1)
    good = random_features(6, GRID, DIM, LAYERS, seed=1)
    patch = ResidualPatchHead(LAYERS, DIM, memory_size=64, hidden=8)
    patch.setup(good, torch.arange(6), seed=0)
    clip = ClipAdapterHead(DIM, 3)
    clip.set_text(text, 50.0)
    tip = TipAdapterHead(DIM, 3, n_keys=5)
    tip.set_text(text, 50.0)
    tip.set_cache(feats.global_emb, torch.tensor([0, 1, 2, 0, 1]))
    coop = CoOpHead(DIM, 3, n_ctx=4, width=8)
    coop.set_text(text, 50.0)
    heads = {"patch": patch, "clip_adapter": clip, "tip_adapter": tip, "coop": coop}
    stack = AdapterStack({n: h.spec() for n, h in heads.items()}, classes)
    for n, h in heads.items():
        stack.heads[n].load_state_dict(h.state_dict())
    stack.set_statistics({"patch": 1.0, "clip_adapter": 0.5, "tip_adapter": 0.5, "coop": 0.0},
                         {"patch": (1.0, 2.0), "clip_adapter": (0.1, 1.0)}, {"patch": (0.5, 1.5)})
    return stack.eval()


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> object:
    """The heads are small: one intra-op thread is faster than two, and far faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fewshot(tmp_path: Path) -> Path:
    return make_fewshot(tmp_path / "fewshot")


@dataclass
class TrainedLine:
    """A line trained once per session with every head (v1, deployed), for tests that read it."""

    root: Path
    station: StationConfig
    report: object
    events: list

    def copy(self, dest: Path) -> StationConfig:
        """The same station with its own copy of the registry and cache (for tests that change them)."""
        shutil.copytree(self.root / "models", dest / "models")
        shutil.copytree(self.root / "cache", dest / "cache")
        folder = self.station.lines[0].fewshot.folder
        return make_station(dest, folder)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedLine:
    from inspector.training.pipeline import train_line

    root = tmp_path_factory.mktemp("trained")
    folder = make_fewshot(root / "fewshot", n_good=12, n_defect=12)
    (folder / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # 12 + 12 images: too few for a hold-out, so 4-fold (every image validated once, out of fold).
    station = make_station(root, folder)
    events: list = []
    report = train_line(station, observers=[events.append])
    return TrainedLine(root, station, report, events)
