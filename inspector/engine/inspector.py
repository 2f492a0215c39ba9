"""Inspector: frame -> InspectionResult (preprocess, one backbone pass, heads, fusion, decision, regions).

Fitting (few-shot references, probe, fusion statistics, threshold) happens once per line, at
startup or changeover; ``inspect`` is the per-frame hot path and allocates nothing it can reuse.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import DenseFeatureExtractor, Features
from inspector.backbone.loading import LoadedBackbone, load_backbone
from inspector.backbone.text import encode_text
from inspector.config import LineConfig, StationConfig, config_hash
from inspector.decision.calibrate import (
    Calibration,
    fit_temperature,
    threshold_best_f1,
    threshold_for_false_reject,
    threshold_min_cost,
)
from inspector.decision.regions import find_regions
from inspector.decision.result import InspectionResult
from inspector.engine.fewshot import FewShotSet
from inspector.frames.imaging import validate_frame
from inspector.frames.preprocess import Preprocessor, crop_roi
from inspector.heads import Fusion, HeadOutput, LinearProbeHead, ReferenceHead, ZeroShotHead
from inspector.heads.fusion import HEAD_NAMES
from inspector.text.embeddings import TextEmbeddingCache
from inspector.text.prompts import build_prompt_set

_logger = logging.getLogger(__name__)

# Views of each good image in the patch memory: identity, rotations, flips.
VIEWS = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip")
# Sigma of the Gaussian that smooths the upsampled map, as a fraction of the map's side.
MAP_SIGMA_FRACTION = 1 / 64
ENCODE_BATCH = 8


def make_views(batch: Tensor, augment: bool) -> Tensor:
    """[K, 3, H, W] -> [K * V, 3, H, W], image-major (all views of image 0 first)."""
    if not augment:
        return batch
    square = batch.shape[-1] == batch.shape[-2]
    views = [batch]
    if square:
        views += [torch.rot90(batch, k, dims=(-2, -1)) for k in (1, 2, 3)]
    views += [torch.flip(batch, dims=(-1,)), torch.flip(batch, dims=(-2,))]
    return torch.stack(views, dim=1).flatten(0, 1)


@dataclass
class FitReport:
    shots: int
    defect_images: int
    heads: tuple[str, ...]
    calibration: Calibration | None
    temperature: float
    seconds: float
    skipped: list[str] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)


class Inspector:
    """The inspection engine of one product line."""

    def __init__(
        self, line: LineConfig, backbone: LoadedBackbone, text_cache: TextEmbeddingCache | None = None
    ) -> None:
        self.line = line
        self.backbone = backbone
        self.device = backbone.device
        model = backbone.model
        self.extractor = DenseFeatureExtractor(model.visual, line.model.image_size, line.model.feature_layers)
        self.extractor.eval().to(self.device)
        self.preprocess = Preprocessor(self.extractor.image_size, backbone.mean, backbone.std, self.device)
        self.zero_shot = ZeroShotHead()
        self.references = ReferenceHead()
        self.probe = LinearProbeHead()
        self.fusion = Fusion()
        self.text_cache = text_cache or TextEmbeddingCache(None)
        self.prompts = build_prompt_set(line.object_name, line.prompts)
        self.text = self.text_cache.get(self._model_key(), self.prompts, self._encode_text)
        self.temperature = line.prompts.temperature or float(model.logit_scale.exp())
        self.zero_shot.setup(self.text, self.temperature)
        self.fusion.setup({"zero_shot": max(line.heads.zero_shot, 1e-6)})
        self.threshold = line.decision.threshold if line.decision.threshold is not None else 0.5
        self.region_threshold = line.decision.region_threshold if line.decision.region_threshold is not None else 0.5
        self.calibration: Calibration | None = None
        self.good_scores: np.ndarray = np.empty(0)
        self.defect_scores: np.ndarray = np.empty(0)
        self._last_fit: FitReport | None = None
        self.config_hash = config_hash(line)
        self.adapter: torch.nn.Module | None = None
        self.model_version = "base"
        self._score_stats: dict[str, tuple[float, float]] | None = None
        self._map_stats: dict[str, tuple[float, float]] | None = None
        # Held by inspect_batch and by model swaps, so a swap lands between two frames.
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, station: StationConfig, line_name: str | None = None, *, fit: bool = True) -> Inspector:
        """Load the line's backbone, encode its prompts and (optionally) fit its few-shot set."""
        line = station.line(line_name)
        backbone = load_backbone(line.model, station.resolve(station.model_dir))
        inspector = cls(line, backbone, TextEmbeddingCache(station.resolve(station.cache_dir)))
        if fit and line.fewshot.folder is not None:
            inspector.fit_folder(station.resolve(line.fewshot.folder), station.resolve(station.cache_dir))
        return inspector

    def _model_key(self) -> str:
        ident = self.backbone.identity
        return f"{ident.model}|{ident.pretrained}|{ident.sha256}"

    def _encode_text(self, texts: list[str]) -> Tensor:
        tokens = self.backbone.tokenizer(texts).to(self.device)
        return encode_text(self.backbone.model, tokens)

    @property
    def heads(self) -> tuple[str, ...]:
        active = ["zero_shot"] if self.line.heads.zero_shot > 0 else []
        if self.references.fitted and self.line.heads.references > 0:
            active.append("references")
        if self.probe.fitted and self.line.heads.probe > 0:
            active.append("probe")
        if self.adapter is not None and self.line.heads.adapter > 0:
            active.append("adapter")
        return tuple(active)

    @property
    def defect_names(self) -> tuple[str, ...]:
        return self.probe.defect_names if self.probe.fitted else self.zero_shot.defect_names

    # ---------------------------------------------------------------- features
    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        precision = self.line.model.precision
        if precision == "fp32":
            yield
            return
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def _prepare(self, frames: Sequence[np.ndarray]) -> Tensor:
        crops = [crop_roi(validate_frame(f), self.line.roi) for f in frames]
        return self.preprocess(crops)

    @torch.inference_mode()
    def encode_tensor(self, batch: Tensor) -> Features:
        parts = []
        with self._precision():
            for start in range(0, batch.shape[0], ENCODE_BATCH):
                parts.append(self.extractor(batch[start : start + ENCODE_BATCH]))
        return Features.cat(parts)

    def encode(self, frames: Sequence[np.ndarray]) -> Features:
        """Features of frames (ROI applied), in batches."""
        return self.encode_tensor(self._prepare(frames))

    # ---------------------------------------------------------------- fitting
    def fit_folder(self, folder: Path, cache_dir: Path | None = None) -> FitReport:
        """Fit from a few-shot folder; with ``cache_dir``, reuse a fitted state whose inputs are unchanged."""
        from inspector.engine.fitted import cache_path, fitted_key, load_fitted, save_fitted

        path = key = None
        if cache_dir is not None and folder.is_dir():
            key = fitted_key(self, folder)
            path = cache_path(cache_dir, self.line.name, key)
            with self._lock:
                report = load_fitted(self, path, key)
            if report is not None:
                _logger.info("line %s: fitted state restored from %s", self.line.name, path)
                self._last_fit = report
                return report
        data = FewShotSet.from_folder(folder, self.line.fewshot.max_shots)
        report = self.fit(data.good, data.defects)
        report.skipped = data.skipped
        report.files = data.file_record(folder)
        if path is not None and key is not None:
            save_fitted(self, path, key, report)
        return report

    def fit(self, good: Sequence[np.ndarray], defects: dict[str, Sequence[np.ndarray]] | None = None) -> FitReport:
        """Fit references, probe, temperature, fusion statistics and (if not fixed) the threshold."""
        with self._lock:
            return self._fit(good, defects)

    @torch.no_grad()
    def _fit(self, good: Sequence[np.ndarray], defects: dict[str, Sequence[np.ndarray]] | None = None) -> FitReport:
        t0 = time.perf_counter()
        spec = self.line.fewshot
        defects = {k: list(v) for k, v in (defects or {}).items() if len(v)}
        good = list(good)[: spec.max_shots]
        good_feats = defect_feats = None
        defect_labels: list[str] = []
        groups = torch.empty(0, dtype=torch.long)
        n_views = 1
        if good:
            batch = self._prepare(good)
            views = make_views(batch, spec.augment)
            n_views = views.shape[0] // batch.shape[0]
            good_feats = self.encode_tensor(views)
            groups = torch.arange(len(good)).repeat_interleave(n_views)
            if len(good) == 1:  # one image: its views stand in for other parts (optimistic)
                groups = torch.arange(n_views)
        if defects:
            defect_labels = [name for name, imgs in defects.items() for _ in imgs]
            defect_feats = self.encode([img for imgs in defects.values() for img in imgs])
        identity_idx = torch.arange(len(good)) * n_views  # the un-augmented view of each good image

        # Zero-shot temperature: fitted when both classes are present, else the model's scale.
        if good_feats is not None and defect_feats is not None and self.line.prompts.temperature is None:
            margins = torch.cat([self.zero_shot.margins(good_feats.index(identity_idx)),
                                 self.zero_shot.margins(defect_feats)]).numpy()
            labels = np.r_[np.zeros(len(good)), np.ones(defect_feats.batch_size)]
            self.temperature = fit_temperature(margins, labels, init=self.temperature)
            self.zero_shot.set_temperature(self.temperature)

        # Heads fitted on the data, each scored on good parts it did not see (leave-one-out).
        good_out: dict[str, HeadOutput] = {}
        defect_out: dict[str, HeadOutput] = {}
        if good_feats is not None:
            good_out["zero_shot"] = self.zero_shot(good_feats)
            if self.extractor.is_vit and self.line.heads.references > 0 and groups.unique().numel() >= 2:
                self.references.setup(good_feats, spec.coreset_size, spec.seed, shots=len(good), groups=groups)
                good_out["references"] = self.references.leave_one_out(good_feats, groups)
        if defect_feats is not None:
            defect_out["zero_shot"] = self.zero_shot(defect_feats)
            if self.references.fitted:
                defect_out["references"] = self.references(defect_feats)
        if defect_feats is not None and self.line.heads.probe > 0:
            self._fit_probe(good_feats, identity_idx, defect_feats, defect_labels, good_out, defect_out)

        if good_feats is not None:
            self._score_stats = {h: _mean_std(o.score) for h, o in good_out.items()}
            self._map_stats = {h: _mean_std(o.map) for h, o in good_out.items() if o.map is not None}
        else:
            self._score_stats = self._map_stats = None
        self.adapter, self.model_version = None, "base"
        self._setup_fusion(active=set(good_out) | set(defect_out))

        # Fused scores of the fitting data: the calibration set.
        self.good_scores = np.empty(0)
        self.defect_scores = np.empty(0)
        good_map = None
        if good_out:
            score, good_map = self.fusion(good_out)
            self.good_scores = score.numpy().astype(np.float64)
        if defect_out:
            self.defect_scores = self.fusion(defect_out)[0].numpy().astype(np.float64)
        if self.line.decision.region_threshold is None:
            if good_map is not None:
                self.region_threshold = float(torch.quantile(good_map.flatten().float()[:1_000_000], 0.999))
            elif good_out:
                self.region_threshold = float(self.good_scores.max())
        self.calibration = None
        if self.line.decision.threshold is None and self.good_scores.size >= 2:
            self.calibration = self.calibrate()
            self.threshold = self.calibration.threshold
        report = FitReport(len(good), len(defect_labels), self.heads, self.calibration, self.temperature,
                           time.perf_counter() - t0)
        self._last_fit = report
        _logger.info("line %s fitted: %d good, %d defect, heads %s, threshold %.4f in %.1f s", self.line.name,
                     report.shots, report.defect_images, report.heads, self.threshold, report.seconds)
        return report

    def _fit_probe(self, good_feats: Features | None, identity_idx: Tensor, defect_feats: Features,
                   defect_labels: list[str], good_out: dict[str, HeadOutput],
                   defect_out: dict[str, HeadOutput]) -> None:
        """Fit the probe on all labelled images; score each on a probe fitted without it."""
        good_emb = good_feats.global_emb[identity_idx] if good_feats is not None else defect_feats.global_emb[:0]
        emb = torch.cat([good_emb, defect_feats.global_emb])
        labels: list[str | None] = [None] * good_emb.shape[0] + list(defect_labels)
        try:
            self.probe.setup(self.text, self.temperature, emb, labels)
        except FloatingPointError as exc:
            _logger.error("%s", exc)
            self.probe = LinearProbeHead()
            return
        loo_scores = torch.empty(len(labels))
        for i in range(len(labels)):
            keep = [j for j in range(len(labels)) if j != i]
            if not any(labels[j] is not None for j in keep):
                loo_scores[i] = self.probe(_global_only(emb[i : i + 1])).score[0]
                continue
            held_out = LinearProbeHead()
            held_out.setup(self.text, self.temperature, emb[keep], [labels[j] for j in keep])
            loo_scores[i] = held_out(_global_only(emb[i : i + 1])).score[0]
        n_good = len(labels) - len(defect_labels)
        if good_feats is not None:
            # Every view of a good image gets that image's held-out probe score.
            per_view = good_feats.batch_size // max(n_good, 1)
            good_out["probe"] = HeadOutput(loo_scores[:n_good].repeat_interleave(per_view), None)
        defect_out["probe"] = HeadOutput(loo_scores[n_good:], None)

    def _setup_fusion(self, active: set[str], extra: dict[str, tuple[float, float]] | None = None,
                      extra_map: dict[str, tuple[float, float]] | None = None) -> None:
        weights = {h: getattr(self.line.heads, h) for h in HEAD_NAMES}
        weights = {h: w for h, w in weights.items() if h == "zero_shot" or h in active}
        if self._score_stats is None:
            self.fusion.setup(weights)
            return
        score_stats = {**self._score_stats, **(extra or {})}
        self.fusion.setup(weights, score_stats, {**(self._map_stats or {}), **(extra_map or {})})

    def install_adapter(self, adapter: torch.nn.Module, version: str, score_stats: tuple[float, float],
                        map_stats: tuple[float, float] | None = None, threshold: float | None = None) -> None:
        """Hot-swap a trained adapter head (``forward(Features) -> HeadOutput``) between two frames.

        ``score_stats`` / ``map_stats`` are the adapter's mean / std on held-out good parts, and
        ``threshold`` the fused threshold validated with it (the registry version's calibration).
        """
        adapter = adapter.eval().to(self.device)
        with self._lock:
            active = {h for h in self.heads if h != "adapter"} | {"adapter"}
            self.adapter = adapter
            self._setup_fusion(active, {"adapter": score_stats}, {"adapter": map_stats} if map_stats else None)
            self.model_version = version
            if threshold is not None:
                self.set_threshold(threshold)

    def remove_adapter(self, threshold: float | None = None) -> None:
        """Back to the base heads (rollback), between two frames."""
        with self._lock:
            self.adapter = None
            self._setup_fusion({h for h in self.heads if h != "adapter"})
            self.model_version = "base"
            if threshold is not None:
                self.set_threshold(threshold)

    def calibrate(self, method: str | None = None) -> Calibration:
        """Threshold from the fitting data's held-out fused scores with the line's (or given) method."""
        spec = self.line.decision.calibration
        method = method or spec.method
        if method == "false_reject":
            return threshold_for_false_reject(self.good_scores, spec.target_false_reject)
        if method == "f1":
            return threshold_best_f1(self.good_scores, self.defect_scores)
        if method == "cost":
            return threshold_min_cost(self.good_scores, self.defect_scores, spec.cost_false_reject, spec.cost_escape)
        msg = f"unknown calibration method {method!r}; use false_reject, f1 or cost"
        raise ValueError(msg)

    def set_threshold(self, threshold: float) -> None:
        if not np.isfinite(threshold):
            msg = f"threshold must be a finite number, got {threshold}"
            raise ValueError(msg)
        self.threshold = float(threshold)

    # ---------------------------------------------------------------- inspection
    def inspect(self, frame: np.ndarray) -> InspectionResult:
        return self.inspect_batch([frame])[0]

    def inspect_batch(self, frames: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Inspect frames in one batched backbone pass; timings are per frame (batch time / B)."""
        with self._lock:
            return self._inspect_batch(frames)

    @torch.inference_mode()
    def _inspect_batch(self, frames: Sequence[np.ndarray]) -> list[InspectionResult]:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        timings: dict[str, float] = {}
        t = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            sync()
            now = time.perf_counter()
            timings[stage] = (now - t) * 1000.0 / len(frames)
            t = now

        batch = self._prepare(frames)
        lap("preprocess")
        feats = self.encode_tensor(batch)
        lap("backbone")
        outputs: dict[str, HeadOutput] = {}
        for head in self.heads:
            outputs[head] = getattr(self, head)(feats)
            lap(head)
        score, fused_map = self.fusion(outputs)
        lap("fusion")
        crops_hw = [crop_roi(f, self.line.roi).shape[:2] for f in frames]
        maps = self._upsample(fused_map, crops_hw) if fused_map is not None else [None] * len(frames)
        lap("map")
        results = []
        for i, frame in enumerate(frames):
            results.append(self._decide(i, frame, float(score[i]), maps[i], outputs, feats))
        lap("decision")
        for r in results:
            r.timings_ms = dict(timings)
            r.timings_ms["total"] = sum(timings.values())
        return results

    def _defect_class(self, i: int, outputs: dict[str, HeadOutput]) -> tuple[str, float | None]:
        """Name of an NG part's defect: from the trained adapter (it learned the line's labelled defects),
        else the linear probe, else the zero-shot prompts; "anomaly" when no head names classes."""
        sources: list[tuple[str, tuple[str, ...]]] = []
        if self.adapter is not None:
            sources.append(("adapter", tuple(getattr(self.adapter, "defect_names", ()))))
        sources += [("probe", self.probe.defect_names if self.probe.fitted else ()),
                    ("zero_shot", self.zero_shot.defect_names)]
        for head, names in sources:
            out = outputs.get(head)
            if out is None or out.class_probs is None or not names:
                continue
            probs = out.class_probs[i]
            if probs.numel() != len(names):
                continue
            k = int(torch.argmax(probs))
            return names[k], float(probs[k])
        return "anomaly", None

    def _upsample(self, fused_map: Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        out = []
        for i, (h, w) in enumerate(sizes):
            m = F.interpolate(fused_map[i : i + 1, None].float(), size=(h, w), mode="bilinear", align_corners=False)
            arr = m[0, 0].cpu().numpy()
            sigma = max(h, w) * MAP_SIGMA_FRACTION
            out.append(cv2.GaussianBlur(arr, (0, 0), sigmaX=sigma) if sigma >= 0.5 else arr)
        return out

    def _decide(self, i: int, frame: np.ndarray, score: float, anomaly_map: np.ndarray | None,
                outputs: dict[str, HeadOutput], feats: Features) -> InspectionResult:
        ng = not score < self.threshold  # NaN can never pass as OK
        defect = confidence = None
        if ng:
            defect, confidence = self._defect_class(i, outputs)
        roi = self.line.roi or (0, 0, frame.shape[1], frame.shape[0])
        regions = []
        if ng and anomaly_map is not None:
            regions = find_regions(anomaly_map, self.region_threshold, self.line.decision.min_region_area_px,
                                   offset=(roi[0], roi[1]))
        ident = self.backbone.identity
        return InspectionResult(
            verdict="NG" if ng else "OK",
            score=score,
            threshold=self.threshold,
            defect=defect,
            defect_confidence=confidence,
            anomaly_map=anomaly_map,
            roi=tuple(roi),  # type: ignore[arg-type]
            regions=regions,
            head_scores={h: float(o.score[i]) for h, o in outputs.items()},
            line=self.line.name,
            model=ident.label(),
            model_version=self.model_version,
            config_hash=self.config_hash,
            untrained_backbone=ident.untrained,
            embedding=feats.global_emb[i].float().cpu().numpy(),
        )


def _mean_std(values: Tensor) -> tuple[float, float]:
    flat = values.flatten().double()
    return float(flat.mean()), float(flat.std()) if flat.numel() > 1 else 1.0


def _global_only(emb: Tensor) -> Features:
    return Features(global_emb=emb, dense=None, patches={}, grid=(1, 1))
