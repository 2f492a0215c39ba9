"""One backbone pass per frame -> global embedding, multi-layer patch tokens, text-aligned dense tokens.

Dense path: in the last transformer block we add a *value-value* self-attention branch
(AnomalyCLIP's DPAM, CLIP Surgery) and, as ClearCLIP showed, drop that branch's residual
connection and feed-forward layer before ``ln_post`` and ``proj``. Ordinary q-k attention in
CLIP's last block attends to a few global "sink" tokens, so projected patch tokens all look
alike and their text similarity is noise; v-v attention makes each token attend to tokens with
similar content, which keeps them local while staying in the joint image-text space. It needs
only the last block's value projection, which the ordinary path computes anyway, so its cost is
one extra (N x N) attention of the last block: no window re-encoding.

DPAM over the last few blocks (``zeroshot.dense: dpam``, AnomalyCLIP / CLIP Surgery's dual path):
the ordinary q-k path runs through every block unchanged (global embedding and reference tokens
stay as they are), and in each of the last ``dense_blocks`` blocks a v-v attention of that block's
input is computed beside it; the dense tokens are the *sum* of these v-v outputs (no residual, no
feed-forward on that path). With one block this is exactly the last-block branch above.
AnomalyCLIP (``DPAM_layer=20``: the last 19 of ViT-L's 24 blocks) also carries the tokens entering
its first v-v block on that path and lets the class token take part; both are left out here, as in
the last-block branch, because the entering tokens are the q-k path's (ClearCLIP: that residual is
what makes projected patch tokens alike).

Resolution: positional embeddings are interpolated (bicubic) once for the configured input
size and kept as a buffer, so a 448 px input sees 4x the patches of a 224 px one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Features:
    """What every head reads: everything comes from the same single forward pass."""

    global_emb: Tensor  # [B, D] L2-normalised image embedding in the joint image-text space
    dense: Tensor | None  # [B, N, D] L2-normalised text-aligned patch tokens (None: non-ViT tower)
    patches: dict[int, Tensor]  # layer -> [B, N, C] L2-normalised patch tokens after ln_post
    grid: tuple[int, int]  # patch grid (rows, cols); N = rows * cols

    @property
    def batch_size(self) -> int:
        return int(self.global_emb.shape[0])

    def index(self, idx: Any) -> Features:
        """A sub-batch (int, slice or index tensor), keeping the batch dimension."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Features(
            global_emb=self.global_emb[idx],
            dense=None if self.dense is None else self.dense[idx],
            patches={k: v[idx] for k, v in self.patches.items()},
            grid=self.grid,
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Features:
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return Features(
            global_emb=move(self.global_emb),
            dense=None if self.dense is None else move(self.dense),
            patches={k: move(v) for k, v in self.patches.items()},
            grid=self.grid,
        )

    @staticmethod
    def cat(items: list[Features]) -> Features:
        if not items:
            msg = "Features.cat needs at least one item"
            raise ValueError(msg)
        first = items[0]
        return Features(
            global_emb=torch.cat([f.global_emb for f in items]),
            dense=None if first.dense is None else torch.cat([f.dense for f in items]),  # type: ignore[misc]
            patches={k: torch.cat([f.patches[k] for f in items]) for k in first.patches},
            grid=first.grid,
        )


def interpolate_pos_embed(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Resize a ViT positional embedding [1 + H*W, C] (class token first) to a new patch grid."""
    if old_grid == new_grid:
        return pos
    cls_pos, grid_pos = pos[:1], pos[1:]
    channels = grid_pos.shape[-1]
    grid_pos = grid_pos.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid_pos = grid_pos.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], channels).to(pos.dtype)
    return torch.cat([cls_pos, grid_pos])


def supports_dense(visual: nn.Module) -> bool:
    """True for open_clip ViT towers whose blocks use nn.MultiheadAttention (all CLIP ViT configs)."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    return (
        blocks is not None
        and hasattr(visual, "conv1")
        and hasattr(visual, "positional_embedding")
        and getattr(visual.transformer, "batch_first", False)
        and isinstance(getattr(blocks[-1], "attn", None), nn.MultiheadAttention)
    )


