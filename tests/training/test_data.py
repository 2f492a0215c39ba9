"""Few-shot folder reading (masks, bad files, ROI) and the stratified / k-fold splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.config.training import TrainingSpec, ValidationSpec
from inspector.training.data import check_enough, load_fewshot, make_folds, nest_folds
from inspector.training.errors import InsufficientDataError
from tests.training.conftest import make_fewshot


def test_reads_good_defects_and_masks(fewshot: Path) -> None:
    data = load_fewshot(fewshot)
    assert (data.n_good, data.n_defect) == (8, 8) and data.classes == ("dent", "scratch")
    assert not data.skipped
    defects = [s for s in data.samples if s.label == 1]
    assert all(s.mask is not None and s.mask.max() == 1 and s.mask.shape == s.image.shape[:2] for s in defects)
    goods = [s for s in data.samples if s.label == 0]
    assert all(s.mask is not None and s.mask.sum() == 0 for s in goods)
    assert len({s.sha256 for s in data.samples}) == 16
    record = data.file_record()
    dent = next(r for r in record if r["file"].endswith("dent_001.png"))
    assert dent["label"] == "dent" and dent["mask"] == 1 and dent["file"] == "defect/dent/dent_001.png"


def test_bad_files_are_reported_by_name_and_skipped(fewshot: Path) -> None:
    (fewshot / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (fewshot / "good" / "notes.txt").write_text("shift B")
    (fewshot / "good" / ".DS_Store").write_bytes(b"\0")
    (fewshot / "defect" / "stray.png").write_bytes((fewshot / "good" / "good_000.png").read_bytes())
    (fewshot / "defect" / "dent" / "masks" / "dent_001.png").write_bytes(b"garbage")
    data = load_fewshot(fewshot)
    text = "\n".join(data.skipped)
    assert "broken.png" in text and "not a decodable image" in text
    assert "notes.txt" in text and "unsupported file type" in text
    assert "stray.png" in text and "class folder" in text
    assert "dent_001.png" in text and "without a mask" in text
    assert ".DS_Store" not in text
    assert data.n_good == 8  # the broken file is skipped, the rest is used
    dent = next(s for s in data.samples if s.key == "defect/dent/dent_001.png")
    assert dent.mask is None and not dent.has_mask


def test_roi_crops_images_and_masks(tmp_path: Path) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=2, n_defect=2)
    data = load_fewshot(folder, roi=(8, 16, 96, 80))
    assert all(s.image.shape == (80, 96, 3) for s in data.samples)
    assert all(s.mask is None or s.mask.shape == (80, 96) for s in data.samples)
    too_big = load_fewshot(folder, roi=(100, 100, 96, 96))
    assert too_big.n_good == 0 and len(too_big.skipped) == 4 and "roi" in too_big.skipped[0]


def test_too_few_images_say_how_many_are_needed(tmp_path: Path) -> None:
    folder = make_fewshot(tmp_path / "fs", n_good=2, n_defect=0)
    data = load_fewshot(folder)
    with pytest.raises(InsufficientDataError, match=r"2 usable good image\(s\).*at least 4: add 2 more"):
        check_enough(data, TrainingSpec(), synthesis=True)
    spec = TrainingSpec(min_good_images=2, synthesis={"mode": "off"})
    with pytest.raises(InsufficientDataError, match=r"no defect images.*synthesis\.mode"):
        check_enough(data, spec, synthesis=False)
    with pytest.raises(InsufficientDataError, match="no good/ folder"):
        load_fewshot(tmp_path / "empty")


def test_holdout_is_stratified_and_seeded(tmp_path: Path) -> None:
    data = load_fewshot(make_fewshot(tmp_path / "fs", n_good=16, n_defect=16, classes=("a", "b", "c", "d")))
    mode, folds, _ = make_folds(data.samples, ValidationSpec(), seed=3)
    assert mode == "holdout" and len(folds) == 1
    val = [data.samples[i] for i in folds[0].val]
    assert sum(s.label == 0 for s in val) == 4 and sum(s.label == 1 for s in val) == 4
    assert {s.defect for s in val if s.label} == {"a", "b", "c", "d"}  # every class is held out once
    assert not set(folds[0].val) & set(folds[0].train)
    assert make_folds(data.samples, ValidationSpec(), seed=3)[:2] == (mode, folds)
    assert make_folds(data.samples, ValidationSpec(), seed=4)[1] != folds


def test_the_split_is_remembered_when_images_are_added(tmp_path: Path) -> None:
    """Old images keep their side: the gate compares on the same images and nothing is re-encoded."""
    first = load_fewshot(make_fewshot(tmp_path / "a", n_good=16, n_defect=16))
    _, folds, record = make_folds(first.samples, ValidationSpec(), seed=0)
    val_before = {first.samples[i].sha256 for i in folds[0].val}
    more = load_fewshot(make_fewshot(tmp_path / "b", n_good=20, n_defect=20))  # same 32 images + 8 new ones
    assert {s.sha256 for s in first.samples} < {s.sha256 for s in more.samples}
    _, folds2, _ = make_folds(more.samples, ValidationSpec(), seed=0, previous=record)
    val_after = {more.samples[i].sha256 for i in folds2[0].val}
    train_after = {more.samples[i].sha256 for i in folds2[0].train}
    assert val_before <= val_after and not (val_before & train_after)
    assert len(val_after) == 10  # each label's share grows with the new images


def test_tiny_sets_get_k_fold(tmp_path: Path) -> None:
    data = load_fewshot(make_fewshot(tmp_path / "fs", n_good=6, n_defect=3))
    mode, folds, _ = make_folds(data.samples, ValidationSpec(folds=4), seed=0)
    assert mode == "kfold" and len(folds) == 4
    all_val = np.concatenate([f.val for f in folds])
    assert sorted(all_val.tolist()) == list(range(9))  # every image validated exactly once
    assert all(any(data.samples[i].label == 0 for i in f.val) for f in folds)


def test_nested_folds_keep_what_chooses_apart_from_what_judges(tmp_path: Path) -> None:
    data = load_fewshot(make_fewshot(tmp_path / "fs", n_good=12, n_defect=12))
    mode, folds, _, notes = nest_folds(data.samples, ValidationSpec(), seed=0)
    assert mode == "kfold" and len(folds) == 4 and not notes
    judged = sorted(i for f in folds for i in f.outer_val)
    assert judged == list(range(24))  # every image judged exactly once
    for f in folds:
        assert not (set(f.inner_train) | set(f.inner_val)) & set(f.outer_val)
        assert not set(f.inner_train) & set(f.inner_val) and f.outer_train == tuple(sorted(f.inner_train + f.inner_val))
        val = [data.samples[i] for i in f.inner_val]
        assert sum(s.label == 0 for s in val) == 3 and sum(s.label == 1 for s in val) == 3  # a third of 9 + 9
        assert {s.defect for s in val if s.label} == {"dent", "scratch"}
    assert nest_folds(data.samples, ValidationSpec(), seed=0)[1] == folds  # seeded
    big = load_fewshot(make_fewshot(tmp_path / "big", n_good=16, n_defect=16))
    mode, folds, _, _ = nest_folds(big.samples, ValidationSpec(), seed=0)
    assert mode == "holdout" and len(folds) == 1 and len(folds[0].inner_val) == 8  # a third of 12 + 12


def test_tiny_sets_degrade_to_more_outer_folds_and_say_so(tmp_path: Path) -> None:
    data = load_fewshot(make_fewshot(tmp_path / "fs", n_good=4, n_defect=1))
    mode, folds, _, notes = nest_folds(data.samples, ValidationSpec(folds=2), seed=0)
    # 2 folds leave 2 good images to train on: too few to split again, so 4 folds (3 each), noted.
    assert mode == "kfold" and len(folds) == 4
    assert len(notes) == 1 and "raised to 4-fold" in notes[0] and "kfold (2 folds)" in notes[0]
    for f in folds:
        goods = [i for i in f.inner_train if data.samples[i].label == 0]
        assert len(goods) == 2 and len([i for i in f.inner_val if data.samples[i].label == 0]) == 1
        assert not (set(f.inner_train) | set(f.inner_val)) & set(f.outer_val)
        assert not any(data.samples[i].label for i in f.inner_val)  # one defect: it cannot also choose
    three = load_fewshot(make_fewshot(tmp_path / "three", n_good=3, n_defect=2))
    with pytest.raises(InsufficientDataError, match="an honest gate needs at least 4"):
        nest_folds(three.samples, ValidationSpec(), seed=0)
