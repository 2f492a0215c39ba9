"""The engine end to end on a real (tiny, random-weight) open_clip ViT and synthetic ring parts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from inspector.config import parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.engine import FewShotSet, Inspector
from inspector.errors import ImageDecodeError
from tests.conftest import plant, tiny_line

SIZE = (128, 128)


def make_inspector(backbone, **line_overrides) -> Inspector:
    cfg = parse_station_config({"lines": [tiny_line(**line_overrides)]})
    return Inspector(cfg.lines[0], backbone)


@pytest.fixture(scope="module")
def goods() -> list[np.ndarray]:
    gen = PartGenerator(size=SIZE, seed=0)
    return [gen.good().image for _ in range(8)]


@pytest.fixture(scope="module")
def test_set() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    gen = PartGenerator(size=SIZE, seed=5, stream=1)
    rng = np.random.default_rng(3)
    images, labels, masks = [], [], []
    for i in range(24):
        part = gen.good()
        if i % 2:
            img, mask = plant(part, rng)
        else:
            img, mask = part.image, np.zeros(SIZE, np.uint8)
        images.append(img)
        labels.append(i % 2)
        masks.append(mask)
    return images, np.array(labels), masks


@pytest.fixture(scope="module")
def fitted(tiny_backbone, goods) -> Inspector:
    insp = make_inspector(tiny_backbone)
    insp.fit(goods)
    return insp


def test_few_shot_head_ranks_planted_defects_above_good_parts(fitted, test_set) -> None:
    images, labels, masks = test_set
    results = fitted.inspect_batch(images)
    refs = [r.head_scores["references"] for r in results]
    assert roc_auc_score(labels, refs) >= 0.95
    assert roc_auc_score(labels, [r.score for r in results]) >= 0.9
    # The map peaks inside the planted defect for most defective parts.
    hits = [m[np.unravel_index(np.argmax(r.anomaly_map), r.anomaly_map.shape)] > 0
            for r, m, y in zip(results, masks, labels) if y]
    assert np.mean(hits) >= 0.7


def test_result_object_is_complete(fitted, test_set) -> None:
    images, _, _ = test_set
    r = fitted.inspect(images[1])
    assert r.verdict in ("OK", "NG") and r.line == "ring"
    assert r.anomaly_map.shape == SIZE and r.anomaly_map.dtype == np.float32
    assert r.roi == (0, 0, 128, 128)
    assert r.untrained_backbone and "untrained" in r.model
    assert set(r.head_scores) == {"zero_shot", "references"}
    assert {"preprocess", "backbone", "zero_shot", "references", "fusion", "map", "decision", "total"} <= set(
        r.timings_ms)
    assert r.embedding.shape == (64,)
    ng = [res for res in fitted.inspect_batch(images) if not res.ok]
    assert ng, "some planted defects must be NG at the calibrated threshold"
    assert all(res.defect for res in ng)
    assert any(res.regions for res in ng)


def test_batch_equals_single(fitted, test_set) -> None:
    images, _, _ = test_set
    batch = fitted.inspect_batch(images[:3])
    for img, b in zip(images[:3], batch):
        s = fitted.inspect(img)
        assert s.score == pytest.approx(b.score, abs=1e-4)
        assert s.verdict == b.verdict


def test_probe_and_temperature_fit_from_labelled_defects(tiny_backbone, goods) -> None:
    """Engine-level mechanics of the labelled path; the probe's accuracy is unit-tested in tests/heads.

    (A random-weight backbone's global embedding barely moves with a local defect, so class accuracy on
    images is only meaningful with real weights: `inspector eval`.)
    """
    rng = np.random.default_rng(1)
    gen = PartGenerator(size=SIZE, seed=21)
    defects = {"scratch": [plant(gen.good(), rng, 24, "texture")[0] for _ in range(3)],
               "crack": [plant(gen.good(), rng, 24, "pit")[0] for _ in range(2)]}
    insp = make_inspector(tiny_backbone)
    t0 = insp.temperature
    report = insp.fit(goods, defects)
    assert "probe" in report.heads and report.defect_images == 5
    # Prompt defects first (scratch, dent), then classes only seen in the data (crack).
    assert insp.probe.class_names == ("scratch", "dent", "crack")
    assert insp.temperature != t0  # refitted on the labelled margins
    assert insp.defect_scores.shape == (5,) and np.isfinite(insp.defect_scores).all()
    assert insp.calibrate("f1").method == "f1"
    assert insp.calibrate("cost").n_defect == 5
    result = insp.inspect(defects["scratch"][0])
    assert set(result.head_scores) == {"zero_shot", "references", "probe"}


@pytest.mark.slow
def test_calibration_hits_target_false_reject_on_held_out_good(tiny_backbone) -> None:
    """Averaged over independent few-shot sets, held-out good parts are rejected at the target rate."""
    target, reps = 0.1, 8
    insp = make_inspector(tiny_backbone, decision={"calibration": {"target_false_reject": target}})
    held_gen = PartGenerator(size=SIZE, seed=7, stream=1)
    held = insp.encode([held_gen.good().image for _ in range(150)])
    rates = []
    for rep in range(reps):
        gen = PartGenerator(size=SIZE, seed=100 + rep)
        insp.fit([gen.good().image for _ in range(8)])
        score, _ = insp.fusion({h: getattr(insp, h)(held) for h in insp.heads})
        rates.append(float((score >= insp.threshold).float().mean()))
    mean = float(np.mean(rates))
    stderr = float(np.std(rates, ddof=1)) / np.sqrt(reps)
    assert abs(mean - target) <= 3 * stderr + 0.01, (mean, rates)


def test_fixed_threshold_is_kept_and_nan_is_never_ok(tiny_backbone, goods, test_set) -> None:
    insp = make_inspector(tiny_backbone, decision={"threshold": 1e9})
    insp.fit(goods)
    assert insp.threshold == 1e9 and insp.calibration is None
    assert insp.inspect(test_set[0][1]).ok
    result = insp._decide(0, goods[0], float("nan"), None, {}, insp.encode(goods[:1]))
    assert result.verdict == "NG"


def test_zero_shot_only_without_references(tiny_backbone, test_set) -> None:
    insp = make_inspector(tiny_backbone)
    r = insp.inspect(test_set[0][0])
    assert set(r.head_scores) == {"zero_shot"}
    assert 0.0 <= r.score <= 1.0 and r.threshold == 0.5


def test_roi_crops_and_offsets(tiny_backbone, goods) -> None:
    insp = make_inspector(tiny_backbone, roi=[10, 20, 96, 96])
    insp.fit(goods)
    frame = np.zeros((160, 160, 3), np.uint8)
    frame[20:116, 10:106] = cv2.resize(goods[0], (96, 96))
    r = insp.inspect(frame)
    assert r.anomaly_map.shape == (96, 96) and r.roi == (10, 20, 96, 96)
    with pytest.raises(ImageDecodeError, match="roi"):
        insp.inspect(np.zeros((64, 64, 3), np.uint8))


def test_bad_frames_raise_clear_errors(fitted) -> None:
    with pytest.raises(ImageDecodeError, match="empty frame"):
        fitted.inspect(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="shape"):
        fitted.inspect(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(ImageDecodeError, match="pixel type"):
        fitted.inspect(np.zeros((32, 32, 3), np.int64))
    gray = fitted.inspect(np.full((64, 64), 128, np.uint8))
    assert gray.anomaly_map.shape == (64, 64)


def test_fewshot_folder_skips_unreadable_files(tmp_path: Path, tiny_backbone) -> None:
    gen = PartGenerator(size=SIZE, seed=2)
    (tmp_path / "good").mkdir()
    (tmp_path / "defect" / "scratch" / "masks").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "good" / f"g{i}.png"), gen.good().image)
    (tmp_path / "good" / "broken.png").write_bytes(b"\x89PNG not really")
    part = gen.defective("scratch")
    cv2.imwrite(str(tmp_path / "defect" / "scratch" / "d0.png"), part.image)
    cv2.imwrite(str(tmp_path / "defect" / "scratch" / "masks" / "d0.png"), part.mask)
    data = FewShotSet.from_folder(tmp_path)
    assert len(data.good) == 3 and list(data.defects) == ["scratch"] and len(data.defects["scratch"]) == 1
    assert len(data.skipped) == 1 and "broken.png" in data.skipped[0]
    record = data.file_record(tmp_path)
    assert {r["file"] for r in record} == {"good/g0.png", "good/g1.png", "good/g2.png", "defect/scratch/d0.png"}
    insp = make_inspector(tiny_backbone)
    report = insp.fit_folder(tmp_path)
    assert report.shots == 3 and report.skipped and len(report.files) == 4


class _ConstantAdapter(torch.nn.Module):
    """A stand-in adapter head: scores every frame with a fixed value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(value))

    def forward(self, features):
        from inspector.heads import HeadOutput

        return HeadOutput(self.value.expand(features.batch_size), None)


