"""Text side: encode a line's prompt ensembles once, cache them per (model, prompt set) hash.

Startup and changeover then cost a file read instead of hundreds of text-encoder passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from inspector.text.prompts import PromptSet

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextEmbeddings:
    """Class embeddings of one prompt set (each the renormalised mean of its prompts)."""

    normal: Tensor  # [D]
    anomalous: Tensor  # [D]
    defects: Tensor  # [C, D] (C may be 0)
    defect_names: tuple[str, ...]


def _class_embedding(prompt_embs: Tensor) -> Tensor:
    return F.normalize(F.normalize(prompt_embs.float(), dim=-1).mean(dim=0), dim=-1)


def encode_prompt_set(encode: Callable[[list[str]], Tensor], prompts: PromptSet, batch: int = 64) -> TextEmbeddings:
    """Encode every prompt with ``encode`` (texts -> [n, D]) and average per class."""
    texts = prompts.all_texts()
    with torch.inference_mode():
        embs = torch.cat([encode(texts[i : i + batch]).float().cpu() for i in range(0, len(texts), batch)])
    n_normal, n_anom = len(prompts.normal), len(prompts.anomalous)
    normal = _class_embedding(embs[:n_normal])
    anomalous = _class_embedding(embs[n_normal : n_normal + n_anom])
    rows, start = [], n_normal + n_anom
    for items in prompts.defects.values():
        rows.append(_class_embedding(embs[start : start + len(items)]))
        start += len(items)
    defects = torch.stack(rows) if rows else torch.zeros(0, normal.shape[0])
    return TextEmbeddings(normal, anomalous, defects, prompts.defect_names)


class TextEmbeddingCache:
    """In-memory + on-disk (safetensors) cache keyed by ``PromptSet.digest(model_key)``."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: dict[str, TextEmbeddings] = {}

    def get(self, model_key: str, prompts: PromptSet, encode: Callable[[list[str]], Tensor]) -> TextEmbeddings:
        key = prompts.digest(model_key)
        if key in self._memory:
            return self._memory[key]
        cached = self._load(key, prompts)
        if cached is None:
            cached = encode_prompt_set(encode, prompts)
            self._store(key, cached)
        self._memory[key] = cached
        return cached

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"text-{key}.safetensors"

    def _load(self, key: str, prompts: PromptSet) -> TextEmbeddings | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            t = load_file(str(path))
        except Exception as exc:  # a torn or foreign file is re-encoded, never trusted
            _logger.warning("ignoring unreadable text-embedding cache %s: %s", path, exc)
            return None
        if t["defects"].shape[0] != len(prompts.defects):
            return None
        return TextEmbeddings(t["normal"], t["anomalous"], t["defects"], prompts.defect_names)

    def _store(self, key: str, emb: TextEmbeddings) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file(
                {"normal": emb.normal.contiguous(), "anomalous": emb.anomalous.contiguous(),
                 "defects": emb.defects.contiguous()},
                str(tmp),
            )
            tmp.replace(path)
        except OSError as exc:  # a read-only cache folder costs speed, not correctness
            _logger.warning("cannot write text-embedding cache %s: %s", path, exc)
