"""Trainable heads on a frozen backbone: pure nn.Modules (no data loading, no trainer).

Each head reads :class:`Features` and returns a :class:`HeadOutput` whose score is a log-odds of
"defect" (higher = more anomalous). Fitted state (memories, caches, class text embeddings) lives
in buffers and trained weights in parameters, so a head round-trips through a safetensors state
dict; ``spec()`` gives the JSON constructor arguments that rebuild the same shapes first.

- :class:`ResidualPatchHead`: per patch token, the residual to its nearest good token (a coreset
  memory of the training goods, per layer) and the distance, fed to a small MLP trained on masks.
  At initialisation it scores like the few-shot reference head; training learns which deviations
  from normal are defects (in-context residual learning, InCTRL-style) and sharpens the map.
- :class:`ClipAdapterHead`: CLIP-Adapter (Gao et al. 2021), a bottleneck MLP blended residually
  into the image embedding, classified against the line's text embeddings.
- :class:`TipAdapterHead`: Tip-Adapter-F (Zhang et al. 2022), a key-value cache of the few-shot
  embeddings added to the zero-shot logits; the keys are fine-tuned.
- :class:`CoOpHead`: the class text embeddings produced by CoOp's learned context (Zhou et al.
  2022). Learning needs the text tower (:class:`PromptLearner`); inference needs only its output.
- :class:`AdapterStack`: the heads of one trained version, standardised and combined into the
  single adapter the engine's fusion sees.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspector.backbone.dense import Features
from inspector.heads.base import HeadOutput
from inspector.heads.references import greedy_coreset

FORMAT = "inspector-adapter/1"
# Standard deviations below this are treated as this (a head constant on good parts must not explode).
STD_FLOOR = 1e-3


def log_odds(logits: Tensor) -> Tensor:
    """log P(any defect class) - log P(normal), from logits with the normal class first."""
    return torch.logsumexp(logits[:, 1:], dim=-1) - logits[:, 0]


def defect_class_probs(logits: Tensor) -> Tensor | None:
    """Probabilities over the defect classes (normal class dropped); None with a single defect class."""
    if logits.shape[1] <= 2:
        return None
    return torch.softmax(logits[:, 1:], dim=-1)


# ------------------------------------------------------------------------------------ patch head
class ResidualPatchHead(nn.Module):
    """Patch anomaly logits from residuals to a memory of good patch tokens (trained on masks)."""

    def __init__(self, layers: Sequence[int], dim: int, memory_size: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = tuple(int(x) for x in layers)
        self.dim = int(dim)
        self.memory_size = int(memory_size)
        self.hidden = int(hidden)
        n = len(self.layers)
        for layer in self.layers:
            self.register_buffer(f"memory_{layer}", torch.zeros(memory_size, dim))
            # Source image of each memory token, for leave-one-out during training only.
            self.register_buffer(f"groups_{layer}", torch.full((memory_size,), -1, dtype=torch.long),
                                 persistent=False)
        self.register_buffer("dist_mean", torch.zeros(n))
        self.register_buffer("dist_std", torch.ones(n))
        self.mlp = nn.Sequential(nn.Linear(n * dim + n, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)  # starts as the plain distance score
        nn.init.zeros_(self.mlp[2].bias)
        self.gain = nn.Parameter(torch.tensor(1.0))
        self.offset = nn.Parameter(torch.tensor(-3.0))

    def spec(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "dim": self.dim, "memory_size": self.memory_size, "hidden": self.hidden}

    def memory(self, layer: int) -> Tensor:
        return getattr(self, f"memory_{layer}")

    @torch.no_grad()
    def setup(self, good: Features, groups: Tensor, seed: int = 0) -> None:
        """Fill the memory from good training features (coreset per layer) and the distance statistics.

        ``groups`` names the source image of every good view (leave-one-out needs it).
        """
        n_tokens = good.patches[self.layers[0]].shape[1]
        token_groups = groups.repeat_interleave(n_tokens)
        for layer in self.layers:
            tokens = good.patches[layer].reshape(-1, self.dim).float()
            keep = greedy_coreset(tokens, self.memory_size, seed=seed + layer)
            memory = torch.zeros(self.memory_size, self.dim)
            group = torch.full((self.memory_size,), -1, dtype=torch.long)
            memory[: len(keep)] = tokens[keep]
            group[: len(keep)] = token_groups[keep]
            if len(keep) < self.memory_size:  # pad with copies: a duplicate never changes a nearest neighbour
                memory[len(keep) :] = tokens[keep[0]]
                group[len(keep) :] = token_groups[keep[0]]
            setattr(self, f"memory_{layer}", memory)
            setattr(self, f"groups_{layer}", group)
        _, dist = self.neighbours(good, groups)
        self.dist_mean = dist.mean(dim=(0, 1))
        self.dist_std = dist.std(dim=(0, 1)).clamp_min(STD_FLOOR)

    @torch.no_grad()
    def neighbours(self, features: Features, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Nearest memory token per patch and layer: (indices [B, N, L], cosine distances [B, N, L]).

        ``exclude[b]`` leaves image b's own group out of the memory (leave-one-out; -1 = none).
        """
        idx, dist = [], []
        for layer in self.layers:
            q = features.patches[layer].float()
            mem = self.memory(layer).to(q)
            sim = q @ mem.T
            if exclude is not None:
                own = exclude.to(q.device)[:, None, None] == getattr(self, f"groups_{layer}")[None, None, :]
                sim = sim.masked_fill(own, -2.0)
            best, where = sim.max(dim=-1)
            idx.append(where)
            dist.append(1.0 - best)
        return torch.stack(idx, dim=-1), torch.stack(dist, dim=-1)

    def patch_logits(self, features: Features, nn_idx: Tensor | None = None, nn_dist: Tensor | None = None
                     ) -> Tensor:
        """[B, N] anomaly logits; pass precomputed ``neighbours`` to skip the search (training).

        The MLP's first layer is linear in the residual ``q - m``, so it is applied as
        ``W q - (W M)[nn]``: a large batch projects the memory once instead of gathering and
        concatenating full-width neighbour tokens (a few frames project just their neighbours).
        """
        if nn_idx is None or nn_dist is None:
            nn_idx, nn_dist = self.neighbours(features)
        z = (nn_dist - self.dist_mean) / self.dist_std
        first = self.mlp[0]
        n = len(self.layers)
        h = F.linear(z, first.weight[:, n * self.dim :], first.bias)
        for i, layer in enumerate(self.layers):
            w = first.weight[:, i * self.dim : (i + 1) * self.dim]
            q = features.patches[layer].float()
            mem = self.memory(layer).to(q)
            if q.shape[0] * q.shape[1] >= mem.shape[0]:
                h = h + q @ w.T - (mem @ w.T)[nn_idx[..., i]]
            else:
                h = h + (q - mem[nn_idx[..., i]]) @ w.T
        return self.gain * z.mean(dim=-1) + self.offset + self.mlp[2](self.mlp[1](h))[..., 0]

    def forward(self, features: Features) -> HeadOutput:
        logits = self.patch_logits(features)
        return HeadOutput(logits.amax(dim=1), logits.reshape(-1, *features.grid))


