"""Trainer construction from the line's settings: device / precision auto-selection, strategy passthrough."""

from __future__ import annotations

from pathlib import Path

import torch

from inspector.config.training import TrainingSpec
from inspector.training.lightning import build_trainer, resolve_precision, torch_threads


def test_precision_auto_is_full_on_cpu_and_mixed_on_gpu() -> None:
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "gpu") in ("bf16-mixed", "16-mixed")
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "auto") == "32-true"


def test_strategy_devices_and_nodes_pass_through(tmp_path: Path) -> None:
    spec = TrainingSpec(accelerator="cpu", devices=2, strategy="ddp", num_nodes=1)
    trainer = build_trainer(spec, tmp_path, "patch", "fold0", 3, [], validate=True)
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.num_devices == 2
    assert trainer.max_epochs == 3 and trainer.progress_bar_callback is None
    single = build_trainer(TrainingSpec(accelerator="cpu"), tmp_path, "patch", "final", 1, [], validate=False)
    assert single.num_devices == 1 and single.limit_val_batches == 0
    assert any(type(lg).__name__ == "CSVLogger" for lg in single.loggers)


def test_thread_setting_is_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_only_rank_zero_writes(monkeypatch, tmp_path: Path) -> None:
    from inspector.training.feature_cache import FeatureCache
    from inspector.training.pipeline import global_rank

    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert global_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert global_rank() == 1
    monkeypatch.setenv("RANK", "3")
    assert global_rank() == 3
    cache = FeatureCache.for_backbone(tmp_path, "m", read_only=True)
    cache._write({("a", "orig"): None})  # type: ignore[dict-item]
    assert not list(tmp_path.iterdir())
