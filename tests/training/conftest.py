"""Fixtures for training tests: a synthetic ring line with planted defects, on the tiny random ViT."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import StationConfig, parse_station_config
from inspector.synthetic import PartGenerator
from tests.conftest import tiny_line

SIZE = (128, 128)
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
    img = part.image.copy()
    ys, xs = np.nonzero(part.ring)
    k = rng.integers(len(ys))
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(mask, (int(xs[k]), int(ys[k])), radius, 255, -1)
    sel = mask.astype(bool)
    img[sel] = rng.integers(0, 255, (int(sel.sum()), 3), dtype=np.uint8)
    return img, mask


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), data)


def make_fewshot(root: Path, n_good: int = 8, n_defect: int = 8, radius: tuple[int, int] = (4, 8), seed: int = 0,
                 classes: tuple[str, ...] = ("scratch", "dent"), masks: bool = True) -> Path:
    """good/*.png and defect/<class>/*.png (+ masks/) of synthetic rings; returns ``root``."""
    gen = PartGenerator(size=SIZE, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for i in range(n_good):
        _write(root / "good" / f"good_{i:03d}.png", gen.good().image)
    for i in range(n_defect):
        cls = classes[i % len(classes)]
        img, mask = plant(gen.good(), rng, int(rng.integers(radius[0], radius[1] + 1)))
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


def test_parts(n: int = 24, radius: tuple[int, int] = (4, 8), seed: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
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


@pytest.fixture
def fewshot(tmp_path: Path) -> Path:
    return make_fewshot(tmp_path / "fewshot")