# ------------------------------------------------------------------------------------ global heads
class _TextClassifier(nn.Module):
    """Shared state of the heads that classify the image embedding against class text embeddings."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.n_classes = int(n_classes)
        self.register_buffer("text", torch.zeros(n_classes, dim))  # [C, D], normal class first
        self.register_buffer("log_scale", torch.tensor(math.log(100.0)))

    @torch.no_grad()
    def set_text(self, text: Tensor, scale: float) -> None:
        if text.shape != (self.n_classes, self.dim):
            msg = f"class text embeddings must be [{self.n_classes}, {self.dim}], got {list(text.shape)}"
            raise ValueError(msg)
        self.text = F.normalize(text.float(), dim=-1)
        self.log_scale = torch.tensor(math.log(max(float(scale), 1e-3)))

    def logits(self, features: Features) -> Tensor:
        raise NotImplementedError

    def forward(self, features: Features) -> HeadOutput:
        logits = self.logits(features)
        return HeadOutput(log_odds(logits), None, defect_class_probs(logits))


class ClipAdapterHead(_TextClassifier):
    """CLIP-Adapter: ``x' = ratio * MLP(x) + (1 - ratio) * x`` classified against the text embeddings."""

    def __init__(self, dim: int, n_classes: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__(dim, n_classes)
        self.reduction = int(reduction)
        self.register_buffer("ratio", torch.tensor(float(ratio)))
        hidden = max(1, dim // reduction)
        self.adapter = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, dim, bias=False), nn.ReLU(inplace=True))

    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_classes": self.n_classes, "reduction": self.reduction,
                "ratio": float(self.ratio)}

    def logits(self, features: Features) -> Tensor:
        x = features.global_emb.float()
        x = F.normalize(self.ratio * self.adapter(x) + (1 - self.ratio) * x, dim=-1)
        return self.log_scale.exp() * x @ self.text.T


