"""Lightning runs of the trainable heads: the feature data module, the Trainer, its callbacks, :func:`fit_head`.

The LightningModules (loss, steps, optimiser of each head) are in
:mod:`inspector.training.lightning_modules`. :class:`FeatureDataModule` serves encoded views
(never images: the backbone is frozen and its features come from the cache). :func:`fit_head` runs
one Trainer - CPU/GPU auto-selection, mixed precision where the device has it, early stopping,
checkpointing, CSV (and TensorBoard when installed) logging, a ``strategy`` passthrough for DDP -
and returns the pure head with the weights of its best validation epoch. The validation views given
here choose that epoch: a training run passes its inner-validation views, never the judging ones.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from inspector.config.training import TrainingSpec
from inspector.training.errors import TrainingCancelledError, TrainingDivergedError
from inspector.training.featureset import FeatureSet
from inspector.training.lightning_modules import CoOpModule, HeadModule
from inspector.training.progress import TrainingEvent


# ------------------------------------------------------------------------------------ data
class FeatureDataset(Dataset):
    """Views of a FeatureSet as dicts of tensors (plus per-view extras the head precomputed).

    Only what the head reads is served: the image-embedding heads never see patch tokens.
    """

    def __init__(self, data: FeatureSet, extra: dict[str, Tensor] | None = None, dense: bool = False,
                 patches: bool = True) -> None:
        self.data = data
        self.extra = extra or {}
        self.dense = dense
        self.patches = patches

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: Any) -> dict[str, Tensor]:
        return self.data.item(i, self.extra, self.dense, self.patches)

    def everything(self) -> dict[str, Tensor]:
        """All views as one batch (no per-epoch collation)."""
        return self[torch.arange(len(self))]


class _OneBatch(Dataset):
    def __init__(self, batch: dict[str, Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.batch


class FeatureDataModule(pl.LightningDataModule):
    """Training and validation views of one fit; shuffling is seeded. ``batch_size`` None: every view per step."""

    def __init__(self, train: FeatureSet, val: FeatureSet | None, batch_size: int | None, seed: int = 0,
                 train_extra: dict[str, Tensor] | None = None, val_extra: dict[str, Tensor] | None = None,
                 dense: bool = False, patches: bool = True) -> None:
        super().__init__()
        self.train_set = FeatureDataset(train, train_extra, dense, patches)
        self.val_set = FeatureDataset(val, val_extra, dense, patches) if val is not None and len(val) else None
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        if self.batch_size is None or self.batch_size >= len(self.train_set):
            # One batch of every view: order does not matter, so it is collated once for all epochs.
            return DataLoader(_OneBatch(self.train_set.everything()), batch_size=None)
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=gen, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(_OneBatch(self.val_set.everything()), batch_size=None)


# ------------------------------------------------------------------------------------ callbacks
class ProgressCallback(pl.Callback):
    """Forwards each epoch's metrics as a TrainingEvent and keeps the history."""

    def __init__(self, emit: Callable[[TrainingEvent], None], head: str, fold: int | None, max_epochs: int) -> None:
        self.emit = emit
        self.head = head
        self.fold = fold
        self.max_epochs = max_epochs
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k in ("train_loss", "val_loss", "val_auroc")}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        where = f" fold {self.fold + 1}" if self.fold is not None else ""
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.emit(TrainingEvent("train", f"{self.head}{where} epoch {trainer.current_epoch + 1}: {text}",
                                trainer.current_epoch + 1, self.max_epochs, self.head, self.fold, metrics))


class CancelCallback(pl.Callback):
    """Stops the Trainer after the current batch when ``should_stop()`` turns true."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop
        self.cancelled = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.should_stop():
            self.cancelled = True
            trainer.should_stop = True


class BestState(pl.Callback):
    """Keeps (in memory) the module state of the epoch with the lowest validation loss."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.epoch = -1
        self.state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if not math.isfinite(value):
            msg = (f"{getattr(pl_module, 'name', 'head')} head diverged: {self.monitor} is {value} at epoch "
                   f"{trainer.current_epoch}; lower training.lr and retrain")
            raise TrainingDivergedError(msg)
        if value < self.best:
            self.best, self.epoch = value, trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


