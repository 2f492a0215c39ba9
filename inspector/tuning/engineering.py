"""What the engineer panels compute, without Qt: prompt previews, threshold estimates, few-shot samples.

Each function takes the running line's :class:`~inspector.engine.Inspector` and plain data and returns
plain data, so the panels only render and the tests can call the maths directly.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector.backbone.dense import Features
from inspector.config import LineConfig
from inspector.engine import FewShotSet, Inspector, walk_fewshot

GOOD = "good"


# ---------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class PromptDraft:
    """The editable part of a line's prompts."""

    object_name: str
    normal_states: tuple[str, ...]
    defects: dict[str, str]

    @classmethod
    def from_line(cls, line: LineConfig) -> PromptDraft:
        return cls(line.object_name, tuple(line.prompts.normal_states), dict(line.prompts.defects))

    def apply(self, line: LineConfig) -> LineConfig:
        """The line with this draft, validated like a config file (raises pydantic's ValidationError)."""
        data = line.model_dump()
        data["object_name"] = self.object_name
        data["prompts"]["normal_states"] = self.normal_states
        data["prompts"]["defects"] = dict(self.defects)
        return LineConfig.model_validate(data)

    def updates(self) -> dict[str, Any]:
        """Dotted keys for :func:`inspector.config.update_line_in_file`."""
        return {"object_name": self.object_name, "prompts.normal_states": list(self.normal_states),
                "prompts.defects": dict(self.defects)}


@dataclass
class ScorePair:
    """The zero-shot score of one image with the line's prompts and with the draft."""

    label: str  # "current frame" or a sample's file name
    kind: str  # "frame", "good" or the defect class
    before: float
    after: float
    defect_after: str | None = None


@dataclass
class PromptPreview:
    frame: ScorePair | None
    frame_map: np.ndarray | None  # draft's zero-shot map over the frame's ROI, frame-ROI sized
    samples: list[ScorePair] = field(default_factory=list)
    auroc_before: float | None = None  # good vs defect samples: how well the prompts separate them
    auroc_after: float | None = None
    seconds: float = 0.0
    sample_features: Features | None = field(default=None, repr=False)  # reused by the next preview


def auroc(good: np.ndarray, bad: np.ndarray) -> float | None:
    """P(score of a defect > score of a good part); None without both."""
    if not len(good) or not len(bad):
        return None
    g, b = np.asarray(good, float)[:, None], np.asarray(bad, float)[None, :]
    return float(((b > g).sum() + 0.5 * (b == g).sum()) / (g.size * b.size))


def _sample_items(samples: FewShotSet | None) -> list[tuple[np.ndarray, str, str]]:
    """(image, file name, kind) of every sample, in FewShotSet order."""
    if samples is None:
        return []
    items = [(img, path.name, GOOD) for img, path in zip(samples.good, samples.good_paths)]
    defect_imgs = [(name, img) for name, imgs in samples.defects.items() for img in imgs]
    items += [(img, path.name, name) for (name, img), path in zip(defect_imgs, samples.defect_paths)]
    return items


def encode_samples(inspector: Inspector, samples: FewShotSet | None) -> Features | None:
    """Features of the few-shot samples (cache them: previews then only encode the current frame)."""
    items = _sample_items(samples)
    return inspector.encode([img for img, _, _ in items]) if items else None