class TipAdapterHead(_TextClassifier):
    """Tip-Adapter-F: zero-shot logits + ``alpha * exp(-beta (1 - x.K)) V`` with fine-tuned keys K."""

    def __init__(self, dim: int, n_classes: int, n_keys: int, alpha: float = 1.0, beta: float = 5.5) -> None:
        super().__init__(dim, n_classes)
        self.n_keys = int(n_keys)
        self.keys = nn.Parameter(torch.zeros(n_keys, dim))
        self.register_buffer("values", torch.zeros(n_keys, n_classes))
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.register_buffer("beta", torch.tensor(float(beta)))

    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_classes": self.n_classes, "n_keys": self.n_keys, "alpha": float(self.alpha),
                "beta": float(self.beta)}

    @torch.no_grad()
    def set_cache(self, embeddings: Tensor, labels: Tensor) -> None:
        """Keys = the few-shot image embeddings, values = their one-hot classes."""
        if embeddings.shape != (self.n_keys, self.dim):
            msg = f"cache embeddings must be [{self.n_keys}, {self.dim}], got {list(embeddings.shape)}"
            raise ValueError(msg)
        self.keys.copy_(F.normalize(embeddings.float(), dim=-1))
        self.values = F.one_hot(labels.long(), self.n_classes).float()

    def logits(self, features: Features) -> Tensor:
        x = features.global_emb.float()
        zero_shot = self.log_scale.exp() * x @ self.text.T
        affinity = torch.exp(-self.beta * (1.0 - x @ F.normalize(self.keys, dim=-1).T))
        # Cache logits on the zero-shot logits' scale (Tip-Adapter scales them against CLIP's 100).
        return zero_shot + self.alpha * self.log_scale.exp() / 100.0 * affinity @ self.values


class CoOpHead(_TextClassifier):
    """Deployable CoOp: class text embeddings from learned context; dense tokens give the map."""

    def __init__(self, dim: int, n_classes: int, n_ctx: int = 4, width: int = 512) -> None:
        super().__init__(dim, n_classes)
        self.n_ctx = int(n_ctx)
        self.width = int(width)
        self.register_buffer("context", torch.zeros(n_ctx, width))  # the learned vectors, for the record

    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "n_classes": self.n_classes, "n_ctx": self.n_ctx, "width": self.width}

    def logits(self, features: Features) -> Tensor:
        return self.log_scale.exp() * features.global_emb.float() @ self.text.T

    def forward(self, features: Features) -> HeadOutput:
        logits = self.logits(features)
        anomaly_map = None
        if features.dense is not None:
            dense = self.log_scale.exp() * features.dense.float() @ self.text.T  # [B, N, C]
            anomaly_map = (torch.logsumexp(dense[..., 1:], dim=-1) - dense[..., 0]).reshape(-1, *features.grid)
        return HeadOutput(log_odds(logits), anomaly_map, defect_class_probs(logits))


@dataclass
class TextTower:
    """The frozen parts of an open_clip text encoder (kept outside any module's parameters)."""

    token_embedding: nn.Embedding
    positional_embedding: Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: Tensor | nn.Linear | None
    attn_mask: Tensor | None
    pool_type: str
    eos_token_id: int | None

    @classmethod
    def from_clip(cls, model: nn.Module) -> TextTower:
        """The text tower of an open_clip ``CLIP`` model; CoOp needs its token-level pieces."""
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        missing = [n for n in needed if not hasattr(model, n)]
        if missing:
            msg = (f"CoOp needs an open_clip CLIP text tower with {', '.join(needed)}; "
                   f"{type(model).__name__} lacks {', '.join(missing)} (remove 'coop' from training.heads)")
            raise ValueError(msg)
        return cls(model.token_embedding, model.positional_embedding, model.transformer, model.ln_final,
                   getattr(model, "text_projection", None), getattr(model, "attn_mask", None),
                   getattr(model, "text_pool_type", "argmax"), getattr(model, "text_eos_id", None))

    def moved(self, device: torch.device) -> TextTower:
        """A copy on ``device`` (the model the engine runs stays where it is)."""
        import copy

        twin = copy.deepcopy(self)
        for name in ("token_embedding", "transformer", "ln_final"):
            getattr(twin, name).to(device)
        twin.positional_embedding = twin.positional_embedding.to(device)
        if isinstance(twin.text_projection, nn.Linear):
            twin.text_projection.to(device)
        elif twin.text_projection is not None:
            twin.text_projection = twin.text_projection.to(device)
        twin.attn_mask = twin.attn_mask.to(device) if twin.attn_mask is not None else None
        return twin

    def encode_embeddings(self, x: Tensor, token_ids: Tensor) -> Tensor:
        """open_clip ``CLIP.encode_text`` from token embeddings [C, L, W] instead of token ids."""
        from open_clip.transformer import text_global_pool

        cast = self.transformer.get_cast_dtype() if hasattr(self.transformer, "get_cast_dtype") else x.dtype
        n = x.shape[1]  # prompts may be cut after their last end-of-text token (see PromptLearner)
        x = x.to(cast) + self.positional_embedding[:n].to(cast)
        mask = self.attn_mask[:n, :n].to(x.device) if self.attn_mask is not None else None
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)
        x = text_global_pool(x, token_ids, self.pool_type, eos_token_id=self.eos_token_id)
        if self.text_projection is not None:
            x = self.text_projection(x) if isinstance(self.text_projection, nn.Linear) else x @ self.text_projection
        return x


