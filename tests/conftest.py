"""Shared fixtures. No test may touch the network; Qt runs offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import inspector.backbone  # noqa: F401  (registers the tiny test architecture)
from inspector.backbone.registry import TINY_MODEL

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tiny_line(**overrides: object) -> dict:
    """A valid line dict on the tiny registered architecture (random weights)."""
    line: dict = {
        "name": "ring",
        "object_name": "metal ring",
        "model": {"name": TINY_MODEL, "pretrained": "random", "image_size": 128, "feature_layers": [1, 2]},
        "prompts": {"defects": {"scratch": "a scratch on the surface", "dent": "a dent in the metal"}},
    }
    for key, value in overrides.items():
        line[key] = value
    return line


@pytest.fixture
def tiny_line_dict() -> dict:
    return tiny_line()


@pytest.fixture(scope="session")
def tiny_backbone():
    from inspector.backbone.loading import load_backbone
    from inspector.config import ModelSpec

    return load_backbone(ModelSpec(name=TINY_MODEL, pretrained="random"))


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def plant(part, rng: np.random.Generator, radius: int = 5, kind: str = "texture") -> tuple[np.ndarray, np.ndarray]:
    """Paste a defect on the ring surface (CutPaste-style foreign texture, or a dark pit)."""
    img = part.image.copy()
    ys, xs = np.nonzero(part.ring)
    k = rng.integers(len(ys))
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(mask, (int(xs[k]), int(ys[k])), radius, 1, -1)
    sel = mask.astype(bool)
    if kind == "texture":
        img[sel] = rng.integers(0, 255, (int(sel.sum()), 3), dtype=np.uint8)
    else:
        img[sel] = (img[sel] * 0.15).astype(np.uint8) + rng.integers(0, 30, (int(sel.sum()), 3), dtype=np.uint8)
    return img, mask


def audit_events(log_dir: Path) -> list[dict]:
    """Every audit event in the log folder's files, oldest file first."""
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader

    out: list[dict] = []
    for path in log_files(log_dir):
        with AuditReader(path) as reader:
            out += reader.events()
    return out
