"""The fit's statistics are held-out, production-like and unbiased (issue #12), on the tiny random-weight ViT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.engine import FittedState, Inspector
from inspector.engine.fitting import _view_coords, fit_state
from inspector.engine.views import make_views
from tests.conftest import plant, tiny_line

SIZE = (128, 128)


def make(backbone, **fewshot) -> Inspector:
    """A tiny-ViT engine at 64 px (an 8 x 8 token grid): these tests are about statistics, not resolution."""
    line = tiny_line(fewshot=fewshot)
    line["model"] = {**line["model"], "image_size": 64}
    return Inspector(parse_station_config({"lines": [line]}).lines[0], backbone)


@pytest.fixture(scope="module")
def fitted(tiny_backbone, goods) -> tuple[Inspector, FittedState]:
    insp = make(tiny_backbone)
    return insp, fit_state(insp, goods)


@pytest.fixture(scope="module")
def goods() -> list[np.ndarray]:
    gen = PartGenerator(size=SIZE, seed=0)
    return [gen.good().image for _ in range(4)]


@pytest.fixture(scope="module")
def fresh() -> list[np.ndarray]:
    gen = PartGenerator(size=SIZE, seed=0, stream=1)
    return [gen.good().image for _ in range(12)]


def test_statistics_and_threshold_come_from_identity_views_only(fitted, goods) -> None:
    insp, state = fitted
    assert state.good_scores.shape == (4,)  # one held-out score per good part, not one per view
    assert state.calibration.n_good == 4
    zero_shot = insp.zero_shot(insp.encode(goods)).score.double()  # the identity views, as parts come
    assert state.score_stats["zero_shot"][0] == pytest.approx(float(zero_shot.mean()), abs=1e-5)
    assert state.score_stats["zero_shot"][1] == pytest.approx(float(zero_shot.std()), abs=1e-5)
    # The memory still holds every view.
    n_tokens = insp.encode(goods[:1]).patches[insp.extractor.layers[0]].shape[1]
    assert state.memory[insp.extractor.layers[0]].shape[0] == min(4 * 6 * n_tokens, insp.line.fewshot.coreset_size)


@pytest.mark.slow
def test_held_out_statistics_do_not_depend_on_the_coreset(tiny_backbone, fitted, goods) -> None:
    full = fitted[1]
    small = fit_state(make(tiny_backbone, coreset_size=64), goods)
    assert small.memory[next(iter(small.memory))].shape[0] == 64  # the production search is the coreset
    assert small.score_stats["references"] == pytest.approx(full.score_stats["references"])
    np.testing.assert_allclose(small.good_scores, full.good_scores, rtol=1e-6)


@pytest.mark.slow
def test_one_shot_keeps_the_reference_head_and_promises_no_rate(tiny_backbone, goods, fresh) -> None:
    insp = make(tiny_backbone)
    state = fit_state(insp, goods[:1])
    assert "references" in state.fusion_heads and state.shots == 1
    insp.apply_fitted(state)
    fresh_refs = insp.references(insp.encode(fresh)).score.double()
    held_out_std = state.score_stats["references"][1]
    # Not inflated (issue #12: ~80x the fresh spread before, which silenced the head in the fusion).
    assert held_out_std < 3 * float(fresh_refs.std())
    calib = state.calibration
    assert calib.n_good == 1 and calib.details["pseudo_parts"] == 6
    assert calib.false_reject_interval == (0.0, 1.0) and "add good parts" in calib.interval_method
    with pytest.raises(ValueError, match="1-shot mode"):
        fit_state(insp, goods[:1], one_shot="magic")


@pytest.mark.slow
def test_probe_statistics_are_held_out_identity_scores(tiny_backbone, goods) -> None:
    insp = make(tiny_backbone)
    rng = np.random.default_rng(1)
    gen = PartGenerator(size=SIZE, seed=2)
    defects = {"scratch": [plant(gen.good(), rng, 24, "texture")[0] for _ in range(2)]}
    state = fit_state(insp, goods, defects)
    assert state.good_scores.shape == (4,) and state.defect_scores.shape == (2,)
    assert set(state.score_stats) == {"zero_shot", "references", "probe"}


def test_view_coordinates_follow_the_views() -> None:
    coords = _view_coords((3, 3), augment=True)
    assert coords.shape == (6, 9, 2)
    place = torch.arange(9.0).reshape(1, 1, 3, 3).expand(1, 3, 3, 3)
    views = make_views(place, True)[:, 0].flatten(1)  # which place each token of each view shows
    np.testing.assert_array_equal((coords[..., 0] * 3 + coords[..., 1]).numpy(), views.numpy())


def test_fitted_state_keeps_the_interval(fitted, tmp_path: Path) -> None:
    state = fitted[1]
    state.save(tmp_path / "s.safetensors")
    loaded = FittedState.load(tmp_path / "s.safetensors")
    assert loaded.calibration == state.calibration and loaded.calibration.false_reject_interval is not None
