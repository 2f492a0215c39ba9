"""Few-shot normal references: multi-layer patch-token memory and nearest-neighbour distance maps.

Each configured layer keeps a memory of patch tokens from the good images (and their rotations /
flips). A test patch's anomaly is ``1 - max cosine similarity`` to that memory, averaged over
layers; the image score is the map's peak (PatchCore). A greedy k-center coreset bounds the
memory so search cost stays flat as shots grow; search is one matrix product per layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.heads.base import FittedModule, HeadOutput


def greedy_coreset(tokens: Tensor, size: int, seed: int = 0, proj_dim: int = 128) -> Tensor:
    """Indices of ``size`` rows chosen by greedy k-center (PatchCore) on a random projection."""
    n = tokens.shape[0]
    if n <= size:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    x = tokens.float()
    if x.shape[1] > proj_dim:
        proj = torch.randn(x.shape[1], proj_dim, generator=gen) / proj_dim**0.5
        x = x @ proj.to(x)
    chosen = torch.empty(size, dtype=torch.long)
    sq = x.pow(2).sum(dim=1)
    idx = int(torch.randint(n, (1,), generator=gen))
    # Squared distances through one mat-vec per step: ||a||^2 - 2 a.b + ||b||^2.
    min_dist = sq - 2.0 * (x @ x[idx]) + sq[idx]
    chosen[0] = idx
    for i in range(1, size):
        idx = int(torch.argmax(min_dist))
        chosen[i] = idx
        torch.minimum(min_dist, sq - 2.0 * (x @ x[idx]) + sq[idx], out=min_dist)
    return chosen


def nearest_similarity(queries: Tensor, memory: Tensor, chunk: int = 8192) -> Tensor:
    """Max cosine similarity of each query row to the memory rows (both L2-normalised)."""
    if memory.shape[0] <= chunk:
        return (queries @ memory.T).amax(dim=-1)
    best = torch.full(queries.shape[:-1], -2.0, dtype=queries.dtype, device=queries.device)
    for start in range(0, memory.shape[0], chunk):
        best = torch.maximum(best, (queries @ memory[start : start + chunk].T).amax(dim=-1))
    return best


def top_mean(maps: Tensor, top: float = 0.01) -> Tensor:
    """[B, N] patch map -> [B]: mean of its top ``top`` fraction (at least one patch)."""
    k = max(1, math.ceil(top * maps.shape[-1] - 1e-9))
    return maps.topk(k, dim=-1).values.mean(dim=-1)


def aggregate_patches(patches: Tensor, grid: tuple[int, int], size: int) -> Tensor:
    """[B, N, D] unit tokens -> the mean over each token's ``size`` x ``size`` grid neighbourhood, unit length.

    PatchCore's local aggregation (MuSc's r): a patch is described with its surroundings, so a
    small defect changes several neighbouring descriptors and texture noise averages out.
    Border tokens average over the neighbours that exist (no zero padding).
    """
    if size == 1:
        return patches
    b, n, d = patches.shape
    x = patches.float().transpose(1, 2).reshape(b, d, *grid)
    x = F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)
    return F.normalize(x.reshape(b, d, n).transpose(1, 2), dim=-1).to(patches.dtype)


#: Image scores of the reference head: the map's peak (PatchCore) or the mean of its top 1 %.
IMAGE_SCORES = ("max", "top1")


class ReferenceHead(FittedModule):
    """Nearest-neighbour patch distance to a memory of good parts, per layer, averaged."""

    def __init__(self, neighbourhood: int = 1, image_score: str = "max") -> None:
        super().__init__()
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            msg = f"neighbourhood must be an odd grid size (1, 3, 5); got {neighbourhood}"
            raise ValueError(msg)
        if image_score not in IMAGE_SCORES:
            msg = f"image_score must be one of {IMAGE_SCORES}; got {image_score!r}"
            raise ValueError(msg)
        self.neighbourhood = neighbourhood
        self.image_score = image_score
        self.layers: tuple[int, ...] = ()
        self.register_buffer("shots", torch.tensor(0))

    def _view(self, features: Features) -> Features:
        """The features the memory holds and searches: patch tokens aggregated over the neighbourhood."""
        if self.neighbourhood == 1:
            return features
        patches = {k: aggregate_patches(v, features.grid, self.neighbourhood) for k, v in features.patches.items()}
        return Features(features.global_emb, features.dense, patches, features.grid)

    def _score(self, maps: Tensor) -> Tensor:
        return maps.amax(dim=1) if self.image_score == "max" else top_mean(maps, 0.01)

    @property
    def fitted(self) -> bool:
        return bool(self.layers)

    def memory(self, layer: int) -> Tensor:
        return getattr(self, f"memory_{layer}")

    def setup(self, features: Features, coreset_size: int, seed: int = 0, shots: int = 0,
              groups: Tensor | None = None) -> None:
        """Fill the memory from good-image features (all views), coreset-subsampled per layer.

        The coreset serves the production search only; held-out statistics come from
        :meth:`leave_one_out` on the full token set. ``groups`` (source image of each view) is
        accepted for callers that pass it; the memory does not need it.
        """
        del groups
        features = self._view(features)
        if not features.patches:
            msg = "the few-shot reference head needs patch tokens; this backbone gives image-level features only"
            raise ValueError(msg)
        self.layers = tuple(sorted(features.patches))
        for layer in self.layers:
            tokens = features.patches[layer].reshape(-1, features.patches[layer].shape[-1])
            keep = greedy_coreset(tokens, coreset_size, seed=seed + layer)
            self.register_buffer(f"memory_{layer}", tokens[keep].contiguous())
        self.shots = torch.tensor(shots)

    def load_memory(self, memories: dict[int, Tensor], shots: int) -> None:
        """Install memories saved from a fitted head (layer -> [M, D]); ``leave_one_out`` needs ``setup``."""
        for layer in self.layers:
            delattr(self, f"memory_{layer}")
        self.layers = tuple(sorted(memories))
        for layer in self.layers:
            self.register_buffer(f"memory_{layer}", memories[layer])
        self.shots = torch.tensor(shots)

    def distance_map(self, features: Features, memories: dict[int, Tensor] | None = None) -> Tensor:
        """[B, N] mean over layers of 1 - max cosine similarity to the memory."""
        self._require(self.fitted, "no reference images")
        features = self._view(features)
        total = None
        for layer in self.layers:
            mem = (memories or {}).get(layer, self.memory(layer))
            q = features.patches[layer]
            d = 1.0 - nearest_similarity(q, mem.to(q))
            total = d if total is None else total + d
        return total / len(self.layers)  # type: ignore[operator]

    def forward(self, features: Features) -> HeadOutput:
        dist = self.distance_map(features)
        return HeadOutput(self._score(dist), dist.reshape(-1, *features.grid))

    @torch.inference_mode()
    def leave_one_out(self, features: Features, groups: Tensor, queries: Tensor | None = None,
                      extrapolate: bool = True) -> HeadOutput:
        """Held-out scores of the views ``queries`` (rows of ``features``, default all), on the FULL memory.

        ``features`` are the good views given to :meth:`setup` and ``groups`` their source image.
        Each query is scored against every token of the other groups, not against the coreset:
        removing an image from a coreset also removes the only representative of its regions and
        the held-out score runs high (0.588 vs 0.486 on fresh parts in issue #12; 0.478 vs 0.478
        on the full memory).

        A held-out view sees K-1 references while the station searches K, so raw leave-one-out
        scores still run a little high. With ``extrapolate`` and three or more groups we also score
        each query with one more group left out and extrapolate the per-patch distance from K-2 and
        K-1 references to K: nearest-neighbour distance in a d-dimensional memory of n samples falls
        like n^(-1/d), so successive gains shrink by (K-2)/(K-1) for the large d of CLIP tokens.
        Groups must be independent parts for that; the 1-shot path (views as groups) turns it off.
        """
        self._require(self.fitted, "leave_one_out needs a fitted memory")
        features = self._view(features)
        queries = torch.arange(features.batch_size) if queries is None else queries
        unique, member = groups.unique(return_inverse=True)
        k = len(unique)
        if k < 2:
            msg = "leave-one-out needs at least two reference groups"
            raise ValueError(msg)
        n_tokens = features.patches[self.layers[0]].shape[1]
        q_member = member[queries]
        # partner[g]: the extra group left out for the K-2 score (the next one, cyclically).
        partner = (torch.arange(k) + 1) % k
        dist_one = torch.zeros(len(queries), n_tokens)
        dist_two = torch.zeros(len(queries), n_tokens)
        use_two = extrapolate and k >= 3
        for layer in self.layers:
            per_group = _group_max_similarity(features.patches[layer], member, k, queries)  # [Q, N, k]
            own = F.one_hot(q_member, k).bool()[:, None, :]
            sim_one = per_group.masked_fill(own, -2.0).amax(dim=-1)
            dist_one += 1.0 - sim_one
            if use_two:
                out = own | F.one_hot(partner[q_member], k).bool()[:, None, :]
                dist_two += 1.0 - per_group.masked_fill(out, -2.0).amax(dim=-1)
        maps = dist_one / len(self.layers)
        if use_two:
            two = dist_two / len(self.layers)
            maps = maps - (k - 2) / (k - 1) * (two - maps)
        return HeadOutput(self._score(maps), maps.reshape(-1, *features.grid))

    @torch.inference_mode()
    def held_out_elsewhere(self, features: Features, coords: Tensor, radius: float) -> HeadOutput:
        """Scores of the views of ONE good image, each patch against the tokens from elsewhere on it.

        The 1-shot stand-in for leave-one-out: with no other part to hold out, a patch is matched
        only to tokens (of every view) whose place on the physical image ``coords`` [V, N, 2] lies
        more than ``radius`` grid cells away, so its own rotated / flipped copies cannot vouch for
        it. Stationary textures and symmetric parts find their like elsewhere, as a fresh part
        would; a unique feature (a keyway) does not, which errs towards a higher threshold.
        """
        self._require(self.fitted, "held_out_elsewhere needs a fitted memory")
        features = self._view(features)
        views, n_tokens = coords.shape[:2]
        place = coords.reshape(-1, 2).float()
        near = torch.cdist(place, place) <= radius  # [V*N, V*N] same-place pairs
        total = torch.zeros(views * n_tokens)
        for layer in self.layers:
            tokens = features.patches[layer].reshape(-1, features.patches[layer].shape[-1]).float()
            sims = (tokens @ tokens.T).masked_fill(near, -2.0)
            total += 1.0 - sims.amax(dim=-1)
        maps = (total / len(self.layers)).reshape(views, n_tokens)
        return HeadOutput(self._score(maps), maps.reshape(-1, *features.grid))


def _group_max_similarity(patches: Tensor, member: Tensor, k: int, queries: Tensor, chunk: int = 4096) -> Tensor:
    """[Q, N, k]: each query patch's best cosine similarity to the tokens of each group (full memory)."""
    q = patches[queries].float()
    n_q, n_tok, dim = q.shape
    flat = q.reshape(-1, dim)
    out = torch.full((flat.shape[0], k), -2.0)
    for g in range(k):
        mem = patches[member == g].reshape(-1, dim).float()
        for start in range(0, flat.shape[0], chunk):
            block = flat[start : start + chunk]
            out[start : start + chunk, g] = (block @ mem.T).amax(dim=-1)
    return out.reshape(n_q, n_tok, k)
