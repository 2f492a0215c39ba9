"""run_evaluation end to end on tiny fake MVTec AD and VisA categories."""

from __future__ import annotations

import csv
import json

import cv2
import h5py
import numpy as np
import pytest

from inspector.errors import ImageDecodeError
from inspector.evaluation import METRIC_KEYS, DatasetError, run_evaluation
from inspector.evaluation.datasets import MVTecAD, VisA

from .test_datasets import MVTEC_HW, VISA_HW, make_fake_mvtec, make_fake_visa


class DeviationPredictor:
    """Map = |grey - mean of the fitted good images| at a coarse 24x24; score = its maximum."""

    def __init__(self, map_size: tuple[int, int] = (24, 24)) -> None:
        self.map_size = map_size
        self.reference: np.ndarray | None = None
        self.fit_calls: list[int] = []

    def fit(self, good_images: list[np.ndarray]) -> None:
        self.fit_calls.append(len(good_images))
        for img in good_images:
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        if good_images:
            self.reference = np.mean([g.astype(np.float32).mean(axis=2) for g in good_images], axis=0)

    def predict(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        grey = image.astype(np.float32).mean(axis=2)
        ref = self.reference if self.reference is not None else np.median(grey)
        amap = cv2.resize(np.abs(grey - ref), self.map_size, interpolation=cv2.INTER_AREA)
        return float(amap.max()), amap


def _read_csv(path):
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory):
    return make_fake_mvtec(tmp_path_factory.mktemp("mvtec"))


