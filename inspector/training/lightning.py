"""Lightning orchestration of the trainable heads (the heads themselves are in :mod:`modules`).

One LightningModule per head holds only what training needs: the loss, the steps and the
optimiser. :class:`FeatureDataModule` serves encoded views (never images: the backbone is frozen
and its features come from the cache). :func:`fit_head` runs one Trainer - CPU/GPU auto-selection,
mixed precision where the device has it, early stopping, checkpointing, CSV (and TensorBoard when
installed) logging, a ``strategy`` passthrough for DDP - and returns the pure head with the
weights of its best validation epoch.
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
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from inspector.config.training import TrainingSpec
from inspector.evaluation.metrics import image_auroc
from inspector.training.errors import TrainingCancelledError, TrainingDivergedError
from inspector.training.featureset import PATCH_POSITIVE, FeatureSet, features_from_batch
from inspector.training.modules import (
    ClipAdapterHead,
    CoOpHead,
    PromptLearner,
    ResidualPatchHead,
    TipAdapterHead,
    log_odds,
)
from inspector.training.progress import TrainingEvent

_logger = logging.getLogger(__name__)

# Defect patches are rare: weigh them up in the patch loss.
PATCH_POS_WEIGHT = 5.0
# Views per neighbour-search chunk when precomputing the patch head's inputs.
_SEARCH_CHUNK = 16


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


# ------------------------------------------------------------------------------------ modules
class HeadModule(pl.LightningModule):
    """Training of one pure head: loss, steps, optimiser; ``export()`` gives the trained head."""

    name: ClassVar[str] = ""
    uses_dense: ClassVar[bool] = False
    uses_patches: ClassVar[bool] = False
    # Image-embedding heads see every view in one step; the patch head uses training.batch_size.
    full_batch: ClassVar[bool] = True

    def __init__(self, head: nn.Module, grid: tuple[int, int], lr: float, weight_decay: float,
                 max_epochs: int) -> None:
        super().__init__()
        self.head = head
        self.grid = grid
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self._val_scores: list[Tensor] = []
        self._val_labels: list[Tensor] = []

    # -- what each head defines
    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def scores(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(features_from_batch(batch, self.grid)).score

    def extras(self, data: FeatureSet, training: bool) -> dict[str, Tensor] | None:
        """Per-view inputs computed once before training (none by default)."""
        return None

    def export(self) -> nn.Module:
        return self.head.eval()

    # -- Lightning hooks
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            msg = (f"{self.name} head diverged: training loss is {loss.item()} at epoch {self.current_epoch} "
                   f"(learning rate {self.lr:g}); lower training.lr and retrain")
            raise TrainingDivergedError(msg)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=int(batch["label"].shape[0]))
        return loss

    def loss_and_scores(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Validation: the loss and the per-view anomaly scores (a head may share work between them)."""
        return self.loss(batch), self.scores(batch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, scores = self.loss_and_scores(batch)
        self.log("val_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=int(batch["label"].shape[0]),
                 sync_dist=True)
        self._val_scores.append(scores.detach().float().cpu())
        self._val_labels.append(batch["label"].detach().cpu())

    def on_validation_epoch_end(self) -> None:
        scores = torch.cat(self._val_scores) if self._val_scores else torch.empty(0)
        labels = torch.cat(self._val_labels) if self._val_labels else torch.empty(0)
        self._val_scores.clear()
        self._val_labels.clear()
        if labels.numel() and 0 < int(labels.sum()) < labels.numel() and torch.isfinite(scores).all():
            self.log("val_auroc", image_auroc(labels.numpy(), scores.numpy()))

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class PatchModule(HeadModule):
    """Residual patch head: per-patch BCE against the masks plus an image-level term on the peak."""

    name = "patch"
    full_batch = False
    uses_patches = True
    head: ResidualPatchHead

    def extras(self, data: FeatureSet, training: bool) -> dict[str, Tensor]:
        # Training views never see their own image in the memory (leave-one-out), so good views
        # show the variation of an unseen good part; validation views are not in the memory at all.
        idx, dist = [], []
        for start in range(0, len(data), _SEARCH_CHUNK):
            part = data.index(torch.arange(start, min(start + _SEARCH_CHUNK, len(data))))
            i, d = self.head.neighbours(part.features, part.groups if training else None)
            idx.append(i)
            dist.append(d)
        return {"nn_idx": torch.cat(idx), "nn_dist": torch.cat(dist)}

    def _logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head.patch_logits(features_from_batch(batch, self.grid), batch["nn_idx"], batch["nn_dist"])

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        logits = self._logits(batch)
        labels = batch["label"].float()
        loss = F.binary_cross_entropy_with_logits(logits.amax(dim=1), labels)
        known = batch["mask_known"]
        if bool(known.any()):
            frac = batch["mask"][known].flatten(1)
            target = (frac >= PATCH_POSITIVE).float()
            weight = ((frac == 0) | (frac >= PATCH_POSITIVE)).float()
            pos_weight = torch.tensor(PATCH_POS_WEIGHT, device=logits.device)
            loss = loss + F.binary_cross_entropy_with_logits(logits[known], target, weight=weight,
                                                             pos_weight=pos_weight)
        return loss

    def scores(self, batch: dict[str, Tensor]) -> Tensor:
        return self._logits(batch).amax(dim=1)


class ClipAdapterModule(HeadModule):
    name = "clip_adapter"
    head: ClipAdapterHead

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(self.head.logits(features_from_batch(batch, self.grid)), batch["cls"])


class TipAdapterModule(HeadModule):
    name = "tip_adapter"
    head: TipAdapterHead

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(self.head.logits(features_from_batch(batch, self.grid)), batch["cls"])


class CoOpModule(HeadModule):
    """CoOp: the context vectors learn through the frozen text tower; the head keeps the result."""

    name = "coop"
    head: CoOpHead

    def __init__(self, head: CoOpHead, learner: PromptLearner, grid: tuple[int, int], lr: float,
                 weight_decay: float, max_epochs: int) -> None:
        super().__init__(head, grid, lr, weight_decay, max_epochs)
        self.learner = learner

    def on_fit_start(self) -> None:
        tower = self.learner.tower
        for module in (tower.token_embedding, tower.transformer, tower.ln_final):
            module.requires_grad_(False)
        if isinstance(tower.text_projection, nn.Parameter):
            tower.text_projection.requires_grad_(False)
        tower.positional_embedding.requires_grad_(False)
        if tower.token_embedding.weight.device != self.device:
            self.learner.tower = tower.moved(self.device)

    def _logits(self, batch: dict[str, Tensor], text: Tensor) -> Tensor:
        return self.head.log_scale.exp() * batch["global"].float() @ text.T

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(self._logits(batch, self.learner()), batch["cls"])

    def scores(self, batch: dict[str, Tensor]) -> Tensor:
        with torch.no_grad():
            return log_odds(self._logits(batch, self.learner()))

    def loss_and_scores(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self._logits(batch, self.learner())  # one pass of the text tower for both
        return F.cross_entropy(logits, batch["cls"]), log_odds(logits)

    def export(self) -> nn.Module:
        with torch.no_grad():
            text = self.learner().detach().float().cpu()
        head = self.head.cpu()
        head.set_text(text, float(head.log_scale.exp()))
        head.context = self.learner.context.detach().float().cpu().clone()
        return head.eval()


MODULES: dict[str, type[HeadModule]] = {
    m.name: m for m in (PatchModule, ClipAdapterModule, TipAdapterModule, CoOpModule)}


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
                     checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None)


# ------------------------------------------------------------------------------------ factory
@dataclass
class HeadContext:
    """What building a head needs beyond its training views."""

    spec: TrainingSpec
    grid: tuple[int, int]
    layers: tuple[int, ...]
    class_text: Tensor  # [C, D] text embedding of each class, normal first
    scale: float  # logit scale (the zero-shot temperature)
    phrases: tuple[str, ...]  # CoOp class phrases, normal first
    clip_model: nn.Module | None = None  # for CoOp's text tower
    tokenizer: Callable[..., Tensor] | None = None


def make_module(name: str, train: FeatureSet, ctx: HeadContext, max_epochs: int, seed: int = 0) -> HeadModule:
    """The LightningModule of head ``name``, its pure head initialised from the training views."""
    spec = ctx.spec
    n_classes, dim = ctx.class_text.shape
    args = {"grid": ctx.grid, "lr": spec.lr, "weight_decay": spec.weight_decay, "max_epochs": max_epochs}
    if name == "patch":
        if not train.features.patches:
            msg = "the patch head needs patch tokens; this backbone gives image-level features only"
            raise ValueError(msg)
        patch_dim = int(next(iter(train.features.patches.values())).shape[-1])
        head = ResidualPatchHead(ctx.layers, patch_dim, spec.patch.memory_size, spec.patch.hidden)
        goods = train.goods
        head.setup(goods.features, goods.groups, seed=seed)
        return PatchModule(head, **args)
    if name == "clip_adapter":
        clip = ClipAdapterHead(dim, n_classes, spec.clip_adapter.reduction, spec.clip_adapter.ratio)
        clip.set_text(ctx.class_text, ctx.scale)
        return ClipAdapterModule(clip, **args)
    if name == "tip_adapter":
        tip = TipAdapterHead(dim, n_classes, len(train), spec.tip_adapter.alpha, spec.tip_adapter.beta)
        tip.set_text(ctx.class_text, ctx.scale)
        tip.set_cache(train.features.global_emb, train.classes)
        return TipAdapterModule(tip, **args)
    if name == "coop":
        if ctx.clip_model is None or ctx.tokenizer is None:
            msg = "CoOp needs the backbone's text tower and tokenizer"
            raise ValueError(msg)
        from inspector.training.modules import make_prompt_learner

        learner = make_prompt_learner(ctx.clip_model, ctx.tokenizer, ctx.phrases, spec.coop.context, spec.coop.init)
        width = int(learner.context.shape[1])
        coop = CoOpHead(dim, n_classes, spec.coop.context, width)
        coop.set_text(ctx.class_text, ctx.scale)
        args["lr"] = spec.coop.lr or spec.lr
        args["max_epochs"] = min(max_epochs, spec.coop.max_epochs or max_epochs)
        return CoOpModule(coop, learner, **args)
    msg = f"unknown head {name!r}; known: {sorted(MODULES)}"
    raise ValueError(msg)
