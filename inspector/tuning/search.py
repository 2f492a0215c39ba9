"""The query of a CLIP search of the audit log (:func:`inspector.audit.history.rank` ranks by it).

A query is a phrase ("scratch near the hole", through the text encoder) or an example image (through
the image encoder, the line's ROI applied); both land in the space of the global embeddings the
station stores with every record, and only records of the same backbone (:func:`record_model`) are
comparable.
"""

from __future__ import annotations

import numpy as np
import torch

from inspector.backbone.text import encode_text
from inspector.engine import Inspector


def query_embedding(inspector: Inspector, query: str | np.ndarray) -> np.ndarray:
    """Unit-length float32 [D] CLIP embedding of a phrase (``str``) or an RGB example image."""
    # lead: switch to Inspector.embed_text / embed_images at merge
    if isinstance(query, str):
        backbone = inspector.backbone
        with torch.inference_mode():
            tokens = backbone.tokenizer([query]).to(inspector.device)
            vec = encode_text(backbone.model, tokens)[0].float().cpu().numpy()
    else:
        vec = inspector.encode([query]).global_emb[0].float().cpu().numpy()
    return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


def record_model(inspector: Inspector) -> str:
    """The ``model`` field the station writes into the audit records of this engine's parts."""
    return inspector.backbone.identity.label()