@pytest.fixture(scope="module")
def mvtec_run(mvtec_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out_mvtec")
    predictor = DeviationPredictor()
    metrics = run_evaluation(mvtec_root, "bottle", 2, 0, predictor, out, save_maps=True, progress=False,
                             meta={"model": "deviation-test"})
    return out, metrics, predictor


def test_mvtec_outputs(mvtec_run, mvtec_root):
    out, metrics, predictor = mvtec_run
    assert predictor.fit_calls == [2]
    for name in ("metrics.json", "scores.csv", "report.html", "maps.h5"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for key in (*METRIC_KEYS, "n_images", "n_defect", "category", "dataset", "shots", "seed", "shot_paths"):
        assert key in metrics, key
    assert metrics["model"] == "deviation-test"
    assert (metrics["n_images"], metrics["n_defect"], metrics["dataset"]) == (9, 5, "mvtec")
    assert (metrics["category"], metrics["shots"], metrics["seed"]) == ("bottle", 2, 0)
    assert len(metrics["shot_paths"]) == 2
    assert all(p.startswith("bottle/train/good/") for p in metrics["shot_paths"])
    assert metrics["image_auroc"] == 1.0
    assert metrics["image_ap"] == 1.0 and metrics["image_f1_max"] == 1.0
    assert metrics["pixel_auroc"] > 0.9
    assert 0.5 < metrics["pixel_aupro"] <= 1.0

    rows = _read_csv(out / "scores.csv")
    assert rows[0] == ["path", "label", "score"]
    ds = MVTecAD(mvtec_root, "bottle")
    assert [r[0] for r in rows[1:]] == [s.path for s in ds.test]
    assert [int(r[1]) for r in rows[1:]] == [s.label for s in ds.test]
    assert all(np.isfinite(float(r[2])) for r in rows[1:])

    with h5py.File(out / "maps.h5", "r") as f:
        keys: list[str] = []
        f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(keys) == sorted(s.path for s in ds.test)
        d = f["bottle/test/broken/000.png"]  # groups follow the slashes
        assert d.shape == MVTEC_HW and d.dtype == np.float32
        assert d.compression == "gzip" and d.chunks is not None
        assert d.attrs["label"] == 1
        for s in ds.test:
            mask = ds.load_mask(s, ds.load_image(s).shape)
            assert f[s.path].shape == mask.shape

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 + 8
    assert "Pixel AUPRO" in html and "deviation-test" in html
    assert "<script" not in html and 'src="http' not in html


def test_visa_run(tmp_path):
    root = make_fake_visa(tmp_path / "visa")
    predictor = DeviationPredictor(map_size=(40, 24))
    metrics = run_evaluation(root, "candle", 3, 5, predictor, tmp_path / "out", save_maps=True,
                             progress=False)
    assert metrics["dataset"] == "visa" and metrics["n_images"] == 6 and metrics["n_defect"] == 3
    assert metrics["image_auroc"] == 1.0 and metrics["pixel_auroc"] > 0.9
    ds = VisA(root, "candle")
    rows = _read_csv(tmp_path / "out" / "scores.csv")
    assert [r[0] for r in rows[1:]] == [s.path for s in ds.test]
    with h5py.File(tmp_path / "out" / "maps.h5", "r") as f:
        for s in ds.test:
            assert f[s.path].shape == VISA_HW


def test_shots_deterministic_per_seed(mvtec_root, tmp_path):
    def shots(seed, k=3):
        return run_evaluation(mvtec_root, "bottle", k, seed, DeviationPredictor(), tmp_path / f"s{seed}",
                              progress=False)["shot_paths"]

    first = shots(7)
    assert len(first) == 3
    assert shots(7) == first
    assert shots(8) != first


def test_zero_shot_and_subset(mvtec_root, tmp_path):
    predictor = DeviationPredictor()
    metrics = run_evaluation(mvtec_root, "bottle", 0, 0, predictor, tmp_path, max_images=4,
                             progress=False)
    assert predictor.fit_calls == [0]
    assert metrics["shot_paths"] == [] and metrics["n_images"] == 4
    assert 0 < metrics["n_defect"] < 4  # evenly spaced subset keeps both classes
    assert not (tmp_path / "maps.h5").exists()
    with pytest.raises(DatasetError, match="no good image"):
        run_evaluation(mvtec_root, "bottle", 0, 0, predictor, tmp_path, max_images=1, progress=False)


def test_missing_category(mvtec_root, tmp_path):
    with pytest.raises(DatasetError, match="cable"):
        run_evaluation(mvtec_root, "cable", 1, 0, DeviationPredictor(), tmp_path, progress=False)
    with pytest.raises(DatasetError, match="cable"):
        run_evaluation(mvtec_root, "cable", 1, 0, DeviationPredictor(), tmp_path, dataset="mvtec",
                       progress=False)


def test_corrupt_png_is_named(tmp_path):
    root = make_fake_mvtec(tmp_path / "data")
    bad = root / "bottle" / "test" / "good" / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(ImageDecodeError, match=r"test/good/002.png"):
        run_evaluation(root, "bottle", 1, 0, DeviationPredictor(), tmp_path / "out", save_maps=True,
                       progress=False)
    assert not (tmp_path / "out" / "maps.h5").exists()
    assert not (tmp_path / "out" / "maps.h5.tmp").exists()


def test_mask_with_wrong_size(tmp_path):
    root = make_fake_mvtec(tmp_path / "data")
    bad_mask = root / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    cv2.imwrite(str(bad_mask), np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"crack/000_mask.png: mask is 32x32"):
        run_evaluation(root, "bottle", 1, 0, DeviationPredictor(), tmp_path / "out", progress=False)


def test_bad_predictor_output_and_meta(mvtec_root, tmp_path):
    class Bad(DeviationPredictor):
        def predict(self, image):
            return 1.0, np.zeros((4, 4, 3), np.float32)

    with pytest.raises(ValueError, match=r"bottle/test/broken/000.png: the anomaly map must be 2-D"):
        run_evaluation(mvtec_root, "bottle", 1, 0, Bad(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="collide"):
        run_evaluation(mvtec_root, "bottle", 1, 0, DeviationPredictor(), tmp_path, progress=False,
                       meta={"seed": 3})
    with pytest.raises(ValueError, match="only 8 good"):
        run_evaluation(mvtec_root, "bottle", 9, 0, DeviationPredictor(), tmp_path, progress=False)
