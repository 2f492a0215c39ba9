"""albumentations views (deterministic, masks follow) and defect synthesis (CutPaste / scar / Perlin)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.config.training import AugmentSpec, SynthesisSpec
from inspector.demo.parts import PartGenerator
from inspector.errors import ConfigError
from inspector.training.augment import Augmenter
from inspector.training.synthesis import DefectSynthesizer, foreground_mask, perlin_noise


@pytest.fixture(scope="module")
def part():
    return PartGenerator(size=(128, 128), seed=3).good()


def test_views_are_deterministic_and_distinct(part) -> None:
    spec = AugmentSpec(rotate={"p": 1.0, "limit": 20}, perspective={"p": 0.5}, clahe={"p": 0.5},
                       extra=[{"name": "ColorJitter", "p": 0.5, "params": {"hue": 0.02}}])
    a, b = Augmenter(spec, seed=1), Augmenter(spec, seed=1)
    v1, _ = a.view(part.image, None, "sha", 1)
    assert np.array_equal(v1, b.view(part.image, None, "sha", 1)[0])
    assert not np.array_equal(v1, a.view(part.image, None, "sha", 2)[0])
    assert a.view(part.image, None, "sha", 0)[0] is part.image
    assert a.view_id("sha", 0) == "orig"
    assert a.view_id("sha", 1) == b.view_id("sha", 1) != Augmenter(spec, seed=2).view_id("sha", 1)
    assert a.view_id("sha", 1) != Augmenter(AugmentSpec(), seed=1).view_id("sha", 1)  # pipeline digest


def test_geometric_transforms_move_the_mask(part) -> None:
    aug = Augmenter(AugmentSpec(hflip=1.0, vflip=0.0, rotate90=0.0, brightness_contrast={"p": 0}, blur={"p": 0},
                                noise={"p": 0}))
    mask = np.zeros((128, 128), np.uint8)
    mask[10:20, 5:15] = 1
    image, moved = aug.view(part.image, mask, "x", 1)
    assert np.array_equal(image, part.image[:, ::-1])
    assert np.array_equal(moved, mask[:, ::-1]) and moved.dtype == np.uint8


def test_unknown_extra_transform_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"training.augment.extra\[0\].*not an albumentations transform"):
        Augmenter(AugmentSpec(extra=[{"name": "MakeItShiny"}]))
    with pytest.raises(ConfigError, match=r"extra\[0\].*Blur"):
        Augmenter(AugmentSpec(extra=[{"name": "Blur", "params": {"no_such_arg": 1}}]))


@pytest.mark.parametrize("method", ["cutpaste", "scar", "perlin"])
def test_synthetic_defects_change_only_the_masked_pixels(part, method: str) -> None:
    spec = SynthesisSpec(methods=(method,))
    synth = DefectSynthesizer(spec, seed=0)
    for k in range(4):
        image, mask, used = synth.make(part.image, "sha", k)
        assert used == method and mask.dtype == np.uint8
        area = mask.mean()
        assert 0.0005 < area < 0.06, area
        diff = np.abs(image.astype(int) - part.image.astype(int)).max(axis=-1)
        assert diff[mask == 0].max() <= 12 + 1  # outside the mask: below the change threshold
        assert (diff[mask == 1] > 12).mean() > 0.8  # closing fills pin-holes inside a defect
        again, mask2, _ = synth.make(part.image, "sha", k)
        assert np.array_equal(again, image) and np.array_equal(mask2, mask)


def test_synthesis_lands_on_the_part(part) -> None:
    fg = foreground_mask(part.image)
    assert fg is not None and 0.1 < fg.mean() < 0.7
    synth = DefectSynthesizer(SynthesisSpec(methods=("cutpaste",)), seed=0)
    on_part = [fg[synth.make(part.image, "s", k)[1].astype(bool)].mean() for k in range(6)]
    assert np.mean(on_part) > 0.5


def test_perlin_noise_is_smooth_and_bounded() -> None:
    noise = perlin_noise((64, 48), (4, 3), np.random.default_rng(0))
    assert noise.shape == (64, 48) and np.abs(noise).max() <= 1.5
    assert np.abs(np.diff(noise, axis=0)).max() < 0.3


def test_judging_defects_come_from_the_other_family_or_stream(part) -> None:
    from inspector.training.synthesis import JUDGE_STREAM, family, plan_synthesis

    plan = plan_synthesis(SynthesisSpec())  # every method configured: train CutPaste, judge Perlin
    assert plan.policy == "other_family" and plan.train.methods == ("cutpaste", "scar")
    assert plan.judge.methods == ("perlin",) and "perlin family" in plan.note
    only_perlin = plan_synthesis(SynthesisSpec(methods=("perlin",)))
    assert only_perlin.train.methods == ("perlin",) and only_perlin.judge.methods == ("cutpaste", "scar")
    assert {family(m) for m in plan.train.methods}.isdisjoint(family(m) for m in plan.judge.methods)
    seed = plan_synthesis(SynthesisSpec(judge="other_seed"))
    assert seed.train.methods == seed.judge.methods == ("cutpaste", "scar", "perlin")
    assert seed.record()["judge_stream"] == JUDGE_STREAM != seed.record()["train_stream"]
    # An independent stream: the same source image and index give another defect.
    spec = SynthesisSpec(methods=("cutpaste",))
    trained = DefectSynthesizer(spec, seed=0).make(part.image, "abc", 0)[0]
    judged = DefectSynthesizer(spec, seed=0, stream=JUDGE_STREAM).make(part.image, "abc", 0)[0]
    assert not np.array_equal(trained, judged)
    assert np.array_equal(trained, DefectSynthesizer(spec, seed=0).make(part.image, "abc", 0)[0])
