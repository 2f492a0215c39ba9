"""What fitting a line produces (``FittedState``), and its file, so startup and changeover skip re-encoding.

The cache key covers everything the fit depends on: the engine's model key (backbone weights, input
size, feature layers), the line's configuration and the bytes of every few-shot image. Any change (a
new image, another threshold method, other weights) gives a new key and a fresh fit. Files are
safetensors (tensors) with JSON metadata, written atomically; an unreadable or foreign file is
ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from inspector.config import LineConfig, config_hash
from inspector.decision.calibrate import Calibration
from inspector.engine.fewshot import walk_fewshot

_logger = logging.getLogger(__name__)
FORMAT = "inspector-fitted-v3"  # v3: identity-view statistics, logit zero-shot, false-reject interval

Stats = dict[str, tuple[float, float]]


class ForeignFileError(ValueError):
    """A file that is not a fitted state of this format."""


@dataclass
class FitReport:
    """What a fit used and gave: counts, active heads, calibration, time, and the files behind it."""

    shots: int
    defect_images: int
    heads: tuple[str, ...]
    calibration: Calibration | None
    temperature: float
    seconds: float
    skipped: list[str] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {"shots": self.shots, "defect_images": self.defect_images, "heads": list(self.heads),
                "temperature": self.temperature, "seconds": self.seconds, "skipped": self.skipped,
                "files": self.files}


@dataclass
class FittedState:
    """Everything a fit produces; the Inspector applies one (``Inspector.apply_fitted``) between two frames.

    Empty ``memory`` means no reference head, an empty ``probe_weight`` no linear probe.
    """

    temperature: float  # zero-shot temperature
    memory: dict[int, Tensor]  # reference head: layer -> memory bank [M, D]
    shots: int  # good images behind the memory
    probe_weight: Tensor  # [1 + C, D]
    probe_bias: Tensor  # [1 + C]
    probe_classes: tuple[str, ...]  # defect classes, in column order after "good"
    fusion_heads: tuple[str, ...]  # heads the fusion weights (with the line's weights)
    score_stats: Stats | None  # head -> mean / std of its score on good parts (None: no standardising)
    map_stats: Stats | None
    good_scores: np.ndarray  # held-out fused scores of the fitting data: the calibration set
    defect_scores: np.ndarray
    threshold: float
    region_threshold: float
    calibration: Calibration | None
    report: FitReport
    key: str = ""  # the cache key of the inputs (see fitted_key); empty when fitted from images in memory

    def save(self, path: Path) -> None:
        """Write atomically as safetensors + JSON metadata."""
        tensors: dict[str, Tensor] = {f"memory.{layer}": mem for layer, mem in self.memory.items()}
        tensors["probe.weight"] = self.probe_weight
        tensors["probe.bias"] = self.probe_bias
        tensors["good_scores"] = torch.from_numpy(np.ascontiguousarray(self.good_scores, dtype=np.float64))
        tensors["defect_scores"] = torch.from_numpy(np.ascontiguousarray(self.defect_scores, dtype=np.float64))
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {
            "key": self.key,
            "temperature": self.temperature,
            "shots": self.shots,
            "probe_classes": list(self.probe_classes),
            "fusion_heads": list(self.fusion_heads),
            "score_stats": self.score_stats,
            "map_stats": self.map_stats,
            "threshold": self.threshold,
            "region_threshold": self.region_threshold,
            "calibration": None if self.calibration is None else self.calibration.to_record(),
            "report": self.report.to_record(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(meta)})
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> FittedState:
        """Read a saved state (tensors on the CPU); ForeignFileError for a file of another format."""
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        if header.get("format") != FORMAT:
            msg = f"{path} is not a fitted state of format {FORMAT}"
            raise ForeignFileError(msg)
        meta = json.loads(header["meta"])
        tensors = load_file(str(path))
        calib = meta["calibration"]
        calibration = Calibration.from_record(calib) if calib else None
        r = meta["report"]
        report = FitReport(r["shots"], r["defect_images"], tuple(r["heads"]), calibration, r["temperature"],
                           r["seconds"], r["skipped"], r["files"])
        return cls(
            temperature=float(meta["temperature"]),
            memory={int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("memory.")},
            shots=int(meta["shots"]),
            probe_weight=tensors["probe.weight"],
            probe_bias=tensors["probe.bias"],
            probe_classes=tuple(meta["probe_classes"]),
            fusion_heads=tuple(meta["fusion_heads"]),
            score_stats=_stats(meta["score_stats"]),
            map_stats=_stats(meta["map_stats"]),
            good_scores=tensors["good_scores"].numpy(),
            defect_scores=tensors["defect_scores"].numpy(),
            threshold=float(meta["threshold"]),
            region_threshold=float(meta["region_threshold"]),
            calibration=calibration,
            report=report,
            key=str(meta["key"]),
        )


def _stats(record: dict[str, list[float]] | None) -> Stats | None:
    return {k: (float(v[0]), float(v[1])) for k, v in (record or {}).items()} or None


# ------------------------------------------------------------------------------------ the cache
def fitted_key(model_key: str, line: LineConfig, folder: Path) -> str:
    """Cache key of a fit: the model key, the line's config hash and the few-shot files it reads."""
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    h.update(model_key.encode())
    h.update(config_hash(line).encode())
    for path in walk_fewshot(folder).selected(line.fewshot.max_shots):
        h.update(str(path.relative_to(folder)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:32]


def cache_path(cache_dir: Path, line_name: str, key: str) -> Path:
    return cache_dir / f"fitted-{line_name}-{key}.safetensors"


def read_cached(path: Path, key: str) -> FittedState | None:
    """The cached state of ``key``; None when absent, foreign or unreadable."""
    if not path.exists():
        return None
    try:
        state = FittedState.load(path)
    except ForeignFileError:
        return None
    except Exception as exc:
        _logger.warning("ignoring unreadable fitted-state cache %s: %s", path, exc)
        return None
    return state if state.key == key else None


def write_cached(state: FittedState, path: Path) -> None:
    try:
        state.save(path)
    except OSError as exc:  # a read-only cache costs start-up time, not correctness
        _logger.warning("cannot write fitted-state cache %s: %s", path, exc)
