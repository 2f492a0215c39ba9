"""The fit of one line: few-shot images -> a :class:`FittedState` (references, probe, temperature, fusion, threshold).

:func:`fit_state` reads the engine (its encoder, text embeddings and current state) and changes
nothing in it; ``Inspector.fit`` applies the result. A fit without the data for a head (no good
images for the references, no defects for the probe) keeps that head's current fit, as does the
temperature when it cannot be fitted; a threshold or region threshold fixed in the line config is kept.

The statistics behind fusion and the threshold are held-out scores of good parts as the station will
see them (issue #12):

- the reference head scores each good image against the FULL patch memory of the other images
  (leave-one-out grouped by source image); the coreset is only the production search memory;
- only the identity view of each good image counts: the rotated / flipped views fill the memory
  but are neither production-like parts nor independent ones;
- with one good image there is no other part to hold out, so its views stand in as pseudo-parts
  (:data:`ONE_SHOT_MODES`; default "elsewhere": each patch is matched only to tokens from another
  place on the image), never with the K-1 -> K extrapolation (it assumes independent parts and,
  with K = 6 views, inflated the reference statistics ~80x, silencing the head). Every head's
  statistics come from the same views. Views of one part vary far less than parts do, so such a
  calibration reports no false-reject promise (interval 0-100 %; :func:`one_part_calibration`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.config import LineConfig
from inspector.decision.calibrate import (
    Calibration,
    fit_temperature,
    threshold_best_f1,
    threshold_for_false_reject,
    threshold_min_cost,
)
from inspector.engine.fitted import FitReport, FittedState, Stats
from inspector.engine.views import make_views
from inspector.heads import Fusion, HeadOutput, LinearProbeHead, ReferenceHead, ZeroShotHead
from inspector.heads.fusion import HEAD_NAMES
from inspector.text.embeddings import TextEmbeddings

if TYPE_CHECKING:
    from inspector.engine.inspector import Inspector

_logger = logging.getLogger(__name__)

# 1-shot statistics of the reference head, its views standing in as parts (benchmarks/calibration.py):
# "elsewhere": each patch against tokens from elsewhere on the image (ReferenceHead.held_out_elsewhere);
# "views": each view against the other views (no extrapolation);
# "legacy": views as groups with the K-1 -> K extrapolation (the collapsing path before issue #12).
ONE_SHOT_MODES = ("elsewhere", "views", "legacy")
# "elsewhere": a patch's match must lie this fraction of the grid side away on the physical image.
ELSEWHERE_RADIUS = 0.25


def active_heads(line: LineConfig, references_fitted: bool, probe_fitted: bool, adapter: bool,
                 mutual_parts: int = 0) -> tuple[str, ...]:
    """The heads an engine runs: fitted ones with a positive weight in the line config.

    The mutual head runs once its bank holds ``mutual.min_parts`` parts (cold start before).
    """
    active = ["zero_shot"] if line.heads.zero_shot > 0 else []
    if references_fitted and line.heads.references > 0:
        active.append("references")
    if probe_fitted and line.heads.probe > 0:
        active.append("probe")
    if adapter and line.heads.adapter > 0:
        active.append("adapter")
    if line.heads.mutual > 0 and mutual_parts >= line.mutual.min_parts:
        active.append("mutual")
    return tuple(active)


def configure_fusion(fusion: Fusion, line: LineConfig, active: set[str], score_stats: Stats | None,
                     map_stats: Stats | None, extra: Stats | None = None, extra_map: Stats | None = None) -> None:
    """Weights of the active heads (zero-shot always) and, after a fit with good parts, their statistics."""
    weights = {h: getattr(line.heads, h) for h in HEAD_NAMES}
    weights = {h: w for h, w in weights.items() if h == "zero_shot" or h in active}
    if score_stats is None:
        fusion.setup(weights)
        return
    fusion.setup(weights, {**score_stats, **(extra or {})}, {**(map_stats or {}), **(extra_map or {})})


def calibrate_scores(line: LineConfig, good_scores: np.ndarray, defect_scores: np.ndarray,
                     method: str | None = None) -> Calibration:
    """Threshold from held-out fused scores with the line's (or the given) method."""
    spec = line.decision.calibration
    method = method or spec.method
    if method == "false_reject":
        return threshold_for_false_reject(good_scores, spec.target_false_reject)
    if method == "f1":
        return threshold_best_f1(good_scores, defect_scores)
    if method == "cost":
        return threshold_min_cost(good_scores, defect_scores, spec.cost_false_reject, spec.cost_escape)
    msg = f"unknown calibration method {method!r}; use false_reject, f1 or cost"
    raise ValueError(msg)