class PromptLearner(nn.Module):
    """CoOp: shared learnable context vectors in front of each class phrase, through the frozen text tower.

    Prompts are tokenised as ``"X X ... X <class phrase>."``; the embeddings of the ``X`` tokens
    are replaced by the context vectors, so gradients reach only them.
    """

    def __init__(self, tower: TextTower, token_ids: Tensor, n_ctx: int, init: Tensor | None = None) -> None:
        super().__init__()
        self.tower = tower  # plain attribute: not a submodule, never in the state dict or the optimiser
        self.n_ctx = int(n_ctx)
        width = tower.token_embedding.weight.shape[1]
        if init is None:
            init = torch.randn(n_ctx, width, generator=torch.Generator().manual_seed(0)) * 0.02
        self.context = nn.Parameter(init.detach().clone().float())
        if tower.attn_mask is not None and tower.pool_type in ("argmax", "eos"):
            # Causal attention: nothing after the end-of-text token reaches it, so the padding up to
            # the context length (77) is dead weight - cutting it makes each step several times cheaper.
            if tower.pool_type == "eos" and tower.eos_token_id is not None:
                ends = (token_ids == tower.eos_token_id).int().argmax(dim=1)
            else:
                ends = token_ids.argmax(dim=1)
            token_ids = token_ids[:, : int(ends.max()) + 1]
        self.register_buffer("token_ids", token_ids.clone(), persistent=False)
        with torch.no_grad():
            emb = tower.token_embedding(token_ids.to(tower.token_embedding.weight.device)).float()
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)  # start-of-text token
        self.register_buffer("suffix", emb[:, 1 + n_ctx :].clone(), persistent=False)  # class phrase, end, padding

    def forward(self) -> Tensor:
        """[C, D] L2-normalised class text embeddings."""
        n = self.token_ids.shape[0]
        ctx = self.context.unsqueeze(0).expand(n, -1, -1).to(self.prefix.dtype)
        x = torch.cat([self.prefix, ctx, self.suffix], dim=1)
        return F.normalize(self.tower.encode_embeddings(x, self.token_ids).float(), dim=-1)


# ------------------------------------------------------------------------------------ the adapter
HEAD_CLASSES: dict[str, type[nn.Module]] = {
    "patch": ResidualPatchHead, "clip_adapter": ClipAdapterHead, "tip_adapter": TipAdapterHead, "coop": CoOpHead}
# Which head's class probabilities name the defect, in order of preference.
_CLASS_SOURCES = ("coop", "clip_adapter", "tip_adapter")


