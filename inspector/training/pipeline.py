"""Retrain one line: data -> views -> features -> heads -> held-out validation -> registry -> gate -> promotion.

:func:`train_line` is the one entry point (CLI, GUI, scripts). It never touches the deployed
model until the very end: a run that is cancelled, diverges or fails registers nothing and the
line keeps what it runs. A finished run always registers its version (with metrics and model
card); it is deployed only when the gate passes (or the engineer forces it, which is logged),
and when the caller passes the running engine the swap happens in it between two frames.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inspector.config import LineConfig, StationConfig, config_hash
from inspector.config.training import TrainingSpec
from inspector.heads import HeadOutput
from inspector.text.prompts import defect_phrase
from inspector.training import validation as V
from inspector.training.augment import Augmenter
from inspector.training.data import FewShotData, Fold, Sample, check_enough, load_fewshot, make_folds, pixels_sha256
from inspector.training.deploy import apply_version
from inspector.training.errors import (
    InsufficientDataError,
    RegistryError,
    TrainingCancelledError,
    TrainingDivergedError,
)
from inspector.training.feature_cache import FeatureCache
from inspector.training.featureset import FeatureSet, mask_to_grid
from inspector.training.gate import GateDecision, ValidationMetrics, decide
from inspector.training.progress import CancelToken, Emitter, Observer, TrainingEvent
from inspector.training.registry import BASE, AuditHook, LoadedVersion, ModelRegistry, current_user
from inspector.training.synthesis import DefectSynthesizer

if TYPE_CHECKING:
    from inspector.engine import Inspector
    from inspector.training.lightning import FitResult, HeadContext

_logger = logging.getLogger(__name__)

SYNTHETIC_CLASS = "anomaly"
RUNS_DIR = ".runs"
KEEP_RUNS = 5


@dataclass
class TrainingReport:
    """What a run did: the registered version, whether it was deployed, and the evidence."""

    line: str
    version: str | None
    promoted: bool
    forced: bool
    decision: GateDecision | None
    deployed_before: str
    deployed_after: str
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    @property
    def summary(self) -> str:
        if self.version is None:
            return f"line {self.line}: nothing registered"
        new = self.metrics.get("new", {})
        text = (f"line {self.line}: {self.version} registered (AUROC {new.get('auroc', float('nan')):.3f}, "
                f"F1 {new.get('f1', float('nan')):.3f})")
        if self.promoted:
            return text + f", deployed{' (FORCED)' if self.forced else ''} (was {self.deployed_before})"
        if self.decision is not None and not self.decision.passed:
            return text + f"; gate refused it, {self.deployed_after} stays: " + "; ".join(self.decision.reasons)
        return text + f"; not deployed, {self.deployed_after} stays"


@dataclass(frozen=True)
class _View:
    sample: int  # index into samples
    index: int  # 0 = original, 1.. augmented view


def _stopper(cancel: CancelToken | threading.Event | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, CancelToken):
        return lambda: cancel.cancelled
    return cancel.is_set


@contextlib.contextmanager
def _training_scope() -> Iterator[None]:
    """Lightning's deterministic mode is process-wide: give the station its own setting back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def global_rank() -> int:
    """This process's rank in a multi-process (DDP) run: every rank runs the pipeline, rank 0 alone writes."""
    import os

    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    local = os.environ.get("LOCAL_RANK", "")
    node = os.environ.get("NODE_RANK", "0")
    if local.isdigit():
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
        return int(node) * per_node + int(local) if node.isdigit() and per_node else int(local)
    return 0


def build_inspector(station: StationConfig, line: LineConfig) -> Inspector:
    """A fresh (unfitted) engine of the line: backbone, text embeddings (cached), extractor."""
    from inspector.backbone.loading import load_backbone
    from inspector.engine import Inspector
    from inspector.text.embeddings import TextEmbeddingCache

    backbone = load_backbone(line.model, station.resolve(station.model_dir))
    return Inspector(line, backbone, TextEmbeddingCache(station.resolve(station.cache_dir)))