# ------------------------------------------------------------------------------------ trainer
def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed on GPUs that have it, 16-mixed on other GPUs, 32-true elsewhere."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def _loggers(run_dir: Path, name: str, version: str) -> list[Any]:
    """CSV always; TensorBoard too where it is installed (it is optional on a station PC)."""
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name=name, version=version)]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir / "tensorboard"), name=name, version=version))
    return loggers


def build_trainer(spec: TrainingSpec, run_dir: Path, name: str, version: str, max_epochs: int,
                  callbacks: Sequence[pl.Callback], validate: bool) -> pl.Trainer:
    """A Trainer from the line's settings; the accelerator / devices / strategy pass straight through."""
    return pl.Trainer(
        accelerator=spec.accelerator,
        devices=list(spec.devices) if isinstance(spec.devices, tuple) else spec.devices,
        strategy=spec.strategy,
        num_nodes=spec.num_nodes,
        precision=resolve_precision(spec.precision, spec.accelerator),  # type: ignore[arg-type]
        max_epochs=max_epochs,
        deterministic="warn" if spec.deterministic else False,
        logger=_loggers(run_dir, name, version),
        callbacks=list(callbacks),
        enable_model_summary=False,
        enable_progress_bar=False,
        enable_checkpointing=validate,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        log_every_n_steps=1,
        default_root_dir=str(run_dir),
    )


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banner lines (GPU available, tips, ...) are noise on a station console: keep its warnings only."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*treespec.*")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch intra-op threads for the duration of a fit (restored after)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class FitResult:
    """A trained pure head and how its training went."""

    name: str
    head: nn.Module
    best_epoch: int
    epochs_run: int
    best_val_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str | None = None
    chosen_on: tuple[str, ...] = ()  # sample keys of the validation views that chose the epoch (none: the last)


def fit_head(module: HeadModule, train: FeatureSet, val: FeatureSet | None, spec: TrainingSpec, *,
             run_dir: Path, max_epochs: int, fold: int | None = None,
             emit: Callable[[TrainingEvent], None] = lambda e: None,
             should_stop: Callable[[], bool] = lambda: False) -> FitResult:
    """Train one head; returns it with the weights of its best validation epoch (or the last one)."""
    t0 = time.perf_counter()
    validate = val is not None and len(val) > 0
    version = f"fold{fold}" if fold is not None else "final"
    progress = ProgressCallback(emit, module.name, fold, max_epochs)
    cancel = CancelCallback(should_stop)
    callbacks: list[pl.Callback] = [progress, cancel]
    best = BestState()
    checkpoint: ModelCheckpoint | None = None
    if validate:
        checkpoint = ModelCheckpoint(dirpath=str(run_dir / "checkpoints" / module.name / version), filename="best",
                                     monitor="val_loss", mode="min", save_top_k=1, save_weights_only=True)
        callbacks += [best, checkpoint]
        if spec.patience > 0:
            callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=spec.patience, check_finite=True))
    dm = FeatureDataModule(train, val if validate else None, None if module.full_batch else spec.batch_size,
                           seed=spec.seed + (fold or 0), train_extra=module.extras(train, training=True),
                           val_extra=module.extras(val, training=False) if validate else None,  # type: ignore[arg-type]
                           dense=module.uses_dense, patches=module.uses_patches)
    with quiet_lightning(), torch_threads(spec.threads):
        trainer = build_trainer(spec, run_dir, module.name, version, max_epochs, callbacks, validate)
        trainer.fit(module, datamodule=dm)
    if cancel.cancelled or should_stop():
        msg = f"training cancelled during the {module.name} head; nothing was registered"
        raise TrainingCancelledError(msg)
    if best.state is not None:
        module.load_state_dict(best.state)
    epochs_run = trainer.current_epoch
    head = copy.deepcopy(module.export()).cpu().eval() if not isinstance(module, CoOpModule) else module.export()
    return FitResult(module.name, head, best.epoch if best.state is not None else epochs_run - 1, epochs_run,
                     best.best if best.state is not None else None, progress.history, time.perf_counter() - t0,
                     checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None,
                     tuple(sorted(set(val.keys))) if validate and val is not None else ())
