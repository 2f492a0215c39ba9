"""Linear probe on labelled images, initialised from the text classifier.

Classes are ``good`` plus the defect classes. The weights start at ``T * [normal; defects]`` (the
zero-shot classifier) and are fitted with cross-entropy plus a pull back towards that start, so
one example per class moves the classifier only as far as the data supports: 1-shot is no worse
than zero-shot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.heads.base import FittedModule, HeadOutput
from inspector.text.embeddings import TextEmbeddings


class LinearProbeHead(FittedModule):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.empty(0))  # [1 + C, D]
        self.register_buffer("bias", torch.empty(0))  # [1 + C]
        self.class_names: tuple[str, ...] = ()  # defect classes, in column order after "good"

    @property
    def fitted(self) -> bool:
        return self.weight.numel() > 0

    @property
    def defect_names(self) -> tuple[str, ...]:
        return self.class_names

    def setup(
        self,
        text: TextEmbeddings,
        temperature: float,
        embeddings: Tensor,
        labels: list[str | None],
        *,
        pull: float = 1.0,
        steps: int = 100,
    ) -> dict[str, float]:
        """Fit on global embeddings [n, D]; ``labels[i]`` is a defect class or None for good.

        Returns the final loss terms. Classes: every prompt defect plus any defect class seen in
        the data (a class without a text description starts from the generic anomalous prompt).
        """
        names = list(text.defect_names)
        names += sorted({x for x in labels if x is not None and x not in names})
        if not any(x is not None for x in labels):
            msg = "the linear probe needs at least one labelled defect image"
            raise ValueError(msg)
        rows = [text.normal]
        for name in names:
            if name in text.defect_names:
                rows.append(text.defects[text.defect_names.index(name)])
            else:
                rows.append(text.anomalous)
        w0 = temperature * torch.stack(rows).float()
        target = torch.tensor([0 if x is None else 1 + names.index(x) for x in labels])
        x = embeddings.float().clone()  # a normal tensor even if encoded under inference_mode
        weight = w0.clone().requires_grad_(True)
        bias = torch.zeros(len(rows), requires_grad=True)
        scale = w0.pow(2).sum()
        opt = torch.optim.LBFGS([weight, bias], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
        terms: dict[str, float] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            ce = F.cross_entropy(x @ weight.T + bias, target)
            reg = pull * (weight - w0).pow(2).sum() / scale
            loss = ce + reg
            loss.backward()
            terms.update(cross_entropy=float(ce.detach()), pull=float(reg.detach()))
            return loss

        with torch.enable_grad():
            opt.step(closure)
        if not torch.isfinite(weight).all():
            msg = "linear probe diverged (non-finite weights); keeping the zero-shot classifier"
            raise FloatingPointError(msg)
        self.weight = weight.detach()
        self.bias = bias.detach()
        self.class_names = tuple(names)
        return terms

    def forward(self, features: Features) -> HeadOutput:
        self._require(self.fitted, "no labelled defect images")
        x = features.global_emb
        probs = torch.softmax(x @ self.weight.T.to(x) + self.bias.to(x), dim=-1)
        defect = probs[:, 1:]
        class_probs = defect / defect.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return HeadOutput(1.0 - probs[:, 0], None, class_probs)