class AdapterStack(nn.Module):
    """The trained heads of one version as the engine's single ``adapter`` head.

    Each head's score (and map) is standardised with its mean / std on held-out good parts and
    the results averaged with the version's head weights; the map comes from the heads that
    have one (the patch head first).
    """

    def __init__(self, specs: dict[str, dict[str, Any]], classes: Sequence[str]) -> None:
        super().__init__()
        unknown = set(specs) - set(HEAD_CLASSES)
        if unknown:
            msg = f"unknown adapter heads {sorted(unknown)}; known: {sorted(HEAD_CLASSES)}"
            raise ValueError(msg)
        self.names = tuple(specs)
        self.classes = tuple(classes)  # "normal" first, then defect classes
        self.heads = nn.ModuleDict({name: HEAD_CLASSES[name](**spec) for name, spec in specs.items()})
        n = len(self.names)
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("score_mean", torch.zeros(n))
        self.register_buffer("score_std", torch.ones(n))
        self.register_buffer("map_mean", torch.zeros(n))
        self.register_buffer("map_std", torch.ones(n))

    def spec(self) -> dict[str, Any]:
        return {"heads": {name: head.spec() for name, head in self.heads.items()},  # type: ignore[operator]
                "classes": list(self.classes)}

    @property
    def defect_names(self) -> tuple[str, ...]:
        return self.classes[1:]

    @torch.no_grad()
    def set_statistics(self, weights: dict[str, float], score_stats: dict[str, tuple[float, float]],
                       map_stats: dict[str, tuple[float, float]] | None = None) -> None:
        for i, name in enumerate(self.names):
            self.weights[i] = float(weights.get(name, 0.0))
            mean, std = score_stats.get(name, (0.0, 1.0))
            self.score_mean[i], self.score_std[i] = mean, max(std, STD_FLOOR)
            mean, std = (map_stats or {}).get(name, (0.0, 1.0))
            self.map_mean[i], self.map_std[i] = mean, max(std, STD_FLOOR)
        if not float(self.weights.sum()) > 0:
            msg = f"adapter head weights {weights} leave no head with a positive weight"
            raise ValueError(msg)

    def head_outputs(self, features: Features) -> dict[str, HeadOutput]:
        return {name: self.heads[name](features) for name in self.names}

    def combine(self, outputs: dict[str, HeadOutput]) -> HeadOutput:
        score = map_sum = None
        total = map_total = 0.0
        for i, name in enumerate(self.names):
            w = float(self.weights[i])
            if w == 0.0:
                continue
            out = outputs[name]
            z = (out.score - self.score_mean[i]) / self.score_std[i]
            score = w * z if score is None else score + w * z
            total += w
            if out.map is not None:
                zm = (out.map - self.map_mean[i]) / self.map_std[i]
                map_sum = w * zm if map_sum is None else map_sum + w * zm
                map_total += w
        assert score is not None  # set_statistics guarantees a positive weight
        class_probs = next((outputs[n].class_probs for n in _CLASS_SOURCES
                            if n in outputs and outputs[n].class_probs is not None), None)
        return HeadOutput(score / total, None if map_sum is None else map_sum / map_total, class_probs)

    def forward(self, features: Features) -> HeadOutput:
        return self.combine(self.head_outputs(features))


def save_adapter(stack: AdapterStack, path: Path, extra: dict[str, str] | None = None) -> None:
    """Write the adapter's state dict with its spec as safetensors metadata (no pickle)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in stack.state_dict().items()}
    metadata = {"format": FORMAT, "spec": json.dumps(stack.spec()), **(extra or {})}
    save_file(state, str(path), metadata=metadata)


def load_adapter(path: Path) -> AdapterStack:
    """Rebuild an adapter from its safetensors file (shapes from the metadata spec, strict load)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if metadata.get("format") != FORMAT:
        msg = f"{path} is not an inspector adapter (format {metadata.get('format')!r}, expected {FORMAT!r})"
        raise ValueError(msg)
    spec = json.loads(metadata["spec"])
    stack = AdapterStack(spec["heads"], spec["classes"])
    stack.load_state_dict(load_file(str(path)), strict=True)
    return stack.eval()


def make_prompt_learner(model: nn.Module, tokenizer: Any, phrases: Sequence[str], n_ctx: int,
                        init_words: str | None = None) -> PromptLearner:
    """A :class:`PromptLearner` for ``phrases`` (normal class first) on an open_clip CLIP model.

    The context starts as the token embeddings of ``init_words`` when it has exactly ``n_ctx``
    tokens (CoOp's "a photo of a"), else as small random vectors.
    """
    tower = TextTower.from_clip(model)
    placeholder = " ".join(["X"] * n_ctx)
    token_ids = tokenizer([f"{placeholder} {p.strip().rstrip('.')}." for p in phrases])
    init = None
    if init_words:
        ids = tokenizer([init_words])[0]
        words = ids[1 : int(ids.argmax())]  # between start-of-text and end-of-text
        if words.numel() == n_ctx:
            with torch.no_grad():
                init = tower.token_embedding(words.to(tower.token_embedding.weight.device)).float().cpu()
    return PromptLearner(tower, token_ids, n_ctx, init)