class LineTraining:
    """One retraining run of one line (use :func:`train_line`)."""

    def __init__(self, station: StationConfig, line: LineConfig, spec: TrainingSpec, inspector: Inspector | None,
                 emit: Emitter, should_stop: Callable[[], bool], model_dir: Path, cache_dir: Path | None) -> None:
        self.station = station
        self.line = line
        self.spec = spec
        self.inspector = inspector
        self.emit = emit
        self.should_stop = should_stop
        self.registry = ModelRegistry(model_dir, line.name)
        self.cache_dir = cache_dir
        self.timings: dict[str, float] = {}
        self.samples: list[Sample] = []
        self.synthetic_of: dict[int, int] = {}  # synthetic sample -> its good source sample
        self.classes: tuple[str, ...] = ("normal",)
        self.run_dir = self.registry.folder / RUNS_DIR / (
            dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6])

    # ------------------------------------------------------------------------------------ steps
    def _check(self) -> None:
        if self.should_stop():
            msg = "training cancelled; nothing was registered"
            raise TrainingCancelledError(msg)

    def _lap(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + (now - t0)
        return now

    def load(self) -> FewShotData:
        if self.line.fewshot.folder is None:
            msg = f"line {self.line.name} has no fewshot.folder: set it to the folder with good/ and defect/<class>/"
            raise InsufficientDataError(msg)
        folder = self.station.resolve(self.line.fewshot.folder)
        data = load_fewshot(folder, self.line.roi)
        synthesis = self.spec.synthesis.mode == "always" or (self.spec.synthesis.mode == "auto" and data.n_defect == 0)
        check_enough(data, self.spec, synthesis)
        self.emit(TrainingEvent("load", f"{data.n_good} good, {data.n_defect} defect image(s) in {folder}"
                                + (f"; {len(data.skipped)} skipped" if data.skipped else ""),
                                data={"skipped": list(data.skipped)}))
        self.data = data
        self.synthesis = synthesis
        self.samples = list(data.samples)
        return data

    def split(self) -> None:
        real = self.samples[: len(self.data.samples)]
        self.mode, self.folds, self.split_record = make_folds(real, self.spec.validation, self.spec.seed,
                                                              self.registry.split_record())
        # Synthetic defects validate only when there is no real defect to validate on.
        self.synthetic_validation = self.synthesis and self.data.n_defect == 0
        if not self.synthesis:
            return
        synth = DefectSynthesizer(self.spec.synthesis, self.spec.seed)
        goods = [i for i, s in enumerate(real) if s.label == 0]
        total = len(goods) * self.spec.synthesis.per_image
        for n, i in enumerate(goods):
            src = real[i]
            for k in range(self.spec.synthesis.per_image):
                image, mask, method = synth.make(src.image, src.sha256, k)
                self.synthetic_of[len(self.samples)] = i
                self.samples.append(Sample(f"synthetic/{method}/{src.key}/{k}", image, 1, SYNTHETIC_CLASS, mask,
                                           pixels_sha256(image), src.group, synthetic=True))
            done = (n + 1) * self.spec.synthesis.per_image
            self.emit(TrainingEvent("synthesize", f"synthetic defects from {src.key}", done, total))
            self._check()

    def _fold_members(self, fold: Fold) -> tuple[list[int], list[int]]:
        """Sample indices (real + synthetic) of a fold's training and validation sets."""
        train, val = list(fold.train), list(fold.val)
        train_set, val_set = set(train), set(val)
        for s, src in self.synthetic_of.items():
            if src in train_set:
                train.append(s)
            elif src in val_set and self.synthetic_validation:
                val.append(s)
        return train, val

    def prepare_views(self) -> None:
        real_classes = self.data.classes
        extra = (SYNTHETIC_CLASS,) if self.synthetic_of and SYNTHETIC_CLASS not in real_classes else ()
        self.classes = ("normal", *real_classes, *extra)
        trained = {s for fold in self.folds for s in self._fold_members(fold)[0]}
        self.augmenter = Augmenter(self.spec.augment, self.spec.seed, str(self.station.source or "station config"))
        self.views = [_View(i, v) for i in range(len(self.samples))
                      for v in range(1 + (self.spec.augment.views if i in trained else 0))]

    def encode(self) -> FeatureSet:
        inspector = self.inspector
        assert inspector is not None
        t0 = time.perf_counter()
        key = (f"{inspector.model_key}|precision={self.line.model.precision}|mean={inspector.backbone.mean}"
               f"|std={inspector.backbone.std}")
        self.cache = FeatureCache.for_backbone(self.cache_dir, key, read_only=global_rank() != 0)
        keys = [(self.samples[v.sample].sha256, self.augmenter.view_id(self.samples[v.sample].sha256, v.index))
                for v in self.views]

        def render(i: int) -> np.ndarray:
            v = self.views[i]
            s = self.samples[v.sample]
            return self.augmenter.view(s.image, None, s.sha256, v.index)[0]

        def encode(images: list[np.ndarray]):
            return inspector.encode_tensor(inspector.preprocess(images))

        def progress(done: int, total: int) -> None:
            if total:
                self.emit(TrainingEvent("encode", f"encoding {done}/{total} new view(s)", done, total))

        feats = self.cache.get_or_encode(keys, render, encode, progress, self.should_stop)
        self.emit(TrainingEvent("encode", f"features ready: {self.cache.stats.hits} cached, "
                                f"{self.cache.stats.encoded} encoded", len(keys), len(keys)))
        grid = feats.grid
        labels, classes, masks, known, groups, original, synthetic = [], [], [], [], [], [], []
        for v in self.views:
            s = self.samples[v.sample]
            labels.append(s.label)
            classes.append(0 if s.label == 0 else self.classes.index(s.defect or SYNTHETIC_CLASS))
            if s.mask is None:
                masks.append(torch.zeros(grid))
                known.append(False)
            else:
                mask = s.mask if v.index == 0 or s.label == 0 else self.augmenter.view(s.image, s.mask, s.sha256,
                                                                                        v.index)[1]
                masks.append(mask_to_grid(mask, grid) if mask is not None else torch.zeros(grid))
                known.append(True)
            groups.append(s.group)
            original.append(v.index == 0)
            synthetic.append(s.synthetic)
        self._lap("encode", t0)
        self.features = FeatureSet(feats, torch.tensor(labels), torch.tensor(classes), torch.stack(masks),
                                   torch.tensor(known), torch.tensor(groups), torch.tensor(original),
                                   torch.tensor(synthetic), [self.samples[v.sample].key for v in self.views])
        return self.features

    def _subset(self, members: Sequence[int], originals_only: bool) -> FeatureSet:
        wanted = set(members)
        idx = [i for i, v in enumerate(self.views) if v.sample in wanted and (v.index == 0 or not originals_only)]
        return self.features.index(idx)

    def _context(self) -> HeadContext:
        from inspector.training.lightning import HeadContext

        inspector = self.inspector
        assert inspector is not None
        text = inspector.text
        rows = [text.normal]
        obj = self.line.object_name
        phrases = [f"flawless {obj}"]
        for name in self.classes[1:]:
            if name in text.defect_names:
                rows.append(text.defects[text.defect_names.index(name)])
            else:
                rows.append(text.anomalous)
            if name == SYNTHETIC_CLASS:
                phrases.append(f"damaged {obj}")
            else:
                phrases.append(defect_phrase(obj, self.line.prompts.defects.get(name, name.replace("_", " "))))
        grid = self.features.features.grid
        return HeadContext(self.spec, grid, tuple(sorted(self.features.features.patches)),
                           torch.stack(rows).float(), float(inspector.temperature), tuple(phrases),
                           inspector.backbone.model, inspector.backbone.tokenizer)

    def _heads(self) -> list[str]:
        heads = list(self.spec.heads)
        if "patch" in heads and not self.features.features.patches:
            _logger.warning("patch head skipped: the backbone gives image-level features only")
            heads.remove("patch")
        if "coop" in heads and not hasattr(self.inspector.backbone.model, "token_embedding"):  # type: ignore[union-attr]
            _logger.warning("coop head skipped: the backbone's text tower is not an open_clip CLIP text transformer")
            heads.remove("coop")
        if not heads:
            msg = f"none of the heads {list(self.spec.heads)} can be trained on this backbone"
            raise InsufficientDataError(msg)
        return heads

    def _fit(self, name: str, ctx: HeadContext, train: FeatureSet, val: FeatureSet | None, fold: int | None,
             max_epochs: int) -> FitResult:
        import pytorch_lightning as pl

        from inspector.training.lightning import fit_head, make_module

        t0 = time.perf_counter()
        pl.seed_everything(self.spec.seed + (fold or 0), workers=True, verbose=False)
        module = make_module(name, train, ctx, max_epochs, seed=self.spec.seed)
        result = fit_head(module, train, val, self.spec, run_dir=self.run_dir, max_epochs=module.max_epochs,
                          fold=fold, emit=self.emit, should_stop=self.should_stop)
        self._lap(f"train_{name}", t0)
        return result

    def train(self) -> None:
        """Fit every head per fold, score the held-out views, then (k-fold) refit on everything."""
        ctx = self._context()
        self.heads = self._heads()
        self.fold_results: list[dict[str, FitResult]] = []
        self.fold_outputs: list[dict[str, HeadOutput]] = []  # head -> outputs on the fold's validation views
        self.fold_base: list[dict[str, HeadOutput]] = []
        self.fold_deployed: list[HeadOutput] = []
        self.val_sets: list[FeatureSet] = []
        deployed = self._deployed_adapter()
        inspector = self.inspector
        assert inspector is not None
        kfold = self.mode == "kfold"
        for k, fold in enumerate(self.folds):
            train_ids, val_ids = self._fold_members(fold)
            train, val = self._subset(train_ids, False), self._subset(val_ids, True)
            results = {name: self._fit(name, ctx, train, val, k if kfold else None, self.spec.max_epochs)
                       for name in self.heads}
            t0 = time.perf_counter()
            self.fold_results.append(results)
            self.fold_outputs.append({name: V.run_head(r.head, val.features) for name, r in results.items()})
            self.fold_base.append(V.base_outputs(inspector.zero_shot, inspector.text, float(inspector.temperature),
                                                 self.line, train, val, self.classes, inspector.extractor.is_vit))
            if deployed is not None:
                self.fold_deployed.append(V.run_head(deployed.adapter, val.features))
            self.val_sets.append(val)
            self._lap("evaluate", t0)
        if kfold:
            every = sorted({s for fold in self.folds for s in self._fold_members(fold)[0]})
            everything = self._subset(every, False)
            self.final = {}
            for name in self.heads:
                epochs = max(1, round(statistics.median(r[name].best_epoch + 1 for r in self.fold_results)))
                self.final[name] = self._fit(name, ctx, everything, None, None, epochs)
        else:
            self.final = self.fold_results[0]
        self.deployed_loaded = deployed

    def _deployed_adapter(self) -> LoadedVersion | None:
        """The deployed version's adapter when it can run on this backbone (else it is judged as base)."""
        name = self.registry.deployed()
        self.deployed_name = name
        self.deployed_note = ""
        if name == BASE:
            return None
        try:
            loaded = self.registry.load(name)
        except RegistryError as exc:
            self.deployed_note = f"deployed {name} unusable ({exc}); compared with the base heads"
            _logger.warning("%s", self.deployed_note)
            return None
        if loaded.model_key != self.inspector.model_key:  # type: ignore[union-attr]
            self.deployed_note = f"deployed {name} was trained for another backbone; compared with the base heads"
            _logger.warning("%s", self.deployed_note)
            return None
        return loaded

    def assemble(self) -> dict[str, Any]:
        """The version's adapter (final heads, weighted and standardised on held-out data) and its metrics."""
        from inspector.training.modules import AdapterStack

        t0 = time.perf_counter()
        val = FeatureSet.cat(self.val_sets)
        labels = val.labels
        n_good, n_defect = int((labels == 0).sum()), int(labels.sum())
        if not n_good or not n_defect:
            msg = (f"the held-out images have {n_good} good and {n_defect} defect part(s); validation needs both: "
                   "add images, or set training.validation.split to 'auto' or 'kfold'")
            raise InsufficientDataError(msg)
        sub = V.pool(self.fold_outputs)
        sub_scores, sub_maps = V.good_stats(sub, labels)
        weights: dict[str, float] = {}
        head_auc: dict[str, float | None] = {}
        n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
        for name in self.heads:
            fixed = float(getattr(self.spec, name).weight)
            auc = V.head_auroc(sub[name].score, labels)
            head_auc[f"adapter.{name}"] = auc
            weights[name] = fixed * (V.skill(auc, n_pos, n_neg) if self.spec.combine == "validation" else 1.0)
        if not any(w > 0 for w in weights.values()):
            _logger.warning("no trained head beats chance on held-out data (AUROC %s); using the fixed weights",
                            head_auc)
            weights = {n: float(getattr(self.spec, n).weight) for n in self.heads}
        stack = AdapterStack({n: self.final[n].head.spec() for n in self.heads}, self.classes)  # type: ignore[operator]
        for name in self.heads:
            stack.heads[name].load_state_dict(self.final[name].head.state_dict())
        stack.set_statistics(weights, sub_scores, sub_maps)
        stack.eval()
        self.stack = stack
        adapter_oof = stack.combine(sub)

        base = V.pool(self.fold_base)
        configs: dict[str, dict[str, HeadOutput]] = {"base": base, "new": {**base, "adapter": adapter_oof}}
        if self.fold_deployed:
            configs["deployed"] = {**base, "adapter": V.cat_outputs(self.fold_deployed)}
        metrics: dict[str, Any] = {}
        fused_maps: dict[str, float | None] = {}
        for cfg, outputs in configs.items():
            s_stats, m_stats = V.good_stats(outputs, labels)
            score, fmap = V.fuse(outputs, self.line, s_stats, m_stats)
            metrics[cfg] = V.decision_metrics(score, labels, self.line)
            fused_maps[cfg] = V.patch_auroc(fmap, val.masks, val.mask_known)
            if cfg == "new":
                self.adapter_stats = s_stats["adapter"]
                self.adapter_map_stats = m_stats.get("adapter")
        for name, out in {**base, "adapter": adapter_oof}.items():
            head_auc[name] = V.head_auroc(out.score, labels)
        fused_maps["adapter"] = V.patch_auroc(adapter_oof.map, val.masks, val.mask_known)
        self._lap("evaluate", t0)
        self.metrics_new: ValidationMetrics = metrics["new"]
        self.metrics_reference: ValidationMetrics = metrics.get("deployed", metrics["base"])
        self.all_metrics = metrics
        self.head_auc = head_auc
        self.map_auc = fused_maps
        self.weights = weights
        return metrics

    # ------------------------------------------------------------------------------------ records
    def metrics_record(self, decision: GateDecision) -> dict[str, Any]:
        n_val = [len(v) for v in self.val_sets]
        return {
            "line": self.line.name,
            "validation": {
                "mode": self.mode, "folds": len(self.folds), "views_per_fold": n_val,
                "n_good": self.metrics_new.n_good, "n_defect": self.metrics_new.n_defect,
                "synthetic_defects": self.synthetic_validation,
                "files": [sorted({k for k in v.keys}) for v in self.val_sets],
            },
            "new": self.metrics_new.to_dict(),
            "base": self.all_metrics["base"].to_dict(),
            "deployed": ({**self.all_metrics["deployed"].to_dict(), "version": self.deployed_name}
                         if "deployed" in self.all_metrics else None),
            "heads_auroc": self.head_auc,
            "map_auroc": self.map_auc,
            "adapter_weights": self.weights,
            "gate": decision.to_dict(),
            "deployment": {"score_stats": list(self.adapter_stats),
                           "map_stats": list(self.adapter_map_stats) if self.adapter_map_stats else None,
                           "threshold": self.metrics_new.threshold},
            "training": {name: {"best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                                "best_val_loss": self.fold_results[0][name].best_val_loss,
                                "history": self.fold_results[0][name].history,
                                "seconds": sum(f[name].seconds for f in self.fold_results) + (
                                    r.seconds if self.mode == "kfold" else 0.0)}
                         for name, r in self.final.items()},
            "note": self.deployed_note,
        }

    def card_record(self, who: str) -> dict[str, Any]:
        import albumentations
        import open_clip
        import pytorch_lightning

        from inspector import __version__

        inspector = self.inspector
        assert inspector is not None
        ident = inspector.backbone.identity
        synthetic = [s for s in self.samples if s.synthetic]
        return {
            "line": self.line.name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "created_by": who,
            "inspector_version": __version__,
            "backbone": {"key": inspector.model_key, "model": ident.model, "pretrained": ident.pretrained,
                         "sha256": ident.sha256, "untrained": ident.untrained,
                         "image_size": list(inspector.extractor.image_size),
                         "feature_layers": list(inspector.extractor.layers), "precision": self.line.model.precision},
            "classes": list(self.classes),
            "heads": self.heads,
            "data": {"folder": str(self.data.root), "files": self.data.file_record(), "skipped": self.data.skipped,
                     "synthetic": {"count": len(synthetic), "settings": self.spec.synthesis.model_dump(mode="json")
                                   if self.synthesis else None}},
            "augmentation": {"digest": self.augmenter.digest, "albumentations": albumentations.__version__,
                             "views_per_image": self.spec.augment.views,
                             "settings": self.spec.augment.model_dump(mode="json")},
            "seed": self.spec.seed,
            "config": {"training": self.spec.model_dump(mode="json"), "line_config_hash": config_hash(self.line),
                       "head_weights": self.line.heads.model_dump(mode="json"), "roi": self.line.roi},
            "environment": {"torch": torch.__version__, "pytorch_lightning": pytorch_lightning.__version__,
                            "open_clip": open_clip.__version__, "device": str(inspector.device)},
            "feature_cache": {"hits": self.cache.stats.hits, "encoded": self.cache.stats.encoded},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def prune_runs(self) -> None:
        runs = sorted((self.registry.folder / RUNS_DIR).glob("*"))
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)


def train_line(
    station: StationConfig,
    line_name: str | None = None,
    *,
    inspector: Inspector | None = None,
    observers: Sequence[Observer] = (),
    cancel: CancelToken | threading.Event | None = None,
    max_epochs: int | None = None,
    promote: bool | None = None,
    force: bool = False,
    who: str | None = None,
    reason: str = "",
    audit: AuditHook | None = None,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> TrainingReport:
    """Retrain a line's adapter, register the version, gate it, and deploy it if allowed.

    ``inspector``: the running engine of this line; its backbone is reused and a promoted version
    is hot-swapped into it between two frames. Without it a fresh engine is loaded.
    ``promote``: None follows ``training.auto_promote``. ``force`` deploys even when the gate
    refuses (logged, with ``who`` and ``reason``). ``cancel`` stops the run at its next check.
    Raises InsufficientDataError, TrainingCancelledError, TrainingDivergedError (nothing registered).
    """
    t_start = time.perf_counter()
    line = station.line(line_name)
    spec = line.training
    if max_epochs is not None:
        if max_epochs < 1:
            msg = f"max_epochs must be at least 1, got {max_epochs}"
            raise InsufficientDataError(msg)
        spec = spec.model_copy(update={"max_epochs": int(max_epochs)})
    if inspector is not None and inspector.line.name != line.name:
        msg = f"the engine given runs line {inspector.line.name}, not {line.name}"
        raise ValueError(msg)
    who = who or current_user()
    emit = Emitter(list(observers))
    should_stop = _stopper(cancel)
    model_dir = model_dir or station.resolve(station.model_dir)
    cache_dir = cache_dir or station.resolve(station.cache_dir) / "features"
    run = LineTraining(station, line, spec, inspector, emit, should_stop, model_dir, cache_dir)
    deployed_before = run.registry.deployed()
    try:
        with _training_scope():
            t0 = time.perf_counter()
            run.load()
            run.split()
            t0 = run._lap("data", t0)
            if run.inspector is None:
                emit(TrainingEvent("load", f"loading backbone {line.model.name} ..."))
                run.inspector = build_inspector(station, line)
                run._lap("backbone", t0)
            run._check()
            run.prepare_views()
            run.encode()
            run._check()
            from inspector.training.lightning import torch_threads

            with torch_threads(spec.threads):  # small models: see training.threads
                run.train()
                run.assemble()
    except TrainingDivergedError as exc:
        emit(TrainingEvent("done", f"diverged: {exc}"))
        msg = f"{exc}. Nothing was registered; line {line.name} keeps {deployed_before}."
        raise TrainingDivergedError(msg) from None
    except TrainingCancelledError:
        emit(TrainingEvent("done", "cancelled; nothing was registered"))
        raise
    finally:
        with contextlib.suppress(OSError):
            run.prune_runs()

    decision = decide(run.metrics_new, run.metrics_reference, spec.gate, run.deployed_name)
    if global_rank() != 0:  # DDP: the other ranks trained in step with rank 0, which registers
        return TrainingReport(line.name, None, False, False, decision, deployed_before, deployed_before,
                              run.metrics_record(decision), list(run.data.skipped), dict(run.timings))
    emit(TrainingEvent("gate", "gate passed" if decision.passed else "gate refused: " + "; ".join(decision.reasons),
                       metrics={"auroc": run.metrics_new.auroc, "f1": run.metrics_new.f1}))
    run.timings["total_before_register"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    info = run.registry.register(run.stack, run.metrics_record(decision), run.card_record(who))
    run.registry.save_split_record(run.split_record)
    run._lap("register", t0)
    emit(TrainingEvent("register", f"registered {info.version} at {info.path}", data={"version": info.version}))

    want = spec.auto_promote if promote is None else promote
    promoted = forced = False
    if want and (decision.passed or force):
        forced = not decision.passed
        run.registry.promote(info.version, who=who, forced=forced, reason=reason, gate=decision.to_dict(), audit=audit)
        promoted = True
        if inspector is not None:
            apply_version(inspector, run.registry, info.version)
        emit(TrainingEvent("promote", f"{info.version} deployed{' (forced)' if forced else ''}",
                           data={"version": info.version, "forced": forced}))
    run.timings["total"] = time.perf_counter() - t_start
    report = TrainingReport(line.name, info.version, promoted, forced, decision, deployed_before,
                            run.registry.deployed(), run.metrics_record(decision), list(run.data.skipped),
                            dict(run.timings), {"hits": run.cache.stats.hits, "encoded": run.cache.stats.encoded},
                            info.path)
    emit(TrainingEvent("done", report.summary, data={"version": info.version, "promoted": promoted}))
    return report
