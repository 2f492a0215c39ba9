"""FittedState: everything a fit produces, saved and loaded as one file, applied by the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.engine import FittedState, Inspector
from inspector.engine.fitted import ForeignFileError, fitted_key
from tests.conftest import plant, tiny_line

SIZE = (128, 128)


@pytest.fixture(scope="module")
def engine(tiny_backbone) -> Inspector:
    insp = Inspector(parse_station_config({"lines": [tiny_line()]}).lines[0], tiny_backbone)
    gen = PartGenerator(size=SIZE, seed=0)
    rng = np.random.default_rng(1)
    defects = {"scratch": [plant(gen.good(), rng, 24, "texture")[0] for _ in range(2)]}
    insp.fit([gen.good().image for _ in range(4)], defects)
    return insp


def test_save_load_round_trip_is_exact(engine: Inspector, tmp_path: Path) -> None:
    state = engine.fitted_state
    assert state is not None and state.report is engine.last_fit
    state.save(tmp_path / "state.safetensors")
    loaded = FittedState.load(tmp_path / "state.safetensors")
    assert loaded.memory.keys() == state.memory.keys()
    for layer, mem in state.memory.items():
        assert torch.equal(loaded.memory[layer], mem.cpu())
    assert torch.equal(loaded.probe_weight, state.probe_weight.cpu()) and loaded.probe_classes == state.probe_classes
    np.testing.assert_array_equal(loaded.good_scores, state.good_scores)
    np.testing.assert_array_equal(loaded.defect_scores, state.defect_scores)
    assert (loaded.temperature, loaded.threshold, loaded.region_threshold) == (
        state.temperature, state.threshold, state.region_threshold)
    assert loaded.score_stats == state.score_stats and loaded.map_stats == state.map_stats
    assert loaded.fusion_heads == state.fusion_heads and loaded.calibration == state.calibration
    assert loaded.report.heads == state.report.heads and loaded.report.shots == state.report.shots


def test_an_applied_state_inspects_as_the_fit(engine: Inspector, tiny_backbone, tmp_path: Path) -> None:
    engine.fitted_state.save(tmp_path / "state.safetensors")
    other = Inspector(engine.line, tiny_backbone)
    other.apply_fitted(FittedState.load(tmp_path / "state.safetensors"))
    frame = PartGenerator(size=SIZE, seed=5).good().image
    a, b = engine.inspect(frame), other.inspect(frame)
    assert a.score == pytest.approx(b.score, abs=1e-6) and a.head_scores.keys() == b.head_scores.keys()
    assert other.last_fit is not None and other.heads == engine.heads and other.defect_names == engine.defect_names


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something-else"})
    with pytest.raises(ForeignFileError):
        FittedState.load(tmp_path / "other.safetensors")


def test_the_cache_key_follows_model_config_and_files(engine: Inspector, repo_root: Path) -> None:
    folder = repo_root / "fewshot_data" / "demo"
    key = fitted_key(engine.model_key, engine.line, folder)
    assert key == fitted_key(engine.model_key, engine.line, folder)
    assert key != fitted_key(engine.model_key + "|other", engine.line, folder)
    fewer = engine.line.model_copy(update={"fewshot": engine.line.fewshot.model_copy(update={"max_shots": 1})})
    assert key != fitted_key(engine.model_key, fewer, folder)


def test_embeddings_are_unit_rows(engine: Inspector) -> None:
    text = engine.embed_text(["a scratch", "a dent on the rim"])
    images = engine.embed_images([PartGenerator(size=SIZE, seed=9).good().image])
    assert text.shape == (2, 64) and images.shape == (1, 64)
    assert text.dtype == np.float32 and images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
