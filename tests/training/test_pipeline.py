"""Real Lightning runs on the tiny random ViT: the adapter beats the untrained heads; the gate, NaN and
cancellation keep the deployed model; the feature cache re-encodes only new images."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from inspector.engine import Inspector
from inspector.evaluation.metrics import image_auroc
from inspector.training import lightning_modules as L
from inspector.training.deploy import apply_version
from inspector.training.errors import TrainingCancelledError, TrainingDivergedError
from inspector.training.pipeline import train_line
from inspector.training.progress import CancelToken
from inspector.training.registry import ModelRegistry
from tests.training.conftest import TrainedLine, fresh_parts, make_fewshot, make_station


def test_adapter_beats_the_untrained_heads(trained: TrainedLine) -> None:
    report = trained.report
    m = report.metrics
    assert m["validation"]["mode"] == "kfold" and (m["new"]["n_good"], m["new"]["n_defect"]) == (12, 12)
    # Held-out, same images, fixed seeds: the station's decision with the adapter beats the base heads'.
    assert m["new"]["auroc"] > m["base"]["auroc"], (m["new"], m["base"])
    heads = m["heads_auroc"]
    assert heads["adapter"] > heads["zero_shot"] and heads["adapter"] > heads["probe"], heads
    assert heads["adapter.patch"] >= 0.9
    # The masks-trained patch head sharpens the map (patch-level AUROC against the masks).
    assert m["map_auroc"]["new"] > m["map_auroc"]["base"], m["map_auroc"]
    # Global-embedding heads cannot see a small defect through a random backbone: weighted out.
    assert m["adapter_weights"]["patch"] > 0 and m["adapter_weights"]["clip_adapter"] == 0
    assert report.decision.passed and report.promoted and report.version == "v1"

    # Fresh parts, the station engine: every result names the version that judged it.
    station = trained.station
    inspector = Inspector.from_config(station)
    images, labels = fresh_parts(24)
    base = inspector.inspect_batch(images)
    apply_version(inspector, ModelRegistry(station.resolve(station.model_dir), "ring"), "v1")
    new = inspector.inspect_batch(images)
    assert {r.model_version for r in base} == {"base"} and {r.model_version for r in new} == {"v1"}
    adapter = image_auroc(labels, np.array([r.head_scores["adapter"] for r in new]))
    zero_shot = image_auroc(labels, np.array([r.head_scores["zero_shot"] for r in new]))
    assert adapter >= 0.9 and adapter > zero_shot
    assert new[0].threshold == pytest.approx(m["deployment"]["threshold"])


def test_registry_card_and_progress(trained: TrainedLine) -> None:
    report = trained.report
    assert any("broken.png" in s and "not a decodable image" in s for s in report.skipped)
    folder = report.path
    card = json.loads((folder / "card.json").read_text())
    assert card["backbone"]["untrained"] and card["backbone"]["model"] == "inspector-tiny-vit"
    assert card["seed"] == 0 and card["augmentation"]["views_per_image"] == 1
    assert len(card["data"]["files"]) == 24 and all(len(f["sha256"]) == 64 for f in card["data"]["files"])
    assert any("broken.png" in s for s in card["data"]["skipped"])
    assert set(card["timings_s"]) >= {"encode", "train_patch", "train_coop", "evaluate"}
    assert card["config"]["training"]["heads"] == ["patch", "clip_adapter", "tip_adapter", "coop"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["gate"]["passed"] and metrics["gate"]["compared_to"] == "base"
    assert len(metrics["deployment"]["score_stats"]) == 2
    assert (folder.parent / "split.json").exists()
    stages = [e.stage for e in trained.events]
    assert stages[0] == "load" and stages[-1] == "done"
    for stage in ("encode", "train", "gate", "register", "promote"):
        assert stage in stages
    folds = [e for e in trained.events if e.stage == "train" and e.head == "patch" and e.fold is not None]
    assert {e.fold for e in folds} == {0, 1, 2, 3}
    assert "train_loss" in folds[-1].metrics and "val_loss" in folds[-1].metrics and folds[-1].total == 6
    final = [e for e in trained.events if e.stage == "train" and e.head == "patch" and e.fold is None]
    assert final and "val_loss" not in final[-1].metrics  # the k-fold refit on every image
    csv = list((folder.parent / ".runs").glob("*/patch/*/metrics.csv"))
    assert csv, "Lightning's CSV log of the run"


def test_gate_refuses_a_worse_model(trained: TrainedLine, tmp_path: Path) -> None:
    """Without the patch head the new adapter only sees the global embedding: worse than deployed v1."""
    station = trained.copy(tmp_path)
    worse = make_station(tmp_path, station.lines[0].fewshot.folder, heads=["clip_adapter"], max_epochs=2)
    report = train_line(worse)
    assert report.version == "v2" and not report.promoted
    assert not report.decision.passed and report.decision.compared_to == "v1"
    assert any("auroc" in r for r in report.decision.reasons)
    registry = ModelRegistry(tmp_path / "models", "ring")
    assert registry.deployed() == "v1"
    assert report.metrics["deployed"]["version"] == "v1"
    assert report.cache["encoded"] == 0  # same images, same split: all features from the cache
    forced = train_line(worse, force=True, reason="trial", who="qa")
    assert forced.promoted and forced.forced and registry.deployed() == "v3"
    assert registry.deployment()["history"][-1]["action"] == "force-promote"


def test_nan_loss_aborts_and_keeps_the_old_model(trained: TrainedLine, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    station = trained.copy(tmp_path)
    inspector = Inspector.from_config(station)
    registry = ModelRegistry(tmp_path / "models", "ring")
    apply_version(inspector, registry, "v1")
    real_loss = L.PatchModule.loss

    def exploding(self, batch):
        loss = real_loss(self, batch)
        return loss * float("nan") if self.current_epoch >= 1 else loss

    monkeypatch.setattr(L.PatchModule, "loss", exploding)
    with pytest.raises(TrainingDivergedError, match=r"patch head diverged.*Nothing was registered.*keeps v1"):
        train_line(station, inspector=inspector)
    assert [v.version for v in registry.versions()] == ["v1"] and registry.deployed() == "v1"
    assert inspector.model_version == "v1"
    assert inspector.inspect(fresh_parts(2)[0][1]).model_version == "v1"


def test_cancel_registers_nothing(trained: TrainedLine, tmp_path: Path) -> None:
    station = trained.copy(tmp_path)
    token = CancelToken()

    def cancel_on_first_epoch(event) -> None:
        if event.stage == "train":
            token.cancel()

    with pytest.raises(TrainingCancelledError):
        train_line(station, observers=[cancel_on_first_epoch], cancel=token)
    assert [v.version for v in ModelRegistry(tmp_path / "models", "ring").versions()] == ["v1"]
    event = threading.Event()
    event.set()
    with pytest.raises(TrainingCancelledError):
        train_line(station, cancel=event)


def test_cache_reencodes_only_new_images(tmp_path: Path) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=6, n_defect=4)
    station = make_station(tmp_path, folder, heads=["tip_adapter"], max_epochs=1)
    first = train_line(station, promote=False)
    views = first.cache["encoded"]
    assert views > 10 and first.metrics["validation"]["mode"] == "kfold"
    assert train_line(station, promote=False).cache["encoded"] == 0
    make_fewshot(tmp_path / "fs", n_good=7, n_defect=4)  # one more good image, the others unchanged
    third = train_line(station, promote=False)
    assert third.cache["encoded"] == 2  # the new image and its one augmented view


def test_good_images_only_train_on_synthetic_defects(tmp_path: Path) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=8, n_defect=0)
    station = make_station(tmp_path, folder, heads=["patch"], max_epochs=3, synthesis={"per_image": 2})
    report = train_line(station, promote=False)
    m = report.metrics
    assert m["validation"]["synthetic_defects"] and m["new"]["n_defect"] > 0
    card = json.loads((report.path / "card.json").read_text())
    assert card["data"]["synthetic"]["count"] == 16 and card["classes"] == ["normal", "anomaly"]
    assert m["heads_auroc"]["adapter"] > 0.5
