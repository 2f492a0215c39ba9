"""Shared fixtures. No test may touch the network; Qt runs offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

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