def resolve_layers(layers: Sequence[int | float], depth: int, model: str = "this backbone") -> tuple[int, ...]:
    """``model.feature_layers`` -> sorted distinct 0-based block indices of a ``depth``-block tower.

    A fraction f in (0, 1] is block ``floor(f * depth)``, capped at the last block (so 1.0 is the
    last, and [0.5, 0.75] of 12 blocks is 6 and 9); a negative integer counts from the end (-1 is the
    last block); a non-negative integer is an absolute 0-based block.
    """
    out = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, float)):
            msg = f"model.feature_layers: {layer!r} is not a block number or a fraction of the depth"
            raise ValueError(msg)
        if isinstance(layer, float):
            if not 0.0 < layer <= 1.0:
                msg = f"model.feature_layers: fraction {layer} of the depth must lie in (0, 1]"
                raise ValueError(msg)
            # The tiny epsilon keeps 0.29 * 100 at block 29 despite binary rounding (28.999...).
            out.add(min(math.floor(layer * depth + 1e-9), depth - 1))
            continue
        index = depth + layer if layer < 0 else layer
        if not 0 <= index < depth:
            msg = (f"model.feature_layers: block {layer} is out of range for {model}, which has {depth} blocks "
                   f"(0..{depth - 1}, or -1..-{depth} from the end, or fractions in (0, 1])")
            raise ValueError(msg)
        out.add(index)
    return tuple(sorted(out))


def resolve_dense_blocks(blocks: int | float, depth: int, model: str = "this backbone") -> int:
    """``zeroshot.dpam_blocks`` -> a block count: an integer as it is, a fraction f of the depth floor(f * depth)."""
    if isinstance(blocks, bool) or not isinstance(blocks, (int, float)):
        msg = f"zeroshot.dpam_blocks {blocks!r} is neither a block count nor a fraction of the depth"
        raise ValueError(msg)
    if isinstance(blocks, float):
        if not 0.0 < blocks <= 1.0:
            msg = f"zeroshot.dpam_blocks: fraction {blocks} of the depth must lie in (0, 1]"
            raise ValueError(msg)
        return max(1, math.floor(blocks * depth + 1e-9))
    if not 1 <= blocks <= depth:
        msg = (f"zeroshot.dpam_blocks {blocks}: {model} has only {depth} transformer blocks; use 1..{depth} or a "
               "fraction of the depth (0.8 = AnomalyCLIP's choice)")
        raise ValueError(msg)
    return blocks


