"""MVTec AD / VisA layouts, image and mask reading, shot selection.

``make_fake_mvtec`` / ``make_fake_visa`` build tiny categories; test_runner.py reuses them.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import ImageDecodeError
from inspector.evaluation.datasets import (
    DatasetError,
    MVTecAD,
    VisA,
    detect_layout,
    open_dataset,
    read_image,
    read_mask,
    select_shots,
)

MVTEC_HW = (64, 64)
VISA_HW = (48, 80)  # not square: catches width/height mix-ups


def _good(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    img = np.full((*hw, 3), 120, np.int16) + rng.integers(-4, 5, (*hw, 3))
    img[..., 2] += 10  # a tint: catches BGR / RGB mix-ups in read_image
    return img.clip(0, 255).astype(np.uint8)


def _defect(rng: np.random.Generator, hw: tuple[int, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    img = _good(rng, hw)
    mask = np.zeros(hw, np.uint8)
    y, x = 4 + (7 * k) % (hw[0] - 20), 4 + (11 * k) % (hw[1] - 20)
    img[y:y + 12, x:x + 12] = 255
    mask[y:y + 12, x:x + 12] = 255
    return img, mask


def _write(path: Path, rgb_or_gray: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR) if rgb_or_gray.ndim == 3 else rgb_or_gray
    assert cv2.imwrite(str(path), data)


def make_fake_mvtec(root: Path, category: str = "bottle", n_train: int = 8, n_good: int = 4,
                    defects: tuple[tuple[str, int], ...] = (("broken", 3), ("crack", 2)),
                    seed: int = 0) -> Path:
    """ROOT/<category>/{train/good, test/<type>, ground_truth/<type>} with 64x64 PNGs."""
    rng = np.random.default_rng(seed)
    cat = root / category
    for i in range(n_train):
        _write(cat / "train" / "good" / f"{i:03d}.png", _good(rng, MVTEC_HW))
    for i in range(n_good):
        _write(cat / "test" / "good" / f"{i:03d}.png", _good(rng, MVTEC_HW))
    k = 0
    for defect, n in defects:
        for i in range(n):
            img, mask = _defect(rng, MVTEC_HW, k)
            k += 1
            _write(cat / "test" / defect / f"{i:03d}.png", img)
            _write(cat / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return root


def make_fake_visa(root: Path, category: str = "candle", n_train: int = 6, n_normal: int = 3,
                   n_anomaly: int = 3, seed: int = 1) -> Path:
    """VisA-style ROOT/<category>/Data/{Images,Masks} JPG/PNGs plus ROOT/split_csv/1cls.csv.

    Masks hold class indices (0 background, 1 / 2 defects) like VisA's, not 0/255.
    """
    rng = np.random.default_rng(seed)
    rows = ["object,split,label,image,mask"]
    for i in range(n_train + n_normal):
        rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
        _write(root / rel, _good(rng, VISA_HW))
        rows.append(f"{category},{'train' if i < n_train else 'test'},normal,{rel},")
    for i in range(n_anomaly):
        img, mask = _defect(rng, VISA_HW, i)
        rel = f"{category}/Data/Images/Anomaly/{i:03d}.JPG"
        rel_mask = f"{category}/Data/Masks/Anomaly/{i:03d}.png"
        _write(root / rel, img)
        _write(root / rel_mask, (mask > 0).astype(np.uint8) * (1 + i % 2))
        rows.append(f"{category},test,anomaly,{rel},{rel_mask}")
    # Another object whose files do not exist: must be ignored for `category`.
    rows.append("pcb1,test,normal,pcb1/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


# --------------------------------------------------------------------------------------------
def test_mvtec_layout(tmp_path):
    root = make_fake_mvtec(tmp_path)
    ds = MVTecAD(root, "bottle")
    assert ds.name == "mvtec"
    assert len(ds.train) == 8 and all(s.label == 0 and s.mask_path is None for s in ds.train)
    paths = [s.path for s in ds.test]
    assert paths == sorted(paths)
    assert paths[0] == "bottle/test/broken/000.png"
    assert [s.defect_type for s in ds.test] == ["broken"] * 3 + ["crack"] * 2 + ["good"] * 4
    assert [s.label for s in ds.test] == [1] * 5 + [0] * 4
    crack = ds.test[3]
    assert crack.abs_path == root / "bottle" / "test" / "crack" / "000.png"
    assert crack.mask_path == root / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    assert ds.test[-1].mask_path is None
    image = ds.load_image(crack)
    assert image.shape == (*MVTEC_HW, 3) and image.dtype == np.uint8
    mask = ds.load_mask(crack, image.shape)
    assert mask.dtype == bool and mask.sum() == 144
    assert not ds.load_mask(ds.test[-1], image.shape).any()


def test_mvtec_missing_category_and_mask(tmp_path):
    root = make_fake_mvtec(tmp_path)
    with pytest.raises(DatasetError, match=r"'cable' not found.*cable"):
        MVTecAD(root, "cable")
    (root / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"1 ground-truth mask\(s\) missing.*crack/001_mask.png"):
        MVTecAD(root, "bottle")


def test_visa_layout(tmp_path):
    root = make_fake_visa(tmp_path)
    ds = VisA(root, "candle")
    assert ds.name == "visa"
    assert [s.path for s in ds.train] == [f"candle/Data/Images/Normal/{i:04d}.JPG" for i in range(6)]
    assert [s.label for s in ds.test] == [1, 1, 1, 0, 0, 0]
    assert [s.defect_type for s in ds.test] == ["anomaly"] * 3 + ["good"] * 3
    sample = ds.test[1]  # mask values are 2, not 255
    image = ds.load_image(sample)
    assert image.shape == (*VISA_HW, 3)
    mask = ds.load_mask(sample, image.shape)
    assert mask.shape == VISA_HW and mask.sum() == 144
    assert not ds.load_mask(ds.test[-1], image.shape).any()
    # split_csv may also be given explicitly, relative to ROOT
    assert [s.path for s in VisA(root, "candle", "split_csv/1cls.csv").test] == [s.path for s in ds.test]


def test_visa_errors(tmp_path):
    root = make_fake_visa(tmp_path)
    with pytest.raises(DatasetError, match=r"'capsules' is not in .*candle, pcb1"):
        VisA(root, "capsules")
    with pytest.raises(DatasetError, match=r"1cls.csv.*VisA repository"):
        VisA(tmp_path / "elsewhere", "candle")
    (root / "candle" / "Data" / "Masks" / "Anomaly" / "002.png").unlink()
    with pytest.raises(DatasetError, match=r"not found: .*Anomaly/002.png"):
        VisA(root, "candle")
    (root / "split_csv" / "1cls.csv").write_text("object,image\ncandle,x.JPG\n")
    with pytest.raises(DatasetError, match="missing column"):
        VisA(root, "candle")


def test_detect_layout(tmp_path):
    mv = make_fake_mvtec(tmp_path / "mvtec")
    vi = make_fake_visa(tmp_path / "visa")
    assert detect_layout(mv, "bottle") == "mvtec"
    assert detect_layout(vi, "candle") == "visa"
    assert isinstance(open_dataset(vi, "candle"), VisA)
    assert isinstance(open_dataset(mv, "bottle", "mvtec"), MVTecAD)
    with pytest.raises(DatasetError, match=r"train/good.*test.*split_csv/1cls.csv"):
        detect_layout(tmp_path / "empty", "bottle")
    (vi / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetError, match="looks like VisA"):
        detect_layout(vi, "candle")
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset(mv, "bottle", "kolektor")


def test_read_image_is_rgb_and_names_bad_files(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    _write(tmp_path / "red.png", rgb)
    out = read_image(tmp_path / "red.png")
    assert out.shape == (5, 7, 3) and out[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageDecodeError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ImageDecodeError, match=r"missing.png: image file not found"):
        read_image(tmp_path / "missing.png")


def test_read_mask_variants(tmp_path):
    gray = np.zeros((4, 6), np.uint8)
    gray[1, 2] = 1
    _write(tmp_path / "idx.png", gray)
    assert read_mask(tmp_path / "idx.png").sum() == 1
    wide = np.zeros((4, 6), np.uint16)
    wide[0, 0] = 65535
    _write(tmp_path / "wide.png", wide)
    assert read_mask(tmp_path / "wide.png").sum() == 1
    color = np.zeros((4, 6, 3), np.uint8)
    color[3, 5] = (0, 0, 9)
    _write(tmp_path / "color.png", color)
    m = read_mask(tmp_path / "color.png")
    assert m.shape == (4, 6) and m[3, 5] and m.sum() == 1


def test_mask_with_wrong_size(tmp_path):
    root = make_fake_mvtec(tmp_path)
    bad = root / "bottle" / "ground_truth" / "broken" / "001_mask.png"
    _write(bad, np.zeros((32, 64), np.uint8))
    ds = MVTecAD(root, "bottle")
    sample = ds.test[1]
    with pytest.raises(DatasetError, match=r"001_mask.png: mask is 64x32 .* is 64x64"):
        ds.load_mask(sample, ds.load_image(sample).shape)


def test_select_shots(tmp_path):
    pool = MVTecAD(make_fake_mvtec(tmp_path), "bottle").train
    shuffled = random.Random(3).sample(pool, len(pool))
    a = select_shots(shuffled, 3, seed=0)
    assert a == select_shots(pool, 3, seed=0)  # input order does not matter
    assert a == random.Random(0).sample(sorted(pool, key=lambda s: s.path), 3)
    assert [s.path for s in a] != [s.path for s in select_shots(pool, 3, seed=1)]
    assert select_shots(pool, 0, seed=0) == []
    assert len(select_shots(pool, 8, seed=0)) == 8
    with pytest.raises(ValueError, match="only 8 good"):
        select_shots(pool, 9, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        select_shots(pool, -1, seed=0)
