"""One LightningModule per trainable head: its loss, steps and optimiser, and the factory that builds them.

The heads themselves (pure ``nn.Module``s the engine runs) are in :mod:`inspector.training.modules`;
a LightningModule wraps one for training only and ``export()`` hands it back trained.
:func:`make_module` builds the module of a head by name from its training views and a
:class:`HeadContext`; :func:`inspector.training.lightning.fit_head` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspector.config.training import TrainingSpec
from inspector.evaluation.metrics import image_auroc
from inspector.training.errors import TrainingDivergedError
from inspector.training.featureset import PATCH_POSITIVE, FeatureSet, features_from_batch
from inspector.training.modules import (
    ClipAdapterHead,
    CoOpHead,
    PromptLearner,
    ResidualPatchHead,
    TipAdapterHead,
    log_odds,
    make_prompt_learner,
)

# Defect patches are rare: weigh them up in the patch loss.
PATCH_POS_WEIGHT = 5.0
# Views per neighbour-search chunk when precomputing the patch head's inputs.
_SEARCH_CHUNK = 16


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
        learner = make_prompt_learner(ctx.clip_model, ctx.tokenizer, ctx.phrases, spec.coop.context, spec.coop.init)
        width = int(learner.context.shape[1])
        coop = CoOpHead(dim, n_classes, spec.coop.context, width)
        coop.set_text(ctx.class_text, ctx.scale)
        args["lr"] = spec.coop.lr or spec.lr
        args["max_epochs"] = min(max_epochs, spec.coop.max_epochs or max_epochs)
        return CoOpModule(coop, learner, **args)
    msg = f"unknown head {name!r}; known: {sorted(MODULES)}"
    raise ValueError(msg)
