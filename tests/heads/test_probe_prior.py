"""The linear probe's pull to the zero-shot classifier binds: 1 shot is no worse than zero-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspector.backbone.dense import Features
from inspector.decision.calibrate import fit_temperature
from inspector.evaluation.metrics import image_auroc
from inspector.heads.probe import PULL, LinearProbeHead, zero_shot_classifier
from inspector.text.embeddings import TextEmbeddings

#: AUROC a 1-shot probe may lose against its zero-shot start (ranking noise of a near-identical classifier).
TOLERANCE = 0.005
DEMO_DEFECTS = {"scratch": "a scratch on the ring surface", "dent": "a dent in the metal surface",
                "chip": "a chipped outer rim", "stain": "a brown stain on the metal"}


def _glob(x: torch.Tensor) -> Features:
    return Features(x, None, {}, (1, 1))


def _zero_shot_scores(text: TextEmbeddings, temperature: float, labels: list[str | None], x: torch.Tensor):
    """Scores of the classifier the probe starts from (W0, no bias): the zero-shot baseline."""
    w0, _, _ = zero_shot_classifier(text, temperature, labels)
    return torch.softmax(x @ w0.T, dim=-1)[:, 1:].sum(dim=-1).numpy()


@pytest.fixture(scope="module")
def synthetic_lines(tiny_backbone):
    """Global embeddings of held-out demo lines: (seed, kind) -> (1 good + 1 defect train, 30 + 30 test)."""
    from inspector.config import LineConfig
    from inspector.demo.parts import PartGenerator
    from inspector.engine import Inspector
    from tests.conftest import tiny_line

    line = LineConfig(**tiny_line(prompts={"defects": DEMO_DEFECTS}))
    engine = Inspector(line, tiny_backbone)
    lines = {}
    n_test = 30
    with torch.no_grad():
        for seed in (0, 1, 2):
            train, test = PartGenerator((128, 128), seed=seed), PartGenerator((128, 128), seed=seed, stream=1)
            good = engine.encode([test.render(i).image for i in range(1, n_test + 1)]).global_emb
            for kind in DEMO_DEFECTS:
                shots = engine.encode([train.render(1).image, train.render(2, kind).image]).global_emb
                bad = engine.encode([test.render(i, kind).image for i in range(n_test + 1, 2 * n_test + 1)])
                lines[seed, kind] = (shots, torch.cat([good, bad.global_emb]))
    return engine.text, engine.temperature, lines


@pytest.mark.slow
@pytest.mark.parametrize("fitted_temperature", [False, True], ids=["model-T", "engine-fitted-T"])
def test_one_shot_probe_no_worse_than_zero_shot_on_synthetic_lines(synthetic_lines, fitted_temperature) -> None:
    text, model_t, lines = synthetic_lines
    labels_test = np.r_[np.zeros(30), np.ones(30)]
    losses = {}
    for (seed, kind), (shots, test) in lines.items():
        temperature = model_t
        if fitted_temperature:  # what the engine does with one good and one defect image
            margins = (shots @ text.anomalous - shots @ text.normal).numpy()
            temperature = fit_temperature(margins, np.array([0.0, 1.0]), init=model_t)
        labels = [None, kind]
        probe = LinearProbeHead()
        probe.setup(text, temperature, shots, labels)
        zero = image_auroc(labels_test, _zero_shot_scores(text, temperature, labels, test))
        one = image_auroc(labels_test, probe(_glob(test)).score.numpy())
        losses[seed, kind] = zero - one
    worst = max(losses, key=losses.get)
    assert losses[worst] <= TOLERANCE, f"1-shot probe lost {losses[worst]:.3f} AUROC on {worst}: {losses}"


def _controlled_line(seed: int, signal: float, rho: float, dim: int = 64):
    """Text prompts whose contrast has cosine ``rho`` with the true defect direction; draw(k, defect) embeds k parts."""
    gen = torch.Generator().manual_seed(seed)
    normal, anomalous, other = F.normalize(torch.randn(3, dim, generator=gen), dim=-1)
    contrast = F.normalize(anomalous - normal, dim=0)
    other = F.normalize(other - (other @ contrast) * contrast, dim=0)
    direction = rho * contrast + (1 - rho**2) ** 0.5 * other
    base = F.normalize(normal + anomalous, dim=0)

    def draw(k: int, defect: bool) -> torch.Tensor:
        noise = 1.2 * torch.randn(k, dim, generator=gen) / dim**0.5
        return F.normalize(base + noise + signal * float(defect) * direction, dim=-1)

    return TextEmbeddings(normal, anomalous, torch.empty(0, dim), ()), draw


@pytest.mark.parametrize("temperature", [1.0, 14.3, 100.0, 1000.0])
def test_shift_bounded_by_evidence_whatever_the_temperature(temperature) -> None:
    text, draw = _controlled_line(0, signal=0.15, rho=0.6)
    text = TextEmbeddings(text.normal, text.anomalous, text.anomalous.unsqueeze(0), ("nick",))
    for shots in (1, 4):
        x = torch.cat([draw(shots, False), draw(shots, True)])
        labels = [None] * shots + ["nick"] * shots
        probe = LinearProbeHead()
        terms = probe.setup(text, temperature, x, labels)
        assert terms["shift"] <= 2 * shots / PULL * 1.05, (shots, terms)
        w0, _, _ = zero_shot_classifier(text, temperature, labels)
        contrast = float((w0[1] - w0[0]).norm())
        # The bias is regularised too: bounded by the same evidence budget.
        assert float(probe.bias.norm()) <= 2 * shots / PULL * contrast * 1.05


def test_one_shot_stays_near_zero_shot_where_old_pull_did_not() -> None:
    """1 good + 1 defect: relative change <= 2 / PULL (10 %); without the pull it moves far."""
    text, draw = _controlled_line(1, signal=0.15, rho=0.6)
    text = TextEmbeddings(text.normal, text.anomalous, text.anomalous.unsqueeze(0), ("nick",))
    x = torch.cat([draw(1, False), draw(1, True)])
    bound = LinearProbeHead().setup(text, 0.5, x, [None, "nick"])
    free = LinearProbeHead().setup(text, 0.5, x, [None, "nick"], pull=0.0)
    assert bound["shift"] <= 2 / PULL * 1.05
    assert free["shift"] > 5 * bound["shift"]


def test_probe_still_learns_from_many_shots() -> None:
    """Where the prompts are poor and the data consistent, 32 + 32 images beat zero-shot, and more than 1 + 1 do."""
    gains = {1: [], 32: []}
    for seed in range(3):
        text, draw = _controlled_line(seed, signal=0.5, rho=0.2)
        test = torch.cat([draw(200, False), draw(200, True)])
        y = np.r_[np.zeros(200), np.ones(200)]
        for shots in gains:
            labels = [None] * shots + ["crack"] * shots
            probe = LinearProbeHead()
            probe.setup(text, 14.3, torch.cat([draw(shots, False), draw(shots, True)]), labels)
            zero = image_auroc(y, _zero_shot_scores(text, 14.3, labels, test))
            gains[shots].append(image_auroc(y, probe(_glob(test)).score.numpy()) - zero)
    assert min(gains[32]) > 0.05, gains
    assert all(many > one for one, many in zip(gains[1], gains[32], strict=True)), gains


def test_undescribed_class_is_not_pulled_and_pull_validated() -> None:
    text, draw = _controlled_line(2, signal=0.5, rho=0.6)
    x = torch.cat([draw(4, False), draw(4, True)])
    probe = LinearProbeHead()
    terms = probe.setup(text, 14.3, x, [None] * 4 + ["crack"] * 4)
    assert probe.class_names == ("crack",)
    w0, _, described = zero_shot_classifier(text, 14.3, [None, "crack"])
    assert described.tolist() == [True, False]
    assert float((probe.weight[1] - w0[1]).norm()) > float((probe.weight[0] - w0[0]).norm())
    assert terms["shift"] <= 8 / PULL * 1.05
    with pytest.raises(ValueError, match="pull"):
        LinearProbeHead().setup(text, 14.3, x, [None] * 4 + ["crack"] * 4, pull=-1.0)


def test_scores_of_confident_good_parts_do_not_tie() -> None:
    """Score = defect mass: near-certain good parts keep distinct scores (1 - p(good) rounds them to 0)."""
    text, draw = _controlled_line(3, signal=0.15, rho=0.6)
    text = TextEmbeddings(text.normal, text.anomalous, text.anomalous.unsqueeze(0), ("nick",))
    probe = LinearProbeHead()
    probe.setup(text, 100.0, torch.cat([draw(1, False), draw(1, True)]), [None, "nick"])
    good = F.normalize(text.normal + 0.2 * draw(20, False), dim=-1)
    scores = probe(_glob(good)).score
    assert scores.max() < 1e-7  # 1 - p(good) is exactly 0.0 here in float32
    assert scores.unique().numel() == 20


def test_pull_weighs_as_a_fixed_number_of_images() -> None:
    """The same pair seen 16 times is 16x the evidence: the probe moves further than on one pair."""
    text, draw = _controlled_line(4, signal=0.15, rho=0.6)
    text = TextEmbeddings(text.normal, text.anomalous, text.anomalous.unsqueeze(0), ("nick",))
    pair = torch.cat([draw(1, False), draw(1, True)])
    once = LinearProbeHead().setup(text, 14.3, pair, [None, "nick"])
    repeated = LinearProbeHead().setup(text, 14.3, pair.repeat(16, 1), [None, "nick"] * 16)
    assert repeated["shift"] > 3 * once["shift"], (once, repeated)