def preview_prompts(inspector: Inspector, preview: Inspector, frame: np.ndarray | None,
                    samples: FewShotSet | None, sample_features: Features | None = None) -> PromptPreview:
    """Zero-shot scores of the frame and the samples, with the live prompts and with ``preview``'s.

    ``preview`` is an unfitted engine built from the draft (``StationHandle.build_engine``); both heads
    read the same features (one backbone pass per image, the samples' from ``sample_features`` when
    given) and the live temperature, so the difference is the prompts' alone.
    """
    t0 = time.perf_counter()
    preview.zero_shot.set_temperature(inspector.zero_shot.temperature)
    items = _sample_items(samples)
    if items and sample_features is None:
        sample_features = encode_samples(inspector, samples)
    parts = []
    meta: list[tuple[str, str]] = []
    if frame is not None:
        parts.append(inspector.encode([frame]))
        meta.append(("current frame", "frame"))
    if sample_features is not None:
        parts.append(sample_features)
        meta += [(name, kind) for _, name, kind in items]
    if not parts:
        return PromptPreview(None, None, seconds=time.perf_counter() - t0)
    feats = Features.cat(parts)
    with torch.inference_mode():
        old = inspector.zero_shot(feats)
        new = preview.zero_shot(feats)
    names = preview.zero_shot.defect_names
    pairs = []
    for i, (label, kind) in enumerate(meta):
        defect = None
        if new.class_probs is not None and names:
            defect = names[int(torch.argmax(new.class_probs[i]))]
        pairs.append(ScorePair(label, kind, float(old.score[i]), float(new.score[i]), defect))
    frame_pair = pairs.pop(0) if frame is not None else None
    frame_map = None
    if frame is not None and new.map is not None:
        _x, _y, w, h = inspector.line.roi or (0, 0, frame.shape[1], frame.shape[0])
        frame_map = cv2.resize(new.map[0].float().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
    good_b = np.array([p.before for p in pairs if p.kind == GOOD])
    good_a = np.array([p.after for p in pairs if p.kind == GOOD])
    bad_b = np.array([p.before for p in pairs if p.kind != GOOD])
    bad_a = np.array([p.after for p in pairs if p.kind != GOOD])
    return PromptPreview(frame_pair, frame_map, pairs, auroc(good_b, bad_b), auroc(good_a, bad_a),
                         time.perf_counter() - t0, sample_features)


# ---------------------------------------------------------------------------------- threshold
@dataclass(frozen=True)
class ThresholdEstimate:
    threshold: float
    false_reject: float | None  # fraction of held-out good samples at or above the threshold (NG)
    escape: float | None  # fraction of defect samples below it (OK)
    n_good: int
    n_defect: int


def threshold_estimate(good: np.ndarray, defect: np.ndarray, threshold: float) -> ThresholdEstimate:
    """False-reject and escape rates on the stored samples' held-out fused scores (NG = score >= threshold)."""
    good, defect = np.asarray(good, float), np.asarray(defect, float)
    fr = float(np.mean(good >= threshold)) if good.size else None
    esc = float(np.mean(defect < threshold)) if defect.size else None
    return ThresholdEstimate(float(threshold), fr, esc, int(good.size), int(defect.size))


def slider_range(good: np.ndarray, defect: np.ndarray, threshold: float) -> tuple[float, float]:
    """A range that shows every sample score and the current threshold, with a margin."""
    values = np.concatenate([np.asarray(good, float), np.asarray(defect, float), [threshold]])
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.15, 1e-3, abs(threshold) * 0.05)
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------- few-shot samples
@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # "good" or the defect class


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SampleStore:
    """A line's few-shot folder: ``good/*.png`` and ``defect/<class>/*.png``.

    Deleting moves a file to ``.deleted/`` (the fit never reads it), so a wrong click can be undone by hand.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def dir_for(self, label: str) -> Path:
        if label == GOOD:
            return self.folder / GOOD
        if not label or _SAFE.search(label) or label.startswith("."):
            msg = f"defect class {label!r} must be 1-64 of [A-Za-z0-9_.-]"
            raise ValueError(msg)
        return self.folder / "defect" / label

    def samples(self) -> list[Sample]:
        files = walk_fewshot(self.folder)
        return [Sample(p, GOOD) for p in files.good] + [
            Sample(p, name) for name, paths in files.defects.items() for p in paths]

    def add(self, image: np.ndarray, label: str, part_id: str = "") -> Path:
        """Write an RGB frame as a lossless PNG into the label's folder (atomically); returns its path."""
        folder = self.dir_for(label)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        stem = f"{label}_{stamp}" + (f"_{_SAFE.sub('_', part_id)[:40]}" if part_id else "")
        path = folder / f"{stem}.png"
        k = 1
        while path.exists():
            path = folder / f"{stem}_{k}.png"
            k += 1
        ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        if not ok:
            msg = "PNG encoding of the frame failed"
            raise ValueError(msg)
        fd, tmp = tempfile.mkstemp(prefix=".capture.", suffix=".png", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
        os.replace(tmp, path)
        return path

    def delete(self, path: Path) -> Path:
        """Move a sample to ``.deleted/`` (keeping its relative path); returns where it went."""
        path = Path(path).resolve()
        rel = path.relative_to(self.folder.resolve())
        target = self.folder / ".deleted" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}_{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}")
        shutil.move(str(path), target)
        return target