class DenseFeatureExtractor(nn.Module):
    """Wraps an open_clip visual tower; ``forward(images)`` returns :class:`Features` in one pass.

    ``layers`` (``model.feature_layers``: fractions of the depth, negative or absolute block
    numbers, see :func:`resolve_layers`) pick the blocks whose tokens feed the few-shot reference
    head; ``self.layers`` holds them as 0-based indices. For non-ViT towers (ResNet, timm, ...)
    only the global embedding is produced and ``dense`` and ``patches`` are empty: image-level
    inspection only. ``model`` names the architecture in error messages. ``dense_blocks``: how many
    of the last blocks add a v-v output to the dense tokens (1 = the last-block branch, more = DPAM;
    a fraction of the depth, see :func:`resolve_dense_blocks`); ``self.dense_blocks`` holds the count.
    """

    def __init__(self, visual: nn.Module, image_size: int | None = None, layers: Sequence[int | float] = (),
                 model: str = "this backbone", dense_blocks: int | float = 1) -> None:
        super().__init__()
        self.visual = visual
        self.is_vit = supports_dense(visual)
        self.dense_blocks = 1
        native = visual.image_size if hasattr(visual, "image_size") else (224, 224)
        native = tuple(native) if isinstance(native, (tuple, list)) else (native, native)
        self.image_size: tuple[int, int] = (image_size, image_size) if image_size else native  # type: ignore[assignment]
        if not self.is_vit:
            self.layers: tuple[int, ...] = ()
            self.grid = (1, 1)
            return
        depth = len(visual.transformer.resblocks)
        self.layers = resolve_layers(layers, depth, model)
        self.dense_blocks = resolve_dense_blocks(dense_blocks, depth, model)
        dual = visual.transformer.resblocks[-self.dense_blocks :]
        if not all(isinstance(b.attn, nn.MultiheadAttention) for b in dual):
            msg = (f"zeroshot.dense dpam: the last {self.dense_blocks} blocks of {model} are not standard attention "
                   "blocks; use zeroshot.dense: last_block")
            raise ValueError(msg)
        patch = visual.patch_size if isinstance(visual.patch_size, tuple) else (visual.patch_size,) * 2
        if self.image_size[0] % patch[0] or self.image_size[1] % patch[1]:
            msg = f"model.image_size {self.image_size[0]} must be a multiple of the patch size {patch[0]}"
            raise ValueError(msg)
        self.grid = (self.image_size[0] // patch[0], self.image_size[1] // patch[1])
        old_grid = visual.grid_size if isinstance(visual.grid_size, tuple) else (visual.grid_size,) * 2
        pos = interpolate_pos_embed(visual.positional_embedding.detach(), tuple(old_grid), self.grid)
        self.register_buffer("pos_embed", pos.clone(), persistent=False)

    def forward(self, images: Tensor) -> Features:
        if not self.is_vit:
            emb = self.visual(images)
            if isinstance(emb, tuple):
                emb = emb[0]
            return Features(F.normalize(emb.float(), dim=-1), None, {}, self.grid)
        v = self.visual
        x = v.conv1(images)
        batch = x.shape[0]
        x = x.reshape(batch, x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(batch, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)
        x = v.ln_pre(x)
        blocks = v.transformer.resblocks
        first_dual = len(blocks) - self.dense_blocks
        patches: dict[int, Tensor] = {}
        dense: Tensor | None = None
        for i, block in enumerate(blocks):
            if i < first_dual:
                x = block(x)
            else:  # the ordinary output and, from the same projections, this block's v-v tokens (summed)
                x, vv = self._dual_block(block, x)
                dense = vv if dense is None else dense + vv
            if i in self.layers:
                patches[i] = x[:, 1:]
        assert dense is not None  # dense_blocks >= 1 (checked at construction)
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
            dense = v.ln_post(dense) @ v.proj
        else:
            dense = v.ln_post(dense)
        patches = {k: F.normalize(v.ln_post(t).float(), dim=-1) for k, t in patches.items()}
        return Features(
            global_emb=F.normalize(pooled.float(), dim=-1),
            dense=F.normalize(dense.float(), dim=-1),
            patches=patches,
            grid=self.grid,
        )

    @staticmethod
    def _dual_block(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """A block's ordinary output and, from the same projections, its v-v tokens of the patches."""
        attn: nn.MultiheadAttention = block.attn
        heads = attn.num_heads
        batch, length, width = x.shape
        head_dim = width // heads
        h = block.ln_1(x)
        qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
        q, k, val = (t.reshape(batch, length, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        ordinary = F.scaled_dot_product_attention(q, k, val)
        # v-v path for the patch tokens only: the class token is not part of the dense map.
        vp = val[:, :, 1:]
        vv = F.scaled_dot_product_attention(vp, vp, vp, scale=1.0 / math.sqrt(head_dim))

        def merge(t: Tensor) -> Tensor:
            return attn.out_proj(t.transpose(1, 2).reshape(batch, t.shape[2], width))

        x = x + block.ls_1(merge(ordinary))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return x, merge(vv)
