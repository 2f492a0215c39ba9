"""Runs a predictor over one benchmark category and writes metrics, scores, report and maps."""

from __future__ import annotations

import csv
import heapq
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from inspector.evaluation.datasets import DatasetError, EvalDataset, Sample, open_dataset, select_shots
from inspector.evaluation.metrics import (
    DEFAULT_FPR_LIMIT,
    METRIC_KEYS,
    PixelAccumulator,
    f1_max,
    summarize,
)
from inspector.evaluation.report import HeatmapExample, write_report

_logger = logging.getLogger(__name__)

#: Highest-scoring defect and good images shown in the report (each).
N_EXAMPLES_EACH = 4
_EXAMPLE_SIDE = 320  # longest side of the report's example images, pixels
_PROTOCOL_KEYS = frozenset({
    *METRIC_KEYS, "image_f1_threshold", "aupro_fpr_limit", "n_images", "n_defect", "category",
    "dataset", "shots", "seed", "shot_paths", "max_images", "elapsed_s",
})


class Predictor(Protocol):
    """What run_evaluation drives: fitted once on the shots, then asked about each test image."""

    def fit(self, good_images: list[np.ndarray]) -> None:
        """Take the few-shot good images (RGB uint8 HxWx3); called once, possibly with []."""
        ...

    def predict(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Image score and anomaly map (2-D, any resolution) of an RGB uint8 HxWx3 image."""
        ...


class TestAwarePredictor(Predictor, Protocol):
    """A predictor that sees every (unlabelled) test image first: mutual scoring (docs/EVALUATION.md).

    The runner calls ``observe(i, image)`` for each test image in the sorted test order, then
    ``predict_index(i, image)`` instead of ``predict``.
    """

    def observe(self, index: int, image: np.ndarray) -> None: ...

    def predict_index(self, index: int, image: np.ndarray) -> tuple[float, np.ndarray]: ...


def _subset(test: list[Sample], max_images: int | None) -> list[Sample]:
    """Evenly spaced subset of the sorted test list (smoke runs), keeping its order."""
    if max_images is None:
        return test
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        msg = f"max_images must be a whole number >= 1 or None; got {max_images!r}"
        raise ValueError(msg)
    if max_images >= len(test):
        return test
    idx = np.unique(np.linspace(0, len(test) - 1, max_images).round().astype(int))
    return [test[i] for i in idx]


def _check_prediction(sample: Sample, out: Any) -> tuple[float, np.ndarray]:
    try:
        score, amap = out
        score = float(score)
    except (TypeError, ValueError) as exc:
        msg = f"{sample.path}: predictor.predict must return (score, anomaly_map); got {type(out).__name__}"
        raise TypeError(msg) from exc
    if not math.isfinite(score):
        msg = f"{sample.path}: predictor returned a non-finite score {score}"
        raise ValueError(msg)
    if amap is None:
        msg = f"{sample.path}: predictor returned no anomaly map (None); the protocol needs one per image"
        raise ValueError(msg)
    amap = np.asarray(amap)
    if amap.ndim == 3 and 1 in (amap.shape[0], amap.shape[-1]):
        amap = amap.reshape(amap.shape[1:] if amap.shape[0] == 1 else amap.shape[:-1])
    if amap.ndim != 2 or amap.size == 0:
        msg = f"{sample.path}: the anomaly map must be 2-D (H, W); got shape {amap.shape}"
        raise ValueError(msg)
    return score, amap.astype(np.float32, copy=False)


def _resize_map(amap: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (cv2.INTER_LINEAR) resize of a float32 map to (H, W); identity when equal."""
    if amap.shape == hw:
        return np.ascontiguousarray(amap)
    return cv2.resize(amap, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def _thumbnail(sample: Sample, score: float, image: np.ndarray, amap: np.ndarray,
               mask: np.ndarray) -> HeatmapExample:
    h, w = mask.shape
    f = min(1.0, _EXAMPLE_SIDE / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if f < 1.0:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        amap = cv2.resize(amap, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return HeatmapExample(sample.path, sample.label, score, image.copy(), amap.copy(), mask.copy())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_evaluation(root: str | Path, category: str, shots: int, seed: int, predictor: Predictor,
                   out_dir: str | Path, *, dataset: str = "auto", save_maps: bool = False,
                   progress: bool = True, max_images: int | None = None,
                   meta: dict[str, Any] | None = None, split_csv: str | Path | None = None,
                   fpr_limit: float = DEFAULT_FPR_LIMIT) -> dict[str, Any]:
    """Evaluate ``predictor`` on one category (protocol: docs/EVALUATION.md); return metrics.json.

    ``dataset``: 'auto', 'mvtec' or 'visa'. ``max_images``: an evenly spaced subset of the test
    list for smoke runs (not comparable to published numbers). ``meta`` (e.g. the model name) is
    merged into metrics.json; it may not reuse the protocol's own keys.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"seed must be a whole number; got {seed!r}"
        raise ValueError(msg)
    meta = dict(meta or {})
    clash = sorted(set(meta) & _PROTOCOL_KEYS)
    if clash:
        msg = f"meta key(s) {clash} collide with protocol keys of metrics.json; rename them"
        raise ValueError(msg)
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"meta must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
        raise ValueError(msg) from exc
    ds: EvalDataset = open_dataset(root, category, dataset, split_csv)
    shot_samples = select_shots(ds.train, shots, seed)
    test = _subset(ds.test, max_images)
    n_defect = sum(s.label for s in test)
    if n_defect in (0, len(test)):
        missing = "defect" if n_defect == 0 else "good"
        msg = (f"{ds.name}/{category}: the {len(test)} test image(s) include no {missing} image; "
               "image metrics need both (raise max_images?)")
        raise DatasetError(msg)
    out_dir.mkdir(parents=True, exist_ok=True)

    _logger.info("fitting on %d shot(s) (seed %s)", len(shot_samples), seed)
    predictor.fit([ds.load_image(s) for s in shot_samples])
    test_aware = callable(getattr(predictor, "observe", None))
    if test_aware:
        for i, sample in enumerate(tqdm(test, desc="observing the test set", unit="img", disable=not progress)):
            predictor.observe(i, ds.load_image(sample))  # type: ignore[attr-defined]

    acc = PixelAccumulator()
    labels: list[int] = []
    scores: list[float] = []
    top: dict[int, list[tuple[float, int, HeatmapExample]]] = {0: [], 1: []}
    h5 = h5_tmp = None
    if save_maps:
        import h5py

        h5_tmp = out_dir / "maps.h5.tmp"
        h5 = h5py.File(h5_tmp, "w")
        h5.attrs.update({"category": category, "dataset": ds.name, "shots": shots, "seed": seed})
    try:
        for i, sample in enumerate(tqdm(test, desc=f"{ds.name}/{category}", unit="img",
                                        disable=not progress, dynamic_ncols=True)):
            image = ds.load_image(sample)
            mask = ds.load_mask(sample, image.shape)
            out = predictor.predict_index(i, image) if test_aware else predictor.predict(image)  # type: ignore[attr-defined]
            score, amap = _check_prediction(sample, out)
            amap = _resize_map(amap, mask.shape)
            acc.add(mask, amap, name=sample.path)
            labels.append(sample.label)
            scores.append(score)
            if h5 is not None:
                dset = h5.create_dataset(sample.path, data=amap, compression="gzip", chunks=True,
                                         shuffle=True)
                dset.attrs.update({"label": sample.label, "score": score})
            heap = top[sample.label]
            if len(heap) < N_EXAMPLES_EACH or score > heap[0][0]:
                item = (score, -i, _thumbnail(sample, score, image, amap, mask))
                (heapq.heappush if len(heap) < N_EXAMPLES_EACH else heapq.heappushpop)(heap, item)
            del image, mask, amap
        if h5 is not None:
            h5.close()
            os.replace(h5_tmp, out_dir / "maps.h5")
            h5 = None
    finally:
        if h5 is not None:
            h5.close()
            h5_tmp.unlink(missing_ok=True)

    _logger.info("computing metrics over %d images", len(test))
    has_masks = acc.n_regions > 0
    if not has_masks:
        _logger.warning("no ground-truth mask has a defect pixel; pixel metrics are left out (None)")
    metrics: dict[str, Any] = dict(summarize(labels, scores, acc if has_masks else None,
                                             fpr_limit=fpr_limit))
    _, threshold = f1_max(labels, scores)
    metrics.update({
        "image_f1_threshold": threshold,
        "aupro_fpr_limit": fpr_limit,
        "n_images": len(test),
        "n_defect": int(sum(labels)),
        "category": category,
        "dataset": ds.name,
        "shots": shots,
        "seed": seed,
        "shot_paths": [s.path for s in shot_samples],
        "max_images": max_images,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    })
    metrics.update(meta)

    with (out_dir / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "label", "score"])
        writer.writerows((s.path, lab, repr(sc)) for s, lab, sc in zip(test, labels, scores, strict=True))
    examples = [ex for label in (1, 0) for _, _, ex in sorted(top[label], reverse=True)]
    write_report(out_dir, labels, scores, [s.path for s in test], examples, metrics)
    _write_json(out_dir / "metrics.json", metrics)
    _logger.info("%s/%s: image AUROC %.4f, pixel AUROC %s, AUPRO %s -> %s", ds.name, category,
                 metrics["image_auroc"], metrics["pixel_auroc"], metrics["pixel_aupro"], out_dir)
    return metrics
