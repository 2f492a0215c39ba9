"""The augmented views of each good image in the patch memory: identity, rotations, flips."""

from __future__ import annotations

import torch
from torch import Tensor

VIEWS = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip")


def make_views(batch: Tensor, augment: bool) -> Tensor:
    """[K, 3, H, W] -> [K * V, 3, H, W], image-major (all views of image 0 first); rotations only when square."""
    if not augment:
        return batch
    square = batch.shape[-1] == batch.shape[-2]
    views = [batch]
    if square:
        views += [torch.rot90(batch, k, dims=(-2, -1)) for k in (1, 2, 3)]
    views += [torch.flip(batch, dims=(-1,)), torch.flip(batch, dims=(-2,))]
    return torch.stack(views, dim=1).flatten(0, 1)
