from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.errors import NotFittedError
from inspector.heads import Fusion, HeadOutput, LinearProbeHead, ZeroShotHead
from inspector.text.embeddings import TextEmbeddings

DIM = 16


def text_embeddings() -> TextEmbeddings:
    gen = torch.Generator().manual_seed(0)
    normal, anomalous = F.normalize(torch.randn(2, DIM, generator=gen), dim=-1)
    defects = F.normalize(torch.randn(2, DIM, generator=gen), dim=-1)
    return TextEmbeddings(normal, anomalous, defects, ("scratch", "dent"))


def toward(vec: torch.Tensor, n: int, noise: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(vec + noise * torch.randn(n, DIM, generator=gen), dim=-1)


def feats(glob: torch.Tensor, dense: torch.Tensor | None = None) -> Features:
    return Features(glob, dense, {}, (2, 2))


def test_zero_shot_scores_and_classes() -> None:
    text = text_embeddings()
    head = ZeroShotHead()
    with pytest.raises(NotFittedError):
        head(feats(toward(text.normal, 1, 0.1, 0)))
    head.setup(text, temperature=100.0)
    good = feats(toward(text.normal, 5, 0.1, 1))
    bad = feats(toward(text.defects[1], 5, 0.1, 2))
    assert head(good).score.max() < head(bad).score.min()
    assert head(bad).class_probs.argmax(dim=1).eq(1).all()  # dent
    dense = torch.stack([text.normal] * 3 + [text.anomalous]).unsqueeze(0)
    out = head(feats(toward(text.normal, 1, 0.0, 3), F.normalize(dense, dim=-1)))
    assert out.map.shape == (1, 2, 2)
    assert out.map[0, 1, 1] > 0.99 and out.map[0, 0, 0] < 0.01


def test_zero_shot_temperature_validation() -> None:
    head = ZeroShotHead()
    head.setup(text_embeddings(), 50.0)
    assert head.temperature == pytest.approx(50.0)
    with pytest.raises(ValueError):
        head.set_temperature(float("nan"))


def test_probe_initialised_from_text_one_shot_no_worse_than_zero_shot() -> None:
    text = text_embeddings()
    zero = ZeroShotHead()
    zero.setup(text, 100.0)
    probe = LinearProbeHead()
    train = torch.cat([toward(text.normal, 1, 0.3, 10), toward(text.defects[0], 1, 0.3, 11),
                       toward(text.defects[1], 1, 0.3, 12)])
    probe.setup(text, 100.0, train, [None, "scratch", "dent"])
    test_good = feats(toward(text.normal, 50, 0.3, 20))
    test_bad = feats(torch.cat([toward(text.defects[0], 25, 0.3, 21), toward(text.defects[1], 25, 0.3, 22)]))
    labels = torch.tensor([0] * 25 + [1] * 25)

    def accuracy(head) -> float:
        ok = (head(test_good).score < 0.5).float().mean() + (head(test_bad).score >= 0.5).float().mean()
        cls = (head(test_bad).class_probs.argmax(dim=1) == labels).float().mean()
        return float(ok / 2 + cls) / 2

    assert accuracy(probe) >= accuracy(zero) - 0.02
    assert probe.class_names == ("scratch", "dent")


def test_probe_learns_a_class_without_description() -> None:
    text = text_embeddings()
    probe = LinearProbeHead()
    crack = F.normalize(torch.randn(DIM, generator=torch.Generator().manual_seed(5)), dim=-1)
    train = torch.cat([toward(text.normal, 4, 0.1, 1), toward(crack, 4, 0.1, 2)])
    probe.setup(text, 100.0, train, [None] * 4 + ["crack"] * 4)
    out = probe(feats(toward(crack, 10, 0.1, 3)))
    assert probe.class_names[-1] == "crack"
    assert out.class_probs.argmax(dim=1).eq(len(probe.class_names) - 1).all()
    assert out.score.min() > 0.5
    with pytest.raises(ValueError, match="at least one labelled defect"):
        LinearProbeHead().setup(text, 100.0, train[:4], [None] * 4)


def test_fusion_standardises_and_weights() -> None:
    fusion = Fusion()
    fusion.setup({"zero_shot": 1.0, "references": 3.0}, {"zero_shot": (0.2, 0.1), "references": (0.1, 0.05)},
                 {"zero_shot": (0.2, 0.1), "references": (0.1, 0.05)})
    outs = {"zero_shot": HeadOutput(torch.tensor([0.3]), torch.full((1, 2, 2), 0.2)),
            "references": HeadOutput(torch.tensor([0.2]), torch.full((1, 2, 2), 0.2))}
    score, fmap = fusion(outs)
    assert score.item() == pytest.approx((1 * 1.0 + 3 * 2.0) / 4)
    assert fmap[0, 0, 0].item() == pytest.approx((1 * 0.0 + 3 * 2.0) / 4)
    # A head with no output (not fitted) simply drops out of the average.
    assert fusion({"zero_shot": outs["zero_shot"]})[0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown heads"):
        fusion.setup({"colour": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        fusion.setup({"zero_shot": 0.0})


def test_fusion_std_floor_keeps_constant_heads_finite() -> None:
    fusion = Fusion()
    fusion.setup({"probe": 1.0}, {"probe": (0.0, 0.0)})
    score, _ = fusion({"probe": HeadOutput(torch.tensor([0.5]), None)})
    assert torch.isfinite(score).all() and score.item() == pytest.approx(50.0)
