"""Linear probe on labelled images, initialised from the text classifier and pulled back to it.

Classes are ``good`` plus the defect classes. The weights start at ``W0 = T * [normal; defects]``
(the zero-shot classifier) and are fitted by cross-entropy plus a Gaussian pull back to that start:

    mean CE  +  pull / (n * s) * sum_c ||[W_c - W0_c, b_c]||^2

``n`` is the number of labelled images and ``s`` the zero-shot classifier's contrast norm
(the RMS of ``||W0_c - W0_good||`` over defect rows: logit units per unit embedding). Setting the
gradient to zero gives ``||[W - W0, b]|| <= s * n / pull`` for every temperature: the change
relative to the zero-shot classifier is bounded by the evidence, not by ``T``. With the default
``pull = 20`` one good and one defect image (n = 2) move the classifier by at most 10 % of its
contrast, so a 1-shot probe stays near zero-shot; 16 shots of each (n = 32) may move it 1.6x.
The biases are pulled to 0 the same way. A defect class seen only in the data has no text
description (it starts from the generic anomalous prompt): there is no zero-shot knowledge to keep,
so its row is not pulled back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inspector.backbone.dense import Features
from inspector.heads.base import FittedModule, HeadOutput
from inspector.text.embeddings import TextEmbeddings

#: Default strength of the pull to the zero-shot classifier (see the module docstring).
PULL = 20.0


def zero_shot_classifier(text: TextEmbeddings, temperature: float,
                         labels: list[str | None]) -> tuple[Tensor, tuple[str, ...], Tensor]:
    """The probe's start: weights ``W0`` [1 + C, D], defect class names, and which rows have a text prior.

    Classes: every prompt defect plus any defect class seen in ``labels`` (in sorted order).
    """
    names = list(text.defect_names)
    names += sorted({x for x in labels if x is not None and x not in names})
    rows = [text.normal]
    described = [True]
    for name in names:
        if name in text.defect_names:
            rows.append(text.defects[text.defect_names.index(name)])
            described.append(True)
        else:
            rows.append(text.anomalous)
            described.append(False)
    w0 = temperature * torch.stack(rows).float()
    return w0, tuple(names), torch.tensor(described)


def _contrast_norm(w0: Tensor) -> Tensor:
    """RMS of ||W0_c - W0_good|| over defect rows; a tiny floor keeps identical prompts finite."""
    s = (w0[1:] - w0[:1]).pow(2).sum(dim=-1).mean().sqrt()
    return s.clamp_min(1e-6 * float(w0[0].norm()) + 1e-12)


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
        pull: float = PULL,
        steps: int = 100,
    ) -> dict[str, float]:
        """Fit on global embeddings [n, D]; ``labels[i]`` is a defect class or None for good.

        Returns the final loss terms and ``shift``: ``||[W - W0, b]|| / s`` over the rows with a
        text prior (at most ``n / pull``). ``pull = 0`` fits without a prior (not bounded).
        """
        if not any(x is not None for x in labels):
            msg = "the linear probe needs at least one labelled defect image"
            raise ValueError(msg)
        if pull < 0:
            msg = f"probe pull must be >= 0, got {pull}"
            raise ValueError(msg)
        w0, names, described = zero_shot_classifier(text, temperature, labels)
        target = torch.tensor([0 if x is None else 1 + names.index(x) for x in labels])
        x = embeddings.float().clone()  # a normal tensor even if encoded under inference_mode
        weight = w0.clone().requires_grad_(True)
        bias = torch.zeros(len(names) + 1, requires_grad=True)
        # Per-row strength: rows without a text description have no zero-shot prior to keep.
        strength = pull / (len(labels) * _contrast_norm(w0)) * described.float()
        opt = torch.optim.LBFGS([weight, bias], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
        terms: dict[str, float] = {}

        def closure() -> Tensor:
            opt.zero_grad()
            ce = F.cross_entropy(x @ weight.T + bias, target)
            reg = (strength * ((weight - w0).pow(2).sum(dim=-1) + bias.pow(2))).sum()
            loss = ce + reg
            loss.backward()
            terms.update(cross_entropy=float(ce.detach()), pull=float(reg.detach()))
            return loss

        with torch.enable_grad():
            opt.step(closure)
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            msg = "linear probe diverged (non-finite weights); keeping the zero-shot classifier"
            raise FloatingPointError(msg)
        change = torch.cat([weight.detach() - w0, bias.detach().unsqueeze(1)], dim=1)[described]
        terms["shift"] = float(change.norm() / _contrast_norm(w0))
        self.weight = weight.detach()
        self.bias = bias.detach()
        self.class_names = names
        return terms

    def forward(self, features: Features) -> HeadOutput:
        self._require(self.fitted, "no labelled defect images")
        x = features.global_emb
        probs = torch.softmax(x @ self.weight.T.to(x) + self.bias.to(x), dim=-1)
        defect = probs[:, 1:]
        mass = defect.sum(dim=-1)
        class_probs = defect / mass.unsqueeze(-1).clamp_min(1e-12)
        # The defect mass, not 1 - p(good): near-certain good parts keep distinct scores (no ties at 0).
        return HeadOutput(mass, None, class_probs)
