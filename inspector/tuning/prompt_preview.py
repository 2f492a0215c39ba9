"""Prompt drafts and their preview: zero-shot scores of the frame and the samples, live prompts vs draft.

The functions take the running line's :class:`~inspector.engine.Inspector` and plain data and return
plain data, so the prompt panel only renders and the tests call the maths directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from inspector.backbone.dense import Features
from inspector.config import LineConfig
from inspector.engine import FewShotSet, Inspector
from inspector.engine.fewshot import GOOD
from inspector.evaluation.metrics import image_auroc


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
    """P(score of a defect > score of a good part), ties one half; None without both."""
    if not len(good) or not len(bad):
        return None
    return image_auroc(np.r_[np.zeros(len(good)), np.ones(len(bad))], np.r_[good, bad])


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