@torch.no_grad()
def fit_state(engine: Inspector, good: Sequence[np.ndarray],
              defects: dict[str, Sequence[np.ndarray]] | None = None, one_shot: str = "elsewhere") -> FittedState:
    """Fit references, probe, temperature, fusion statistics and (if not fixed) the threshold."""
    if one_shot not in ONE_SHOT_MODES:
        msg = f"unknown 1-shot mode {one_shot!r}; use one of {ONE_SHOT_MODES}"
        raise ValueError(msg)
    t0 = time.perf_counter()
    line = engine.line
    spec = line.fewshot
    defects = {k: list(v) for k, v in (defects or {}).items() if len(v)}
    good = list(good)[: spec.max_shots]
    good_feats = defect_feats = None
    defect_labels: list[str] = []
    groups = torch.empty(0, dtype=torch.long)
    n_views = 1
    if good:
        batch = engine.prepare(good)
        views = make_views(batch, spec.augment)
        n_views = views.shape[0] // batch.shape[0]
        good_feats = engine.encode_tensor(views)
        groups = torch.arange(len(good)).repeat_interleave(n_views)
    if defects:
        defect_labels = [name for name, imgs in defects.items() for _ in imgs]
        defect_feats = engine.encode([img for imgs in defects.values() for img in imgs])
    identity_idx = torch.arange(len(good)) * n_views  # the un-augmented view of each good image
    # The rows whose held-out scores make the statistics: identity views, or at 1 shot its views.
    views_as_parts = len(good) == 1 and n_views > 1
    stat_rows = torch.arange(n_views) if views_as_parts else identity_idx
    loo_groups = torch.arange(n_views) if views_as_parts else groups

    # Zero-shot temperature: fitted when both classes are present, else the current one.
    temperature = engine.temperature
    zero_shot = ZeroShotHead(line.zeroshot.map_pool)
    zero_shot.setup(engine.text, temperature)
    if good_feats is not None and defect_feats is not None and line.prompts.temperature is None:
        margins = torch.cat([zero_shot.margins(good_feats.index(identity_idx)),
                             zero_shot.margins(defect_feats)]).numpy()
        labels = np.r_[np.zeros(len(good)), np.ones(defect_feats.batch_size)]
        temperature = fit_temperature(margins, labels, init=temperature)
        zero_shot.set_temperature(temperature)

    # Heads fitted on the data, each scored on good parts it did not see (leave-one-out).
    good_out: dict[str, HeadOutput] = {}
    defect_out: dict[str, HeadOutput] = {}
    references = engine.references
    if good_feats is not None:
        good_out["zero_shot"] = zero_shot(good_feats.index(stat_rows))
        if engine.extractor.is_vit and line.heads.references > 0 and loo_groups.unique().numel() >= 2:
            references = ReferenceHead(spec.neighbourhood, spec.image_score)
            references.setup(good_feats, spec.coreset_size, spec.seed, shots=len(good))
            if views_as_parts and one_shot == "elsewhere":
                coords = _view_coords(good_feats.grid, spec.augment)
                radius = ELSEWHERE_RADIUS * max(good_feats.grid)
                good_out["references"] = references.held_out_elsewhere(good_feats, coords, radius)
            else:
                legacy = views_as_parts and one_shot == "legacy"
                good_out["references"] = references.leave_one_out(
                    good_feats, loo_groups, queries=stat_rows, extrapolate=not views_as_parts or legacy)
    if defect_feats is not None:
        defect_out["zero_shot"] = zero_shot(defect_feats)
        if references.fitted:
            defect_out["references"] = references(defect_feats)
    probe = engine.probe
    if defect_feats is not None and line.heads.probe > 0:
        probe = _fit_probe(engine.text, temperature, good_feats, identity_idx, stat_rows // n_views,
                           stat_rows, defect_feats, defect_labels, good_out, defect_out)

    score_stats = map_stats = None
    if good_feats is not None:
        score_stats = {h: _mean_std(o.score) for h, o in good_out.items()}
        map_stats = {h: _mean_std(o.map) for h, o in good_out.items() if o.map is not None}
    fusion_heads = tuple(h for h in HEAD_NAMES if h in good_out or h in defect_out)
    fusion = Fusion()
    configure_fusion(fusion, line, set(fusion_heads), score_stats, map_stats)

    # Fused scores of the fitting data: the calibration set.
    good_scores = defect_scores = np.empty(0)
    good_map = None
    if good_out:
        score, good_map = fusion(good_out)
        good_scores = score.numpy().astype(np.float64)
    if defect_out:
        defect_scores = fusion(defect_out)[0].numpy().astype(np.float64)
    region_threshold = engine.region_threshold
    if line.decision.region_threshold is None:
        if good_map is not None:
            region_threshold = float(torch.quantile(good_map.flatten().float()[:1_000_000], 0.999))
        elif good_out:
            region_threshold = float(good_scores.max())
    threshold, calibration = engine.threshold, None
    if line.decision.threshold is None and good_scores.size >= 2:
        calibration = calibrate_scores(line, good_scores, defect_scores)
        threshold = calibration.threshold
        if views_as_parts:
            calibration = one_part_calibration(calibration, n_views)
    heads = active_heads(line, references.fitted, probe.fitted, adapter=False)
    report = FitReport(len(good), len(defect_labels), heads, calibration, temperature, time.perf_counter() - t0)
    _logger.info("line %s fitted: %d good, %d defect, heads %s, threshold %.4f in %.1f s", line.name,
                 report.shots, report.defect_images, report.heads, threshold, report.seconds)
    return FittedState(
        temperature=temperature,
        memory={layer: references.memory(layer) for layer in references.layers},
        shots=int(references.shots),
        probe_weight=probe.weight,
        probe_bias=probe.bias,
        probe_classes=probe.class_names,
        fusion_heads=fusion_heads,
        score_stats=score_stats,
        map_stats=map_stats,
        good_scores=good_scores,
        defect_scores=defect_scores,
        threshold=threshold,
        region_threshold=region_threshold,
        calibration=calibration,
        report=report,
    )


