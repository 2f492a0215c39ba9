"""Encoded views with their targets: what the heads train and validate on (tensors only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import Features

# A patch counts as defective when at least this fraction of its pixels is in the mask; patches
# touched less are ignored by the patch loss (their label is uncertain).
PATCH_POSITIVE = 0.25


def mask_to_grid(mask: np.ndarray, grid: tuple[int, int]) -> Tensor:
    """Fraction of defect pixels in each patch cell, [rows, cols] float32."""
    t = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
    return F.adaptive_avg_pool2d(t, grid)[0, 0]


@dataclass
class FeatureSet:
    """V encoded views: features, image labels, class indices, patch-grid masks, source groups."""

    features: Features
    labels: Tensor  # [V] 0 good, 1 defect
    classes: Tensor  # [V] 0 normal, 1.. index into the version's classes
    masks: Tensor  # [V, rows, cols] defect fraction per patch (0 where unknown)
    mask_known: Tensor  # [V] bool
    groups: Tensor  # [V] source image of each view
    original: Tensor  # [V] bool: the image itself, not an augmented view
    synthetic: Tensor  # [V] bool: a synthesised defect
    keys: list[str]  # sample key of each view

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def index(self, idx: Any) -> FeatureSet:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return FeatureSet(self.features.index(idx_t), self.labels[idx_t], self.classes[idx_t], self.masks[idx_t],
                          self.mask_known[idx_t], self.groups[idx_t], self.original[idx_t], self.synthetic[idx_t],
                          [self.keys[i] for i in idx_t.tolist()])

    def where(self, keep: Tensor) -> FeatureSet:
        return self.index(torch.nonzero(keep).flatten())

    @property
    def goods(self) -> FeatureSet:
        return self.where(self.labels == 0)

    @staticmethod
    def cat(items: list[FeatureSet]) -> FeatureSet:
        items = [i for i in items if len(i)]
        return FeatureSet(Features.cat([i.features for i in items]), torch.cat([i.labels for i in items]),
                          torch.cat([i.classes for i in items]), torch.cat([i.masks for i in items]),
                          torch.cat([i.mask_known for i in items]), torch.cat([i.groups for i in items]),
                          torch.cat([i.original for i in items]), torch.cat([i.synthetic for i in items]),
                          [k for i in items for k in i.keys])

    def item(self, i: Any, extra: dict[str, Tensor] | None = None, dense: bool = False, patches: bool = True
             ) -> dict[str, Tensor]:
        """One view (or, with an index tensor / slice, a batch) as a flat dict of tensors."""
        f = self.features
        out: dict[str, Tensor] = {"global": f.global_emb[i], "label": self.labels[i], "cls": self.classes[i],
                                  "mask": self.masks[i], "mask_known": self.mask_known[i], "group": self.groups[i]}
        for layer, tokens in f.patches.items() if patches else ():
            out[f"patch_{layer}"] = tokens[i]
        if dense and f.dense is not None:
            out["dense"] = f.dense[i]
        for name, values in (extra or {}).items():
            out[name] = values[i]
        return out


def features_from_batch(batch: dict[str, Tensor], grid: tuple[int, int]) -> Features:
    """The Features view of a collated batch."""
    patches = {int(k.split("_", 1)[1]): v for k, v in batch.items() if k.startswith("patch_")}
    return Features(batch["global"], batch.get("dense"), patches, grid)
