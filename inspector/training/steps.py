"""The steps of one retraining run of one line (:class:`LineTraining`), driven by :func:`train_line`.

load -> nested split (+ synthetic defects) -> views -> encode (feature cache) -> train heads per outer fold
on its inner-training images (epochs chosen on its inner-validation images) -> judge every arm on the
outer images with what the inner images chose -> assemble the adapter. Nothing here registers or deploys.
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
from inspector.training import nested as N
from inspector.training import validation as V
from inspector.training.augment import Augmenter
from inspector.training.data import (
    FewShotData,
    NestedFold,
    Sample,
    check_enough,
    load_fewshot,
    nest_folds,
    pixels_sha256,
)
from inspector.training.errors import (
    InsufficientDataError,
    RegistryError,
    TrainingCancelledError,
    TrainingDivergedError,
)
from inspector.training.feature_cache import FeatureCache
from inspector.training.featureset import FeatureSet, mask_to_grid
from inspector.training.gate import ValidationMetrics, judged_metrics
from inspector.training.nested import FoldEvidence
from inspector.training.progress import Emitter, TrainingEvent
from inspector.training.registry import BASE, LoadedVersion, ModelRegistry
from inspector.training.synthesis import JUDGE_STREAM, TRAIN_STREAM, DefectSynthesizer, plan_synthesis

if TYPE_CHECKING:
    from inspector.engine import Inspector
    from inspector.training.lightning import FitResult
    from inspector.training.lightning_modules import HeadContext
    from inspector.training.modules import AdapterStack

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
        self.synthetic_of: dict[int, tuple[int, str]] = {}  # synthetic sample -> (its good source sample, stream)
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
        """Nested splits of the real images, and the synthetic defects: training ones, and judging ones apart."""
        real = self.samples[: len(self.data.samples)]
        self.mode, self.folds, self.split_record, self.nesting_notes = nest_folds(
            real, self.spec.validation, self.spec.seed, self.registry.split_record())
        # Synthetic defects validate only when there is no real defect to validate on.
        self.synthetic_validation = self.synthesis and self.data.n_defect == 0
        self.synth_plan = plan_synthesis(self.spec.synthesis) if self.synthesis else None
        if self.synth_plan is None:
            return
        per_image = self.spec.synthesis.per_image
        streams = [(self.synth_plan.train, TRAIN_STREAM, "synthetic")]
        if self.synthetic_validation:  # the judging defects: another family (or seed) than any that trained or chose
            streams.append((self.synth_plan.judge, JUDGE_STREAM, "synthetic-judge"))
        goods = [i for i, s in enumerate(real) if s.label == 0]
        total, done = len(goods) * per_image * len(streams), 0
        for spec, stream, prefix in streams:
            synth = DefectSynthesizer(spec, self.spec.seed, stream)
            for i in goods:
                src = real[i]
                for k in range(per_image):
                    image, mask, method = synth.make(src.image, src.sha256, k)
                    self.synthetic_of[len(self.samples)] = (i, stream)
                    self.samples.append(Sample(f"{prefix}/{method}/{src.key}/{k}", image, 1, SYNTHETIC_CLASS, mask,
                                               pixels_sha256(image), src.group, synthetic=True))
                done += per_image
                self.emit(TrainingEvent("synthesize", f"synthetic defects from {src.key}", done, total))
                self.check()

    def _members(self, real: Sequence[int], stream: str | None) -> list[int]:
        """Real sample indices plus the synthetic defects of ``stream`` made from them (None: real only)."""
        wanted = set(real)
        return list(real) + [s for s, (src, st) in self.synthetic_of.items() if src in wanted and st == stream]

    def _fold_sets(self, fold: NestedFold) -> tuple[list[int], list[int], list[int]]:
        """Sample indices (real + synthetic) that fit, that choose and that judge in one outer fold."""
        synthetic = self.synthetic_validation
        return (self._members(fold.inner_train, TRAIN_STREAM),
                self._members(fold.inner_val, TRAIN_STREAM if synthetic else None),
                self._members(fold.outer_val, JUDGE_STREAM if synthetic else None))

    def _everything(self) -> list[int]:
        """What the k-fold refit trains on: every real image and the training synthetic defects."""
        return self._members(range(len(self.data.samples)), TRAIN_STREAM)

    def prepare_views(self) -> None:
        real_classes = self.data.classes
        extra = (SYNTHETIC_CLASS,) if self.synthetic_of and SYNTHETIC_CLASS not in real_classes else ()
        self.classes = ("normal", *real_classes, *extra)
        trained = {s for fold in self.folds for s in self._fold_sets(fold)[0]}
        if self.mode == "kfold":
            trained |= set(self._everything())
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
        """Per outer fold: fit on inner-train (epochs chosen on inner-val), score inner-val and outer; then refit."""
        ctx = self._context()
        self.heads = self._heads()
        self.fold_results: list[dict[str, FitResult]] = []
        self.evidence: list[FoldEvidence] = []
        deployed = self._deployed_adapter()
        base = self._base_engine()
        kfold = self.mode == "kfold"
        for k, fold in enumerate(self.folds):
            train_ids, inner_ids, outer_ids = self._fold_sets(fold)
            train = self._subset(train_ids, False)
            inner, outer = self._subset(inner_ids, True), self._subset(outer_ids, True)
            results = {name: self._fit(name, ctx, train, inner, k if kfold else None, self.spec.max_epochs)
                       for name in self.heads}
            self.check()
            t0 = time.perf_counter()
            self.fold_results.append(results)
            base_keys = self._fit_base(base, fold.inner_train)
            t0 = self.lap("base_fit", t0)
            self.evidence.append(FoldEvidence(
                inner, outer, sorted(set(train.keys)), base_keys,
                {n: V.run_head(r.head, inner.features) for n, r in results.items()},
                {n: V.run_head(r.head, outer.features) for n, r in results.items()},
                V.engine_outputs(base, inner.features), V.engine_outputs(base, outer.features),
                None if deployed is None else V.run_head(deployed.adapter, inner.features),
                None if deployed is None else V.run_head(deployed.adapter, outer.features)))
            self.lap("evaluate", t0)
        if kfold:
            everything = self._subset(self._everything(), False)
            self.final = {}
            for name in self.heads:
                epochs = max(1, round(statistics.median(r[name].best_epoch + 1 for r in self.fold_results)))
                self.final[name] = self._fit(name, ctx, everything, None, None, epochs)
        else:
            self.final = self.fold_results[0]
        self.deployed_loaded = deployed

    def _base_engine(self) -> Inspector:
        """A second engine on the same backbone for the base arm (no ROI: the samples are crops already)."""
        from inspector.engine import Inspector

        inspector = self.inspector
        assert inspector is not None
        return Inspector(self.line.model_copy(update={"roi": None}), inspector.backbone, inspector.text_cache)

    def _fit_base(self, engine: Inspector, real: Sequence[int]) -> list[str]:
        """Fit the base heads the way the station does (engine views, engine fit) on these real images; their keys."""
        goods = [i for i in real if self.samples[i].label == 0][: self.line.fewshot.max_shots]  # as the engine does
        used = goods + [i for i in real if self.samples[i].label == 1 and not self.samples[i].synthetic]
        defects: dict[str, list[np.ndarray]] = {}
        for i in used[len(goods):]:
            defects.setdefault(self.samples[i].defect or SYNTHETIC_CLASS, []).append(self.samples[i].image)
        engine.fit([self.samples[i].image for i in goods], defects)
        return sorted(self.samples[i].key for i in used)

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
        """Judge every arm per outer fold (choices from its inner views), then build the version's adapter."""
        t0 = time.perf_counter()
        outer = FeatureSet.cat([e.outer for e in self.evidence])
        labels = outer.labels
        n_good, n_defect = int((labels == 0).sum()), int(labels.sum())
        if not n_good or not n_defect:
            msg = (f"the judging images have {n_good} good and {n_defect} defect part(s); the gate needs both: "
                   "add images, or set training.validation.split to 'auto' or 'kfold'")
            raise InsufficientDataError(msg)
        judged: dict[str, list[N.Judged]] = {}
        adapter_parts: list[HeadOutput] = []
        self.fold_records: list[dict[str, Any]] = []
        self.weight_notes: list[str] = []
        for k, e in enumerate(self.evidence):
            chosen = N.head_weights(e.heads_inner, e.inner.labels, self.heads, self.spec, where=f"fold {k + 1}: ")
            stack = self._stack({n: self.fold_results[k][n].head for n in self.heads}, chosen.weights,
                                *V.good_stats(e.heads_inner, e.inner.labels), where=f"fold {k + 1}")
            adapter_in, adapter_out = stack.combine(e.heads_inner), stack.combine(e.heads_outer)
            adapter_parts.append(adapter_out)
            arms = {"base": (e.base_inner, e.base_outer),
                    "new": ({**e.base_inner, "adapter": adapter_in}, {**e.base_outer, "adapter": adapter_out})}
            if e.deployed_inner is not None and e.deployed_outer is not None:
                arms["deployed"] = ({**e.base_inner, "adapter": e.deployed_inner},
                                    {**e.base_outer, "adapter": e.deployed_outer})
            fold = {arm: N.judge_arm(i, e.inner.labels, o, e.outer.labels, self.line) for arm, (i, o) in arms.items()}
            for arm, j in fold.items():
                judged.setdefault(arm, []).append(j)
            notes = chosen.notes + [f"fold {k + 1} {arm}: {j.note}" for arm, j in fold.items() if j.note]
            self.weight_notes += notes
            self.fold_records.append(self._fold_record(k, e, chosen, fold, notes))
        metrics: dict[str, ValidationMetrics] = {}
        fused_maps: dict[str, float | None] = {}
        for arm, parts in judged.items():
            method = "/".join(sorted({j.method for j in parts}))
            metrics[arm] = judged_metrics([(j.good, j.defect, j.threshold) for j in parts], method)
            maps = [j.map for j in parts]
            fused_maps[arm] = None if any(m is None for m in maps) else V.patch_auroc(
                torch.cat(maps), outer.masks, outer.mask_known)  # type: ignore[arg-type]
        adapter_oof = V.cat_outputs(adapter_parts)
        base = V.pool([e.base_outer for e in self.evidence])
        oof = V.pool([e.heads_outer for e in self.evidence])
        head_auc: dict[str, float | None] = {f"adapter.{n}": V.head_auroc(oof[n].score, labels) for n in self.heads}
        for name, out in {**base, "adapter": adapter_oof}.items():
            head_auc[name] = V.head_auroc(out.score, labels)
        fused_maps["adapter"] = V.patch_auroc(adapter_oof.map, outer.masks, outer.mask_known)
        self._assemble_final(oof, base, labels)
        self.lap("evaluate", t0)
        self.metrics_new: ValidationMetrics = metrics["new"]
        self.metrics_reference: ValidationMetrics = metrics.get("deployed", metrics["base"])
        self.all_metrics = metrics
        self.head_auc = head_auc
        self.map_auc = fused_maps
        return metrics

    def _assemble_final(self, oof: dict[str, HeadOutput], base: dict[str, HeadOutput], labels: torch.Tensor) -> None:
        """The version's adapter: final heads, weights chosen on the pooled inner views, and deployment statistics
        (standardisation, threshold) from the pooled out-of-fold views. These are the production choices, not the
        gate's evidence (the gate judged the same procedure fold by fold, on outer views that chose nothing)."""
        inner = V.pool([e.heads_inner for e in self.evidence])
        inner_labels = torch.cat([e.inner.labels for e in self.evidence])
        chosen = N.head_weights(inner, inner_labels, self.heads, self.spec, where="final: ")
        self.weight_notes += chosen.notes
        self.weights = chosen.weights
        sub_scores, sub_maps = V.good_stats(oof, labels)
        self.stack = self._stack({n: self.final[n].head for n in self.heads}, chosen.weights, sub_scores, sub_maps,
                                 where="final")
        outputs = {**base, "adapter": self.stack.combine(oof)}
        s_stats, m_stats = V.good_stats(outputs, labels)
        score, _ = V.fuse(outputs, self.line, s_stats, m_stats)
        self.deployment_threshold = V.decision_metrics(score, labels, self.line).threshold
        self.adapter_stats = s_stats["adapter"]
        self.adapter_map_stats = m_stats.get("adapter")

    def _stack(self, heads: dict[str, Any], weights: dict[str, float], score_stats: dict[str, tuple[float, float]],
               map_stats: dict[str, tuple[float, float]], where: str) -> AdapterStack:
        from inspector.training.modules import AdapterStack

        if not any(w > 0 for w in weights.values()):
            msg = f"{where}: every trained head gave non-finite held-out scores (no head may get weight)"
            raise TrainingDivergedError(msg)
        stack = AdapterStack({n: h.spec() for n, h in heads.items()}, self.classes)
        for name, head in heads.items():
            stack.heads[name].load_state_dict(head.state_dict())
        stack.set_statistics(weights, score_stats, map_stats)
        return stack.eval()

    def _fold_record(self, k: int, e: FoldEvidence, chosen: N.Weights, fold: dict[str, N.Judged],
                     notes: list[str]) -> dict[str, Any]:
        """Which data fitted, chose and judged in outer fold ``k``, and what was chosen (sample keys)."""
        inner_keys = sorted(set(e.inner.keys))
        return {
            "fold": k, "inner_train": e.train_keys, "inner_val": inner_keys, "outer_val": sorted(set(e.outer.keys)),
            "base_fit": e.base_keys,
            "epochs": {n: {"best_epoch": r.best_epoch, "chosen_on": list(r.chosen_on)}
                       for n, r in self.fold_results[k].items()},
            "weights": chosen.weights, "weights_chosen_on": inner_keys,
            "thresholds": {arm: j.threshold for arm, j in fold.items()},
            "threshold_methods": {arm: j.method for arm, j in fold.items()}, "thresholds_chosen_on": inner_keys,
            "notes": notes,
        }

    def prune_runs(self) -> None:
        runs = sorted((self.registry.folder / RUNS_DIR).glob("*"))
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