def test_adapter_hot_swap_and_rollback(tiny_backbone, goods, test_set) -> None:
    insp = make_inspector(tiny_backbone)
    insp.fit(goods)
    frame = test_set[0][0]
    base = insp.inspect(frame)
    assert base.model_version == "base" and "adapter" not in base.head_scores
    insp.install_adapter(_ConstantAdapter(5.0), "v0003", score_stats=(0.0, 1.0), threshold=2.0)
    swapped = insp.inspect(frame)
    assert swapped.model_version == "v0003" and swapped.head_scores["adapter"] == 5.0
    assert swapped.threshold == 2.0
    assert swapped.score > base.score  # the adapter's z of 5 pulls the fused score up
    insp.remove_adapter(threshold=base.threshold)
    back = insp.inspect(frame)
    assert back.model_version == "base" and back.score == pytest.approx(base.score, abs=1e-5)


class _NamingAdapter(_ConstantAdapter):
    """An adapter trained on the line's defects: it names them with its own class probabilities."""

    defect_names = ("burr", "crack")

    def forward(self, features):
        from inspector.heads import HeadOutput

        probs = torch.tensor([[0.2, 0.8]]).expand(features.batch_size, 2)
        return HeadOutput(self.value.expand(features.batch_size), None, probs)


def test_ng_parts_are_named_by_the_adapter_classes(tiny_backbone, goods, test_set) -> None:
    insp = make_inspector(tiny_backbone)
    insp.fit(goods)
    frame = test_set[0][0]
    insp.install_adapter(_NamingAdapter(50.0), "v0004", score_stats=(0.0, 1.0), threshold=0.0)
    named = insp.inspect(frame)
    assert named.verdict == "NG" and named.defect == "crack" and named.defect_confidence == pytest.approx(0.8)
    insp.install_adapter(_ConstantAdapter(50.0), "v0005", score_stats=(0.0, 1.0), threshold=0.0)
    fallback = insp.inspect(frame)  # no classes from the adapter: the zero-shot prompts name the defect
    assert fallback.verdict == "NG" and fallback.defect in insp.zero_shot.defect_names


