"""Prompt drafts and their zero-shot preview on the tiny random-weight engine (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from inspector.config import parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.engine import FewShotSet, Inspector
from inspector.tuning.prompt_preview import PromptDraft, auroc, preview_prompts
from inspector.tuning.samples import GOOD, SampleStore
from tests.conftest import plant, tiny_line

SIZE = (128, 128)


@pytest.fixture(scope="module")
def line():
    return parse_station_config({"lines": [tiny_line(roi=[16, 8, 96, 112])]}).lines[0]


@pytest.fixture(scope="module")
def live(tiny_backbone, line) -> Inspector:
    return Inspector(line, tiny_backbone)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> FewShotSet:
    store = SampleStore(tmp_path_factory.mktemp("fewshot"))
    gen = PartGenerator(size=SIZE, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        store.add(gen.good().image, GOOD)
    store.add(plant(gen.good(), rng)[0], "scratch")
    return FewShotSet.from_folder(store.folder)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return PartGenerator(size=SIZE, seed=7).good().image


def test_draft_round_trips_through_the_line_config(line):
    draft = PromptDraft.from_line(line)
    assert draft.apply(line).model_dump() == line.model_dump()
    edited = PromptDraft("steel ring", ("shiny {}",), {"scratch": "a long scratch"})
    applied = edited.apply(line)
    assert applied.object_name == "steel ring" and applied.prompts.normal_states == ("shiny {}",)
    assert dict(applied.prompts.defects) == {"scratch": "a long scratch"}
    assert edited.updates() == {"object_name": "steel ring", "prompts.normal_states": ["shiny {}"],
                                "prompts.defects": {"scratch": "a long scratch"}}
    with pytest.raises(ValidationError):  # validated like a config file: a state needs its {} placeholder
        PromptDraft("steel ring", ("shiny",), {}).apply(line)


def test_unchanged_draft_previews_the_live_scores(tiny_backbone, line, live, samples, frame):
    preview = Inspector(PromptDraft.from_line(line).apply(line), tiny_backbone)
    result = preview_prompts(live, preview, frame, samples)
    assert result.frame is not None and abs(result.frame.after - result.frame.before) < 1e-6
    assert [s.kind for s in result.samples] == [GOOD, GOOD, GOOD, "scratch"]
    assert [s.label for s in result.samples] == [p.name for p in [*samples.good_paths, *samples.defect_paths]]
    assert all(abs(s.after - s.before) < 1e-6 for s in result.samples)
    assert result.auroc_before == result.auroc_after and result.auroc_before is not None
    assert result.frame_map is not None and result.frame_map.shape == (112, 96)  # the ROI's size (h, w)
    assert result.sample_features is not None


def test_edited_draft_changes_the_scores_and_reuses_sample_features(tiny_backbone, line, live, samples, frame):
    draft = PromptDraft(line.object_name, ("shiny {}", "immaculate {} straight from the lathe"),
                        {"scratch": "a long deep scratch across the polished ring face", "dent": "a dent"})
    preview = Inspector(draft.apply(line), tiny_backbone)
    first = preview_prompts(live, preview, frame, samples)
    assert first.frame is not None and abs(first.frame.after - first.frame.before) > 1e-6  # the edit changes it
    assert any(abs(s.after - s.before) > 1e-6 for s in first.samples)
    assert {s.defect_after for s in first.samples} <= {"scratch", "dent"}
    again = preview_prompts(live, preview, frame, samples, first.sample_features)  # the samples not re-encoded
    assert again.sample_features is first.sample_features
    assert [s.after for s in again.samples] == pytest.approx([s.after for s in first.samples], abs=1e-5)


def test_preview_without_frame_or_samples_is_empty(tiny_backbone, line, live):
    result = preview_prompts(live, Inspector(line, tiny_backbone), None, None)
    assert result.frame is None and result.frame_map is None and result.samples == []


def test_auroc_of_sample_scores():
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.2])) == pytest.approx(0.875)  # a tie counts one half
    assert auroc(np.array([0.1]), np.empty(0)) is None and auroc(np.empty(0), np.array([1.0])) is None
