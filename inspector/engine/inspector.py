"""Inspector: frame -> InspectionResult (preprocess, one backbone pass, heads, fusion, decision, regions).

Fitting (few-shot references, probe, fusion statistics, threshold) happens once per line, at
startup or changeover, and gives a :class:`FittedState` the engine applies; ``inspect`` is the
per-frame hot path and allocates nothing it can reuse.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.backends import make_runner
from inspector.backbone.dense import DenseFeatureExtractor, Features
from inspector.backbone.loading import LoadedBackbone, load_backbone
from inspector.backbone.text import encode_text
from inspector.config import LineConfig, StationConfig, config_hash
from inspector.decision.calibrate import Calibration
from inspector.decision.regions import find_regions
from inspector.decision.result import InspectionResult
from inspector.engine.fewshot import FewShotSet
from inspector.engine.fitted import FitReport, FittedState, Stats, cache_path, fitted_key, read_cached, write_cached
from inspector.engine.fitting import active_heads, calibrate_scores, configure_fusion, fit_state
from inspector.engine.int8 import Int8Check, settle_int8
from inspector.engine.mutual_calibration import buffer_calibration, buffer_fused_scores
from inspector.frames.imaging import validate_frame
from inspector.frames.preprocess import Preprocessor, crop_roi
from inspector.heads import Fusion, HeadOutput, LinearProbeHead, ReferenceHead, ZeroShotHead
from inspector.heads.mutual import Bank, MutualHead, held_out_stats, part_coreset
from inspector.heads.references import aggregate_patches
from inspector.text.embeddings import TextEmbeddingCache
from inspector.text.prompts import build_prompt_set

_logger = logging.getLogger(__name__)

# Sigma of the Gaussian that smooths the upsampled map, as a fraction of the map's side.
MAP_SIGMA_FRACTION = 1 / 64
ENCODE_BATCH = 8


class Inspector:
    """The inspection engine of one product line.

    Its state after a fit is one :class:`FittedState` (``fitted_state``), applied whole with
    ``apply_fitted``; ``inspect_batch``, fits and adapter swaps hold one lock, so each frame is judged
    entirely before or entirely after a change. Callers outside the engine use the public face only.
    """

    def __init__(
        self, line: LineConfig, backbone: LoadedBackbone, text_cache: TextEmbeddingCache | None = None
    ) -> None:
        self.line = line
        self.backbone = backbone
        self.device = backbone.device
        model = backbone.model
        self.extractor = DenseFeatureExtractor(model.visual, line.model.image_size, line.model.feature_layers,
                                               model=line.model.name, dense_blocks=line.zeroshot.dense_blocks)
        self.extractor.eval().to(self.device)
        # model.backend: the pass runs in torch or a compiled OpenVINO model cached next to the text cache.
        self.runner = make_runner(self.extractor, line.model.backend, model_name=line.model.name,
                                  precision=line.model.precision, compile_mode=line.model.compile,
                                  cache_dir=text_cache.folder if text_cache is not None else None)
        self.preprocess = Preprocessor(self.extractor.image_size, backbone.mean, backbone.std, self.device)
        self.zero_shot = ZeroShotHead(line.zeroshot.map_pool)
        self.references = ReferenceHead(line.fewshot.neighbourhood, line.fewshot.image_score)
        self.probe = LinearProbeHead()
        self.mutual = MutualHead(line.mutual.interval, line.mutual.top, line.mutual.neighbourhood)
        # Held-out statistics of the mutual head over its bank: (score mean, std), (map mean, std).
        self._mutual_stats: tuple[tuple[float, float], tuple[float, float]] | None = None
        self._adapter_stats: tuple[Stats, Stats] | None = None  # the installed adapter's, kept for re-fusions
        self.fusion = Fusion()
        self.text_cache = text_cache or TextEmbeddingCache(None)
        self.prompts = build_prompt_set(line.object_name, line.prompts)
        self.text = self.text_cache.get(self.model_key, self.prompts, self._encode_text)
        self.temperature = line.prompts.temperature or float(model.logit_scale.exp())
        self.zero_shot.setup(self.text, self.temperature)
        self.fusion.setup({"zero_shot": max(line.heads.zero_shot, 1e-6)})
        self.threshold = line.decision.threshold if line.decision.threshold is not None else 0.5
        self.region_threshold = line.decision.region_threshold if line.decision.region_threshold is not None else 0.5
        self.calibration: Calibration | None = None
        self.good_scores: np.ndarray = np.empty(0)
        self.defect_scores: np.ndarray = np.empty(0)
        self.config_hash = config_hash(line)
        self.adapter: torch.nn.Module | None = None
        self.model_version = "base"
        self._fitted: FittedState | None = None
        # model.precision int8: what the agreement check found after the last fit (None: not int8 / not fitted).
        self.int8_check: Int8Check | None = None
        # Held by inspect_batch, fits and model swaps, so a change lands between two frames.
        self._lock = threading.RLock()
        if getattr(self.runner, "compile_mode", "off") != "off":
            self._compile_backbone()

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

    @property
    def model_key(self) -> str:
        """The engine's one identity: backbone weights, input size, feature layers, dense path (not precision).

        Registry versions are checked against it; the text, feature and fitted-state caches key on it.
        """
        ident = self.backbone.identity
        weights = ident.sha256 or ("random-seed0" if ident.untrained else ident.pretrained)
        h, w = self.extractor.image_size
        key = f"{ident.model}|{ident.pretrained}|{weights}|{h}x{w}|layers={list(self.extractor.layers)}"
        # The DPAM dense path gives other dense tokens (zeroshot.dense); the last-block branch keeps the
        # key it always had, so existing text, feature and fitted-state caches stay valid.
        blocks = self.extractor.dense_blocks
        return key if blocks == 1 else f"{key}|dense=dpam{blocks}"

    def _encode_text(self, texts: list[str]) -> Tensor:
        tokens = self.backbone.tokenizer(texts).to(self.device)
        return encode_text(self.backbone.model, tokens)

    @property
    def heads(self) -> tuple[str, ...]:
        return active_heads(self.line, self.references.fitted, self.probe.fitted, self.adapter is not None,
                            self.mutual.n_parts)

    @property
    def defect_names(self) -> tuple[str, ...]:
        return self.probe.defect_names if self.probe.fitted else self.zero_shot.defect_names

    @property
    def fitted_state(self) -> FittedState | None:
        """The state the engine runs (None before the first fit)."""
        return self._fitted

    @property
    def last_fit(self) -> FitReport | None:
        """The report of the fit the engine runs (None before the first fit)."""
        return self._fitted.report if self._fitted is not None else None

    # ---------------------------------------------------------------- features
    @contextlib.contextmanager
    def precision_context(self) -> Iterator[None]:
        """Autocast to the line's precision (``model.precision``); a no-op for fp32."""
        precision = self.line.model.precision
        if precision in ("fp32", "int8"):  # int8 is the OpenVINO model's own; torch stays fp32 around it
            yield
            return
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    def prepare(self, frames: Sequence[np.ndarray]) -> Tensor:
        """Frames -> the backbone's input batch [B, 3, H, W] on the device (ROI cropped, resized, normalised)."""
        crops = [crop_roi(validate_frame(f), self.line.roi) for f in frames]
        return self.preprocess(crops)

    @torch.inference_mode()
    def encode_tensor(self, batch: Tensor) -> Features:
        parts = []
        with self.precision_context():
            for start in range(0, batch.shape[0], ENCODE_BATCH):
                parts.append(self.runner(batch[start : start + ENCODE_BATCH]))
        return Features.cat(parts)

    def encode(self, frames: Sequence[np.ndarray]) -> Features:
        """Features of frames (ROI applied), in batches."""
        return self.encode_tensor(self.prepare(frames))

    def embed_images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Global image embeddings [N, D] (float32, unit length) of frames, the line's ROI applied."""
        vecs = self.encode(frames).global_emb.float().cpu().numpy()
        return _unit_rows(vecs)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Global CLIP text embeddings [N, D] (float32, unit length) of phrases, e.g. a history search query."""
        with torch.inference_mode():
            vecs = self._encode_text(list(texts)).float().cpu().numpy()
        return _unit_rows(vecs)

    # ---------------------------------------------------------------- fitting
    def fit_folder(self, folder: Path, cache_dir: Path | None = None) -> FitReport:
        """Fit from a few-shot folder; with ``cache_dir``, reuse a fitted state whose inputs are unchanged.

        With ``model.precision: int8`` the fit runs on fp32 features and the int8 backbone is then
        calibrated on the good parts and kept only if it agrees with fp32 (``int8_check``)."""
        self._use_fp32()
        report = self._fit_folder(folder, cache_dir)
        if self._wants_int8():
            data = FewShotSet.from_folder(folder, self.line.fewshot.max_shots)
            self._settle_int8(data.good, data.defects)
        return report

    def _compile_backbone(self) -> None:
        """model.compile: compile the pass now (one frame), not on the line's first part."""
        t0 = time.perf_counter()
        h, w = self.extractor.image_size
        with torch.inference_mode(), self.precision_context():
            self.runner(torch.zeros(1, 3, h, w, device=self.device))
        _logger.info("line %s: backbone compiled (torch.compile %s) in %.1f s", self.line.name,
                     self.line.model.compile, time.perf_counter() - t0)

    def backend_record(self) -> dict[str, str]:
        """How the backbone pass runs, for the audit log: backend, the precision that runs, the int8 check."""
        running = self.runner.mode if self._wants_int8() else self.line.model.precision
        record = {"backend": self.runner.backend, "precision": running}
        if self.line.model.compile != "off" and self.runner.backend == "torch":
            record["compile"] = self.line.model.compile
        if self.int8_check is not None:
            record["int8_check"] = self.int8_check.reason
        return record

    def _wants_int8(self) -> bool:
        return self.line.model.precision == "int8" and getattr(self.runner, "precision", "") == "int8"

    def _use_fp32(self) -> None:
        if self._wants_int8():
            self.runner.use("fp32")  # fits and statistics always come from fp32 features

    def _settle_int8(self, good: Sequence[np.ndarray], defects: dict[str, Sequence[np.ndarray]] | None) -> None:
        with self._lock:
            self.int8_check = settle_int8(self, good, [f for fs in (defects or {}).values() for f in fs])

    def _fit_folder(self, folder: Path, cache_dir: Path | None) -> FitReport:
        path = None
        key = ""
        if cache_dir is not None and folder.is_dir():
            key = fitted_key(self.model_key, self.line, folder)
            path = cache_path(cache_dir, self.line.name, key)
            state = read_cached(path, key)
            if state is not None:
                _logger.info("line %s: fitted state restored from %s", self.line.name, path)
                self.apply_fitted(state)
                return state.report
        data = FewShotSet.from_folder(folder, self.line.fewshot.max_shots)
        with self._lock:
            state = fit_state(self, data.good, data.defects)
            state.report.skipped = data.skipped
            state.report.files = data.file_record(folder)
            state.key = key
            self.apply_fitted(state)
        if path is not None:
            write_cached(state, path)
        return state.report

    def fit(self, good: Sequence[np.ndarray], defects: dict[str, Sequence[np.ndarray]] | None = None) -> FitReport:
        """Fit references, probe, temperature, fusion statistics and (if not fixed) the threshold, and apply them."""
        self._use_fp32()
        with self._lock:
            state = fit_state(self, good, defects)
            self.apply_fitted(state)
        if self._wants_int8():
            self._settle_int8(good, defects)
        return state.report

    def apply_fitted(self, state: FittedState) -> None:
        """Run on ``state`` from the next frame on: base heads (any adapter is removed), its threshold."""
        references = ReferenceHead(self.line.fewshot.neighbourhood, self.line.fewshot.image_score)
        if state.memory:
            references.load_memory(state.memory, state.shots)
        probe = LinearProbeHead()
        if state.probe_weight.numel():
            probe.weight, probe.bias, probe.class_names = state.probe_weight, state.probe_bias, state.probe_classes
        with self._lock:
            self.temperature = state.temperature
            self.zero_shot.set_temperature(state.temperature)
            self.references = references.to(self.device)
            self.probe = probe.to(self.device)
            self.good_scores, self.defect_scores = state.good_scores, state.defect_scores
            self.threshold, self.region_threshold = state.threshold, state.region_threshold
            self.calibration = state.calibration
            self.adapter, self.model_version = None, "base"
            self._fitted = state
            self._setup_fusion(set(state.fusion_heads))

    def _setup_fusion(self, active: set[str], extra: Stats | None = None, extra_map: Stats | None = None) -> None:
        fitted = self._fitted
        active = {h for h in active if h != "mutual"} | ({"mutual"} if "mutual" in self.heads else set())
        if self._mutual_stats is not None:
            extra = {**(extra or {}), "mutual": self._mutual_stats[0]}
            extra_map = {**(extra_map or {}), "mutual": self._mutual_stats[1]}
        if self.adapter is not None and self._adapter_stats is not None:
            extra = {**self._adapter_stats[0], **(extra or {})}
            extra_map = {**self._adapter_stats[1], **(extra_map or {})}
        configure_fusion(self.fusion, self.line, active, fitted.score_stats if fitted else None,
                         fitted.map_stats if fitted else None, extra, extra_map)

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
            self._adapter_stats = ({"adapter": score_stats}, {"adapter": map_stats} if map_stats else {})
            self._setup_fusion(active)
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

    # ---------------------------------------------------------------- mutual head
    def set_mutual_bank(self, bank: Bank, stats: bool = True) -> None:
        """Score against these buffered parts (layer -> [P, M, D]) from the next frame on; {} turns it off.

        With ``stats`` the fusion standardises the head with held-out scores of the bank's own parts
        (each against the others); without, the previous statistics are kept (cheap updates).
        """
        with self._lock:
            self.mutual.set_bank({k: v.to(self.device) for k, v in bank.items()})
            if stats and self.mutual.n_parts >= 2:
                self._mutual_stats = held_out_stats(self.mutual.bank, self.mutual.interval, self.mutual.top)
            self._setup_fusion(set(self.heads))

    def mutual_calibration(self, head_scores: Sequence[dict[str, float]]) -> Calibration:
        """The threshold with the mutual head on, from its buffered parts (engine/mutual_calibration.py).

        ``head_scores``: per buffered part (the bank's order) the raw scores of the other heads it got
        when inspected. Raises ValueError while the head is off or when fewer than 2 parts qualify.
        """
        with self._lock:  # one consistent state; the search itself runs outside the lock
            if "mutual" not in self.heads:
                msg = f"line {self.line.name}: the mutual head is not on (its buffer is warming up)"
                raise ValueError(msg)
            bank, fusion = dict(self.mutual.bank), copy.deepcopy(self.fusion)
            others = [h for h in self.heads if h != "mutual"]
        scores = buffer_fused_scores(bank, head_scores, fusion, others, self.mutual.interval, self.mutual.top)
        return buffer_calibration(scores, self.line.decision.calibration.target_false_reject)

    def mutual_tokens(self, feats: Features, coreset: bool = True) -> list[dict[int, np.ndarray]]:
        """Each part's patch tokens for a mutual bank, float16 per layer (aggregated as the head searches).

        With ``coreset`` the part's greedy k-center coreset of ``mutual.tokens_per_part`` tokens; the
        hot path leaves that to the station's buffer thread, which takes it for OK parts only.
        """
        size, hood = self.line.mutual.tokens_per_part, self.line.mutual.neighbourhood
        patches = {k: aggregate_patches(v, feats.grid, hood) for k, v in feats.patches.items()}
        if not coreset:
            return [{layer: t[i].to(torch.float16).cpu().numpy() for layer, t in patches.items()}
                    for i in range(feats.batch_size)]
        return [{layer: part_coreset(t[i].cpu(), size, seed=layer).numpy() for layer, t in patches.items()}
                for i in range(feats.batch_size)]

    def calibrate(self, method: str | None = None) -> Calibration:
        """Threshold from the fitting data's held-out fused scores with the line's (or given) method."""
        return calibrate_scores(self.line, self.good_scores, self.defect_scores, method)

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

        batch = self.prepare(frames)
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
        if self.line.heads.mutual > 0 and feats.patches:
            for r, tokens in zip(results, self.mutual_tokens(feats, coreset=False), strict=True):
                r.part_tokens = tokens
            lap("mutual_tokens")
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
            mutual_parts=(self.mutual.n_parts if "mutual" in outputs else 0) if self.line.heads.mutual > 0 else -1,
            embedding=feats.global_emb[i].float().cpu().numpy(),
        )



def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    """Each row over its own length (the 1-D norm, as a single query vector is normalised)."""
    return np.stack([v / max(float(np.linalg.norm(v)), 1e-12) for v in vecs]).astype(np.float32)