def test_fitted_state_cache_round_trip(tmp_path: Path, tiny_backbone, repo_root: Path, test_set) -> None:
    folder = repo_root / "fewshot_data" / "demo"
    cache = tmp_path / "cache"
    first = make_inspector(tiny_backbone, fewshot={"max_shots": 3})
    report = first.fit_folder(folder, cache)
    files = list(cache.glob("fitted-*.safetensors"))
    assert len(files) == 1
    second = make_inspector(tiny_backbone, fewshot={"max_shots": 3})
    restored = second.fit_folder(folder, cache)
    assert restored.heads == report.heads and restored.files == report.files
    frame = test_set[0][1]
    a, b = first.inspect(frame), second.inspect(frame)
    assert a.score == pytest.approx(b.score, abs=1e-6) and a.threshold == b.threshold
    assert b.defect == a.defect
    # Another configuration is another key: a fresh fit, a second file.
    third = make_inspector(tiny_backbone, fewshot={"max_shots": 2})
    third.fit_folder(folder, cache)
    assert len(list(cache.glob("fitted-*.safetensors"))) == 2
    # A corrupt cache file is ignored, not trusted.
    files[0].write_bytes(b"garbage")
    fourth = make_inspector(tiny_backbone, fewshot={"max_shots": 3})
    assert fourth.fit_folder(folder, cache).shots == 3
