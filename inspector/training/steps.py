"""The steps of one retraining run of one line (:class:`LineTraining`), driven by :func:`train_line`.

load -> split (+ synthetic defects) -> views -> encode (feature cache) -> train heads per fold ->
assemble the adapter and its held-out metrics. Nothing here registers or deploys anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inspector.config import LineConfig, StationConfig
from inspector.config.training import TrainingSpec
from inspector.heads import HeadOutput
from inspector.text.prompts import defect_phrase
from inspector.training import validation as V
from inspector.training.augment import Augmenter
from inspector.training.data import FewShotData, Fold, Sample, check_enough, load_fewshot, make_folds, pixels_sha256
from inspector.training.errors import InsufficientDataError, RegistryError, TrainingCancelledError
from inspector.training.feature_cache import FeatureCache
from inspector.training.featureset import FeatureSet, mask_to_grid
from inspector.training.gate import ValidationMetrics
from inspector.training.progress import Emitter, TrainingEvent
from inspector.training.registry import BASE, LoadedVersion, ModelRegistry
from inspector.training.synthesis import DefectSynthesizer

if TYPE_CHECKING:
    from inspector.engine import Inspector
    from inspector.training.lightning import FitResult
    from inspector.training.lightning_modules import HeadContext

_logger = logging.getLogger(__name__)

SYNTHETIC_CLASS = "anomaly"
RUNS_DIR = ".runs"
KEEP_RUNS = 5


@dataclass(frozen=True)
class _View:
    sample: int  # index into samples
    index: int  # 0 = original, 1.. augmented view


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
    def check(self) -> None:
        if self.should_stop():
            msg = "training cancelled; nothing was registered"
            raise TrainingCancelledError(msg)

    def lap(self, name: str, t0: float) -> float:
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
            self.check()

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
        self.lap("encode", t0)
        self.features = FeatureSet(feats, torch.tensor(labels), torch.tensor(classes), torch.stack(masks),
                                   torch.tensor(known), torch.tensor(groups), torch.tensor(original),
                                   torch.tensor(synthetic), [self.samples[v.sample].key for v in self.views])
        return self.features

    def _subset(self, members: Sequence[int], originals_only: bool) -> FeatureSet:
        wanted = set(members)
        idx = [i for i, v in enumerate(self.views) if v.sample in wanted and (v.index == 0 or not originals_only)]
        return self.features.index(idx)

    def _context(self) -> HeadContext:
        from inspector.training.lightning_modules import HeadContext

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

        from inspector.training.lightning import fit_head
        from inspector.training.lightning_modules import make_module

        t0 = time.perf_counter()
        pl.seed_everything(self.spec.seed + (fold or 0), workers=True, verbose=False)
        module = make_module(name, train, ctx, max_epochs, seed=self.spec.seed)
        result = fit_head(module, train, val, self.spec, run_dir=self.run_dir, max_epochs=module.max_epochs,
                          fold=fold, emit=self.emit, should_stop=self.should_stop)
        self.lap(f"train_{name}", t0)
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
            self.lap("evaluate", t0)
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
        self.lap("evaluate", t0)
        self.metrics_new: ValidationMetrics = metrics["new"]
        self.metrics_reference: ValidationMetrics = metrics.get("deployed", metrics["base"])
        self.all_metrics = metrics
        self.head_auc = head_auc
        self.map_auc = fused_maps
        self.weights = weights
        return metrics

    def prune_runs(self) -> None:
        runs = sorted((self.registry.folder / RUNS_DIR).glob("*"))
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
