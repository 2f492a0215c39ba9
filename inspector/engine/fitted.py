"""Fitted line state on disk, so startup and changeover skip re-encoding the few-shot set.

The key covers everything the fit depends on: backbone identity, the line's configuration and
the bytes of every few-shot image. Any change (a new image, another threshold method, other
weights) gives a new key and a fresh fit. Files are safetensors (tensors) with JSON metadata,
written atomically; an unreadable or foreign file is ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from inspector.config import config_hash
from inspector.decision.calibrate import Calibration
from inspector.engine.fewshot import walk_fewshot

if TYPE_CHECKING:
    from inspector.engine import FitReport, Inspector

_logger = logging.getLogger(__name__)
FORMAT = "inspector-fitted-v1"


def fitted_key(inspector: Inspector, folder: Path) -> str:
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    h.update(inspector._model_key().encode())
    h.update(config_hash(inspector.line).encode())
    h.update(repr(inspector.extractor.image_size).encode())
    for path in walk_fewshot(folder).selected(inspector.line.fewshot.max_shots):
        h.update(str(path.relative_to(folder)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:32]


def cache_path(cache_dir: Path, line_name: str, key: str) -> Path:
    return cache_dir / f"fitted-{line_name}-{key}.safetensors"


def save_fitted(inspector: Inspector, path: Path, key: str, report: FitReport) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for prefix in ("zero_shot", "references", "probe", "fusion"):
        for name, value in getattr(inspector, prefix).state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().cpu().contiguous()
    tensors["good_scores"] = torch.from_numpy(np.ascontiguousarray(inspector.good_scores, dtype=np.float64))
    tensors["defect_scores"] = torch.from_numpy(np.ascontiguousarray(inspector.defect_scores, dtype=np.float64))
    meta: dict[str, Any] = {
        "key": key,
        "zero_shot_defects": list(inspector.zero_shot.defect_names),
        "reference_layers": list(inspector.references.layers),
        "probe_classes": list(inspector.probe.class_names),
        "threshold": inspector.threshold,
        "region_threshold": inspector.region_threshold,
        "temperature": inspector.temperature,
        "score_stats": inspector._score_stats,
        "map_stats": inspector._map_stats,
        "calibration": None if inspector.calibration is None else inspector.calibration.to_record(),
        "report": {"shots": report.shots, "defect_images": report.defect_images, "heads": list(report.heads),
                   "temperature": report.temperature, "seconds": report.seconds, "skipped": report.skipped,
                   "files": report.files},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(meta)})
        tmp.replace(path)
    except OSError as exc:  # a read-only cache costs start-up time, not correctness
        _logger.warning("cannot write fitted-state cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


def load_fitted(inspector: Inspector, path: Path, key: str) -> FitReport | None:
    """Restore a fitted state; None when absent, foreign or unreadable."""
    from safetensors import safe_open

    from inspector.engine import FitReport

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        meta = json.loads(header.get("meta", "{}"))
        if header.get("format") != FORMAT or meta.get("key") != key:
            return None
        tensors = load_file(str(path))
    except Exception as exc:
        _logger.warning("ignoring unreadable fitted-state cache %s: %s", path, exc)
        return None

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    inspector.zero_shot.load_state_dict(part("zero_shot"))
    inspector.zero_shot.defect_names = tuple(meta["zero_shot_defects"])
    refs = part("references")
    inspector.references.layers = tuple(meta["reference_layers"])
    for layer in inspector.references.layers:
        inspector.references.register_buffer(f"memory_{layer}", refs[f"memory_{layer}"])
    inspector.references.shots = refs["shots"]
    probe = part("probe")
    inspector.probe.weight, inspector.probe.bias = probe["weight"], probe["bias"]
    inspector.probe.class_names = tuple(meta["probe_classes"])
    inspector.fusion.load_state_dict(part("fusion"))
    inspector.good_scores = tensors["good_scores"].numpy()
    inspector.defect_scores = tensors["defect_scores"].numpy()
    inspector.threshold = float(meta["threshold"])
    inspector.region_threshold = float(meta["region_threshold"])
    inspector.temperature = float(meta["temperature"])
    inspector._score_stats = {k: tuple(v) for k, v in (meta["score_stats"] or {}).items()} or None
    inspector._map_stats = {k: tuple(v) for k, v in (meta["map_stats"] or {}).items()} or None
    calib = meta.get("calibration")
    inspector.calibration = Calibration(**calib) if calib else None
    for module in (inspector.zero_shot, inspector.references, inspector.probe, inspector.fusion):
        module.to(inspector.device)
    r = meta["report"]
    return FitReport(r["shots"], r["defect_images"], tuple(r["heads"]), inspector.calibration, r["temperature"],
                     r["seconds"], r["skipped"], r["files"])
