"""The query of a CLIP search of the audit log (:func:`inspector.audit.history.rank` ranks by it).

A query is a phrase ("scratch near the hole", through the text encoder) or an example image (through
the image encoder, the line's ROI applied); both land in the space of the global embeddings the
station stores with every record, and only records of the same backbone (:func:`record_model`) are
comparable.
"""

from __future__ import annotations

import numpy as np

from inspector.engine import Inspector


def query_embedding(inspector: Inspector, query: str | np.ndarray) -> np.ndarray:
    """Unit-length float32 [D] CLIP embedding of a phrase (``str``) or an RGB example image."""
    if isinstance(query, str):
        return inspector.embed_text([query])[0]
    return inspector.embed_images([query])[0]


def record_model(inspector: Inspector) -> str:
    """The ``model`` field the station writes into the audit records of this engine's parts."""
    return inspector.backbone.identity.label()
