"""Prompt vocabulary and ensembles (pure: strings in, strings out).

The compositional ensemble follows WinCLIP (Jeong et al., CVPR 2023): state words x templates,
averaged per class in embedding space. On top come the line's own named defect descriptions and
domain templates ("an X-ray image of {}.").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from inspector.config import PromptSpec

# WinCLIP's template list (the paper's supplementary, minus duplicates).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


@dataclass(frozen=True)
class PromptSet:
    """All prompt texts of a line, grouped by what they describe."""

    normal: tuple[str, ...]
    anomalous: tuple[str, ...]
    defects: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def defect_names(self) -> tuple[str, ...]:
        return tuple(self.defects)

    def all_texts(self) -> list[str]:
        texts = [*self.normal, *self.anomalous]
        for items in self.defects.values():
            texts.extend(items)
        return texts

    def digest(self, model_key: str) -> str:
        """Cache key of the text embeddings: model identity + every prompt text, in order."""
        blob = json.dumps([model_key, self.normal, self.anomalous, self.defects], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def defect_phrase(object_name: str, description: str) -> str:
    """Turn a defect description into a noun phrase about the object.

    ``"a scratch on the rim"`` -> ``"ring with a scratch on the rim"``; a description that already
    names the object or holds a ``{}`` placeholder for it is used as written.
    """
    description = description.strip().rstrip(".")
    if "{}" in description:
        return description.replace("{}", object_name)
    if object_name.lower() in description.lower():
        return description
    return f"{object_name} with {description}"


def _apply(templates: tuple[str, ...], phrases: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for phrase in phrases:
        for template in templates:
            seen.setdefault(template.replace("{}", phrase), None)
    return tuple(seen)


def build_prompt_set(object_name: str, spec: PromptSpec) -> PromptSet:
    """Expand state words x templates (+ domain templates) and the named defect descriptions."""
    object_name = object_name.strip()
    templates = tuple(spec.templates) if spec.templates is not None else DEFAULT_TEMPLATES
    templates = templates + tuple(spec.domain_templates)
    normal_phrases = [s.replace("{}", object_name) for s in spec.normal_states]
    anomalous_phrases = [s.replace("{}", object_name) for s in spec.anomalous_states]
    defects = {
        name: _apply(templates, [defect_phrase(object_name, text)]) for name, text in spec.defects.items()
    }
    anomalous = _apply(templates, anomalous_phrases)
    # Named defects are anomalous states too: they sharpen the generic anomalous class.
    anomalous = anomalous + tuple(t for items in defects.values() for t in items if t not in anomalous)
    return PromptSet(normal=_apply(templates, normal_phrases), anomalous=anomalous, defects=defects)
