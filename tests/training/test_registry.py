"""Model registry: atomic versions, the deployment stack, promotion / forced promotion / rollback logging."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from inspector.training.errors import RegistryError
from inspector.training.registry import ModelRegistry
from tests.heads.conftest import random_features
from tests.training.conftest import GRID, LAYERS, tiny_adapter

METRICS = {"new": {"auroc": 0.9}, "gate": {"passed": True, "compared_to": "base", "reasons": []},
           "deployment": {"score_stats": [0.5, 2.0], "map_stats": [0.1, 1.0], "threshold": 3.5}}
CARD = {"backbone": {"key": "tiny|random"}, "heads": ["patch"], "created_at": "2026-01-01T00:00:00+00:00"}


def test_register_list_and_load(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "ring")
    assert reg.versions() == [] and reg.deployed() == "base"
    v1 = reg.register(tiny_adapter(), METRICS, CARD)
    v2 = reg.register(tiny_adapter(), METRICS, CARD)
    assert (v1.version, v2.version) == ("v1", "v2")
    assert sorted(p.name for p in v1.path.iterdir()) == ["adapter.safetensors", "card.json", "metrics.json"]
    (tmp_path / "ring" / "v7").mkdir()  # a torn folder: ignored, and its number is not reused
    assert [v.version for v in reg.versions()] == ["v1", "v2"]
    assert reg.register(tiny_adapter(), METRICS, CARD).version == "v8"
    loaded = reg.load("v2")
    assert loaded.score_stats == (0.5, 2.0) and loaded.map_stats == (0.1, 1.0) and loaded.threshold == 3.5
    assert loaded.model_key == "tiny|random"
    feats = random_features(2, GRID, 16, LAYERS, seed=4)
    assert torch.allclose(loaded.adapter(feats).score, tiny_adapter()(feats).score)
    assert not list((tmp_path / "ring").glob(".staging-*"))
    with pytest.raises(RegistryError, match="no version v5"):
        reg.get("v5")
    with pytest.raises(RegistryError, match="not a version name"):
        reg.get("latest")


def test_promote_rollback_and_the_audit_trail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = ModelRegistry(tmp_path, "ring")
    for _ in range(2):
        reg.register(tiny_adapter(), METRICS, CARD)
    events: list[tuple] = []

    def audit(*event: object) -> None:
        events.append(event)

    assert reg.promote("v1", who="anna", audit=audit) == "base"
    with caplog.at_level(logging.WARNING, logger="inspector.training.registry"):
        reg.promote("v2", who="bob", forced=True, reason="customer sample run",
                    gate={"reasons": ["auroc 0.800 is lower than v1's 0.900"]}, audit=audit)
    assert reg.deployed() == "v2"
    assert "FORCED promotion by bob" in caplog.text and "auroc 0.800" in caplog.text
    assert [e[0] for e in events] == ["model_promote", "model_promote_forced"]
    assert events[1][1] == "bob" and events[1][3:] == ("v1", "v2") and "customer sample run" in events[1][2]
    assert reg.rollback(who="anna", audit=audit) == ("v2", "v1")
    assert reg.rollback(who="anna", audit=audit) == ("v1", "base")
    with pytest.raises(RegistryError, match="nothing earlier"):
        reg.rollback()
    state = json.loads((tmp_path / "ring" / "deployed.json").read_text())
    assert [h["action"] for h in state["history"]] == ["promote", "force-promote", "rollback", "rollback"]
    assert state["history"][1]["reason"] == "customer sample run" and state["stack"] == ["base"]
    with pytest.raises(RegistryError):
        reg.promote("v9")


def test_a_broken_deployment_file_is_reported(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "ring")
    (tmp_path / "ring").mkdir()
    (tmp_path / "ring" / "deployed.json").write_text("{not json")
    with pytest.raises(RegistryError, match="deleting deploys the base heads"):
        reg.deployed()
