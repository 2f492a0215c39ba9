"""The query of a CLIP search of the audit log (:func:`inspector.audit.history.rank` ranks by it).

A query is a phrase ("scratch near the hole", through the text encoder) or an example image (through
the image encoder, the line's ROI applied); both land in the space of the global embeddings the
station stores with every record, and only records of the same backbone (:func:`record_model`) are
comparable. Without a station (the stand-alone History viewer), :class:`BackboneQuery` loads the
backbone named by the records themselves, alone: no line, no fit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from inspector.backbone.loading import load_backbone
from inspector.backbone.text import encode_text
from inspector.config import ModelSpec
from inspector.engine import Inspector
from inspector.errors import WeightsIntegrityError

_UNTRAINED = " (untrained backbone)"
_LABEL_RE = re.compile(r"^(?P<model>[^/\s]+)/(?P<pretrained>.+?)(?: sha256:(?P<digest>[0-9a-f]+))?$")


def query_embedding(inspector: Inspector, query: str | np.ndarray) -> np.ndarray:
    """Unit-length float32 [D] CLIP embedding of a phrase (``str``) or an RGB example image."""
    if isinstance(query, str):
        return inspector.embed_text([query])[0]
    return inspector.embed_images([query])[0]


def record_model(inspector: Inspector) -> str:
    """The ``model`` field the station writes into the audit records of this engine's parts."""
    return inspector.backbone.identity.label()


def parse_record_model(label: str) -> tuple[str, str, str | None]:
    """(architecture, pretrained, sha256 prefix or None) of a record's ``model`` field (:func:`record_model`)."""
    if label.endswith(_UNTRAINED):
        return label[: -len(_UNTRAINED)], "random", None
    m = _LABEL_RE.match(label.strip())
    if m is None:
        msg = f"cannot tell the backbone from the records' model field {label!r} (expected ARCH/WEIGHTS)"
        raise ValueError(msg)
    return m["model"], m["pretrained"], m["digest"]


class BackboneQuery:
    """Text query embeddings by the backbone that wrote a log's records (``model``: their model field).

    The weights are resolved offline like the station's (``model_dir``: the station's imported weights);
    a missing file raises :class:`~inspector.errors.WeightsNotFoundError` saying what to install, and
    weights other than the records' (their sha256 differs) raise :class:`WeightsIntegrityError`.
    """

    def __init__(self, model: str, model_dir: Path | None = None) -> None:
        name, pretrained, digest = parse_record_model(model)
        self.model = model
        self.backbone = load_backbone(ModelSpec(name=name, pretrained=pretrained, device="cpu"), model_dir)
        sha = self.backbone.identity.sha256
        if digest and sha and not sha.startswith(digest):
            msg = (f"the weights found for {name}/{pretrained} (sha256:{sha[:8]}) are not those the records were "
                   f"made with (sha256:{digest}): their embeddings would not compare")
            raise WeightsIntegrityError(msg)

    def embed_text(self, text: str) -> np.ndarray:
        """Unit-length float32 [D] text embedding (as :meth:`Inspector.embed_text`)."""
        with torch.inference_mode():
            tokens = self.backbone.tokenizer([text]).to(self.backbone.device)
            vec = encode_text(self.backbone.model, tokens).float().cpu().numpy()[0]
        return vec / max(float(np.linalg.norm(vec)), 1e-12)
