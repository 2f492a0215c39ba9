"""The augmented views of the good images in the patch memory."""

from __future__ import annotations

import torch

from inspector.engine.views import make_views


def test_views_are_image_major() -> None:
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = make_views(batch, augment=True)
    assert views.shape[0] == 12
    assert torch.equal(views[0], batch[0]) and torch.equal(views[6], batch[1])
    assert torch.equal(views[1], torch.rot90(batch[0], 1, dims=(-2, -1)))
    assert make_views(batch, augment=False) is batch