def _fit_probe(text: TextEmbeddings, temperature: float, good_feats: Features | None, identity_idx: Tensor,
               stat_image: Tensor, stat_rows: Tensor, defect_feats: Features, defect_labels: list[str],
               good_out: dict[str, HeadOutput], defect_out: dict[str, HeadOutput]) -> LinearProbeHead:
    """Fit the probe on all labelled images; score each on a probe fitted without it (an empty probe if it diverges).

    Good images are fitted on their identity view; the statistics rows ``stat_rows`` (of image
    ``stat_image``) are scored by the probe fitted without that image.
    """
    good_emb = good_feats.global_emb[identity_idx] if good_feats is not None else defect_feats.global_emb[:0]
    emb = torch.cat([good_emb, defect_feats.global_emb])
    labels: list[str | None] = [None] * good_emb.shape[0] + list(defect_labels)
    probe = LinearProbeHead()
    try:
        probe.setup(text, temperature, emb, labels)
    except FloatingPointError as exc:
        _logger.error("%s", exc)
        return LinearProbeHead()
    n_good = good_emb.shape[0]
    held_out: dict[int, LinearProbeHead] = {}

    def without(i: int) -> LinearProbeHead:
        keep = [j for j in range(len(labels)) if j != i]
        if not any(labels[j] is not None for j in keep):
            return probe  # no defect left to fit on: the full probe is the only one there is
        if i not in held_out:
            held_out[i] = LinearProbeHead()
            held_out[i].setup(text, temperature, emb[keep], [labels[j] for j in keep])
        return held_out[i]

    defect_scores = torch.stack([without(n_good + i)(_global_only(emb[n_good + i : n_good + i + 1])).score[0]
                                 for i in range(len(defect_labels))])
    if good_feats is not None:
        rows = good_feats.global_emb[stat_rows]
        good_out["probe"] = HeadOutput(torch.stack([without(int(img))(_global_only(rows[r : r + 1])).score[0]
                                                    for r, img in enumerate(stat_image)]), None)
    defect_out["probe"] = HeadOutput(defect_scores, None)
    return probe


def one_part_calibration(calibration: Calibration, n_views: int) -> Calibration:
    """A calibration from the views of one good part: it cannot say what the line's false-reject rate is.

    The views of one image vary 3-10x less than different parts do (benchmarks/calibration.py), so
    their interval would promise what the line does not keep; the honest interval is "anything".
    """
    return replace(calibration, n_good=1, false_reject_interval=(0.0, 1.0),
                   interval_method="none: one good part shows no part-to-part spread; add good parts",
                   details={**calibration.details, "pseudo_parts": n_views})


def _view_coords(grid: tuple[int, int], augment: bool) -> Tensor:
    """[V, N, 2]: where on the physical image each patch token of each view comes from (grid cells)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    place = torch.stack([rows, cols, rows]).float()[None]  # 3 channels, as make_views expects images
    views = make_views(place, augment)[:, :2]  # the same rotations / flips as the patches went through
    return views.flatten(2).transpose(1, 2)


def _mean_std(values: Tensor) -> tuple[float, float]:
    flat = values.flatten().double()
    return float(flat.mean()), float(flat.std()) if flat.numel() > 1 else 1.0


def _global_only(emb: Tensor) -> Features:
    return Features(global_emb=emb, dense=None, patches={}, grid=(1, 1))
