"""Fusion in log-odds units: no saturation, no ties (issue #12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.heads import Fusion, HeadOutput, ZeroShotHead
from tests.heads.test_zero_shot_probe_fusion import text_embeddings


def _at_margins(text, margins: list[float]) -> Features:
    """Unit global embeddings whose anomalous-minus-normal cosine margin is each of ``margins``."""
    n, a = text.normal, text.anomalous
    u = F.normalize(a - n, dim=-1)
    v = F.normalize(a + n, dim=-1)
    span = float(u @ (a - n))  # margin per unit step along u
    rows = []
    for m in margins:
        x = (m / span) * u
        rows.append(x + (1 - x.pow(2).sum()).clamp_min(0).sqrt() * v)
    return Features(torch.stack(rows), None, {}, (1, 1))


def test_zero_shot_scores_do_not_saturate_where_the_softmax_does() -> None:
    text = text_embeddings()
    head = ZeroShotHead()
    head.setup(text, temperature=100.0)
    feats = _at_margins(text, [0.3, 0.5, 0.7])
    cls = torch.stack([text.normal, text.anomalous])
    probs = torch.softmax(100.0 * feats.global_emb @ cls.T, dim=-1)[:, 1]
    assert (probs == 1.0).all()  # the old score: three different parts, one tied value
    scores = head(feats).score
    assert torch.allclose(scores, 100.0 * torch.tensor([0.3, 0.5, 0.7]), atol=1e-3)
    assert torch.allclose(head.probability(scores), probs)
    fusion = Fusion()
    fusion.setup({"zero_shot": 1.0}, {"zero_shot": (0.0, 1.0)})
    fused = fusion({"zero_shot": head(feats)})[0]
    assert fused[0] < fused[1] < fused[2]  # the order survives fusion


def test_unstandardised_fusion_averages_probabilities() -> None:
    """Before any fit (no statistics) the zero-shot log-odds go through the sigmoid: 0.5 still means even odds."""
    fusion = Fusion()
    fusion.setup({"zero_shot": 1.0, "probe": 1.0})
    logits = torch.tensor([-2.0, 0.0, 3.0])
    out = {"zero_shot": HeadOutput(logits, logits.reshape(3, 1, 1)), "probe": HeadOutput(torch.full((3,), 0.5), None)}
    score, fused_map = fusion(out)
    assert torch.allclose(score, (torch.sigmoid(logits) + 0.5) / 2)
    assert torch.allclose(fused_map.flatten(), torch.sigmoid(logits))
