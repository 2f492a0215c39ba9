"""Mutual scoring (MuSc, Li et al. ICLR 2024): a part judged by the line's other unlabelled parts.

Each patch of a part is compared with every other buffered part: its distance to that part is
``1 - max cosine similarity`` to the part's patch tokens (the reference head's measure, per layer,
averaged over layers). Over the buffered parts these distances are sorted and the mean of the
closest ``interval`` fraction is the patch's score (MuSc's interval mean over the 0-30 % nearest):
a normal patch finds its like in most parts, a defect shared by a few parts still stands out
because the closest 30 % are mostly good ones. The image score is the mean of the top ``top``
fraction (1 %) of the patch map, which is steadier than the single peak.

Pure tensor maths: the bank of buffered parts is given as ``layer -> [P, M, D]`` tokens (float16
kept, float32 computed; each part a coreset of ``M`` of its patch tokens, see :func:`part_coreset`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.heads.base import FittedModule, HeadOutput
from inspector.heads.references import aggregate_patches, greedy_coreset, top_mean

#: MuSc's interval: the mean over the closest 0-30 % of the other parts.
DEFAULT_INTERVAL = 0.3
#: Image score: the mean of the top 1 % of the patch map.
DEFAULT_TOP = 0.01

Bank = dict[int, Tensor]  # layer -> [P, M, D] unit-length tokens of P buffered parts


def interval_count(n_parts: int, interval: float) -> int:
    """How many of ``n_parts`` nearest parts the interval mean averages: max(1, floor(interval * n))."""
    return max(1, math.floor(interval * n_parts + 1e-9))


def interval_mean(distances: Tensor, interval: float = DEFAULT_INTERVAL) -> Tensor:
    """[..., P] distances to P parts -> [...]: mean of the ``interval`` fraction of smallest ones."""
    k = interval_count(distances.shape[-1], interval)
    return distances.topk(k, dim=-1, largest=False).values.mean(dim=-1)


def part_distances(queries: Tensor, parts: Tensor, chunk: int = 16) -> Tensor:
    """[B, N, D] query patches, [P, M, D] part tokens -> [B, N, P]: 1 - max cosine similarity per part.

    One matrix product per chunk of parts (float32: half-precision products are slow on CPUs).
    """
    b, n, d = queries.shape
    q = queries.reshape(b * n, d).float()
    out = torch.empty(b * n, parts.shape[0], dtype=torch.float32, device=queries.device)
    for start in range(0, parts.shape[0], chunk):
        block = parts[start : start + chunk].to(q)  # [c, M, D]
        c, m, _ = block.shape
        sims = q @ block.reshape(c * m, d).T  # [BN, c*M]
        out[:, start : start + c] = 1.0 - sims.reshape(b * n, c, m).amax(dim=-1)
    return out.reshape(b, n, parts.shape[0])


def mutual_map(patches: dict[int, Tensor], bank: Bank, interval: float = DEFAULT_INTERVAL,
               select: Tensor | None = None) -> Tensor:
    """[B, N] mutual patch scores of a batch against a bank, averaged over the bank's layers.

    ``select`` (indices into the bank's parts) restricts every query to those parts: the
    evaluation keeps one bank of all test images and scores each against its window.
    """
    total = None
    for layer in sorted(bank):
        parts = bank[layer] if select is None else bank[layer][select]
        if parts.shape[0] < 1:
            msg = "mutual scoring needs at least one other part"
            raise ValueError(msg)
        per_layer = interval_mean(part_distances(patches[layer], parts), interval)
        total = per_layer if total is None else total + per_layer
    if total is None:
        msg = "the mutual bank holds no layer"
        raise ValueError(msg)
    return total / len(bank)


def part_coreset(tokens: Tensor, size: int, seed: int = 0) -> Tensor:
    """[N, D] -> [min(N, size), D] float16: the greedy k-center coreset a buffered part keeps."""
    if tokens.shape[0] <= size:
        return tokens.to(torch.float16)
    return tokens[greedy_coreset(tokens.float(), size, seed=seed)].to(torch.float16)


def held_out_scores(bank: Bank, interval: float = DEFAULT_INTERVAL, top: float = DEFAULT_TOP,
                    max_queries: int = 8) -> tuple[Tensor, Tensor]:
    """Image scores [Q] and flattened maps of the last ``Q = min(max_queries, P)`` buffered parts, each
    scored against the other parts of the bank (the queries are the parts' kept, coreset tokens)."""
    n = next(iter(bank.values())).shape[0]
    if n < 2:
        msg = "held-out mutual scores need at least two buffered parts"
        raise ValueError(msg)
    scores, maps = [], []
    for i in range(max(0, n - max_queries), n):
        others = torch.tensor([j for j in range(n) if j != i])
        m = mutual_map({layer: t[i : i + 1].float() for layer, t in bank.items()}, bank, interval, others)
        scores.append(top_mean(m, top))
        maps.append(m.flatten())
    return torch.cat(scores), torch.cat(maps)


def held_out_stats(bank: Bank, interval: float = DEFAULT_INTERVAL, top: float = DEFAULT_TOP,
                   max_queries: int = 8) -> tuple[tuple[float, float], tuple[float, float]]:
    """(score mean, std), (map mean, std) of the last ``max_queries`` buffered parts, each against the others.

    The fusion standardises the mutual head with them, as it does the reference head with its
    leave-one-out scores. The queries are the parts' kept (coreset) tokens.
    """
    scores, maps = held_out_scores(bank, interval, top, max_queries)
    s, flat = scores.double(), maps.double()
    s_std = float(s.std()) if s.numel() > 1 else 1.0
    return (float(s.mean()), s_std), (float(flat.mean()), float(flat.std()))


class MutualHead(FittedModule):
    """Scores parts against a bank of other parts of the line (installed with :meth:`set_bank`)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, top: float = DEFAULT_TOP, neighbourhood: int = 1) -> None:
        super().__init__()
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            msg = f"neighbourhood must be an odd grid size (1, 3, 5); got {neighbourhood}"
            raise ValueError(msg)
        self.neighbourhood = neighbourhood
        if not 0.0 < interval <= 1.0 or not 0.0 < top <= 1.0:
            msg = f"interval ({interval}) and top ({top}) are fractions in (0, 1]"
            raise ValueError(msg)
        self.interval = interval
        self.top = top
        self.bank: Bank = {}

    @property
    def fitted(self) -> bool:
        return bool(self.bank) and next(iter(self.bank.values())).shape[0] > 0

    @property
    def n_parts(self) -> int:
        return int(next(iter(self.bank.values())).shape[0]) if self.bank else 0

    def set_bank(self, bank: Bank) -> None:
        """Install the buffered parts (layer -> [P, M, D]); an empty dict turns the head off."""
        sizes = {int(t.shape[0]) for t in bank.values()}
        if len(sizes) > 1:
            msg = f"every layer of a mutual bank holds the same parts; got part counts {sorted(sizes)}"
            raise ValueError(msg)
        # Stored float16 by the station; searched in float32 (half products are slow on CPUs),
        # converted once here rather than on every frame.
        self.bank = {k: v.float() if v.device.type == "cpu" else v for k, v in bank.items()}

    def score(self, features: Features, select: Tensor | None = None) -> HeadOutput:
        """Mutual map and top-mean image score of a batch (``select``: see :func:`mutual_map`)."""
        self._require(self.fitted, "no buffered parts")
        missing = set(self.bank) - set(features.patches)
        if missing:
            msg = f"the mutual bank has layers {sorted(missing)} the features lack ({sorted(features.patches)})"
            raise ValueError(msg)
        patches = {k: aggregate_patches(v, features.grid, self.neighbourhood) for k, v in features.patches.items()}
        maps = mutual_map(patches, self.bank, self.interval, select)
        return HeadOutput(top_mean(maps, self.top), maps.reshape(-1, *features.grid))

    def forward(self, features: Features) -> HeadOutput:
        return self.score(features)
