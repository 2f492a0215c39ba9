"""The few-shot sample store: capture, list (the fit's own walk), delete to .deleted/."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.engine import FewShotSet
from inspector.frames.imaging import load_image
from inspector.tuning.samples import GOOD, SampleStore


def test_sample_store_rejects_bad_class_names(tmp_path):
    store = SampleStore(tmp_path)
    with pytest.raises(ValueError, match="defect class"):
        store.add(np.zeros((8, 8, 3), np.uint8), "../evil")


def test_capture_list_and_delete_agree_with_the_fit(tmp_path):
    store = SampleStore(tmp_path)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    good = store.add(frame, GOOD, part_id="P 1/2")
    again = store.add(frame, GOOD, part_id="P 1/2")  # same second: a new name, never an overwrite
    dent = store.add(frame, "dent")
    assert good.parent == tmp_path / "good" and again != good and dent.parent == tmp_path / "defect" / "dent"
    assert good.stem.endswith("_P_1_2") and np.array_equal(load_image(good), frame)  # safe name, lossless PNG
    assert not list(tmp_path.rglob(".capture.*"))  # the atomic write left no temporary file
    assert sorted((s.path, s.label) for s in store.samples()) == sorted(
        [(good, GOOD), (again, GOOD), (dent, "dent")])

    moved = store.delete(dent)
    assert not dent.exists() and moved == tmp_path / ".deleted" / "defect" / "dent" / dent.name and moved.exists()
    assert {s.label for s in store.samples()} == {GOOD}
    fit = FewShotSet.from_folder(tmp_path)  # the fit reads what the store lists
    assert sorted(fit.good_paths) == sorted([good, again]) and not fit.defects


def test_operator_proposals_wait_outside_the_set_until_accepted(tmp_path):
    store = SampleStore(tmp_path / "fewshot")
    frame = np.zeros((16, 16, 3), np.uint8)
    proposed = store.candidates().add(frame, "crack", "P000042")
    assert store.samples() == []  # a fit never reads a proposal
    assert [s.label for s in store.candidates().samples()] == ["crack"]
    accepted = store.accept(proposed)
    assert accepted == tmp_path / "fewshot" / "defect" / "crack" / proposed.name and not proposed.exists()
    assert [s.label for s in store.samples()] == ["crack"] and store.candidates().samples() == []
    good = store.accept(store.candidates().add(frame, GOOD, "P000043"))
    assert good.parent == tmp_path / "fewshot" / GOOD
