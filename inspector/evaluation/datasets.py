"""MVTec AD and VisA test sets as deterministic sample lists, plus image / mask reading.

MVTec AD::

    ROOT/<category>/train/good/*.png                          few-shot pool
    ROOT/<category>/test/<defect_type>/*.png                  evaluation set ("good" = label 0)
    ROOT/<category>/ground_truth/<defect_type>/<name>_mask.png

VisA, through its official one-class split file ``ROOT/split_csv/1cls.csv`` (from the VisA
repository, github.com/amazon-science/spot-diff) with columns ``object,split,label,image,mask``;
``image`` and ``mask`` are relative to ROOT, ``label`` is ``normal`` or ``anomaly``. Train-split
normals are the few-shot pool, the test split is the evaluation set.

Sample paths are relative to ROOT (posix) and lists are sorted by that path.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import cv2
import numpy as np

from inspector.errors import ImageDecodeError, InspectorError

_logger = logging.getLogger(__name__)

Layout = Literal["mvtec", "visa"]
VISA_SPLIT_CSV = PurePosixPath("split_csv/1cls.csv")
_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VISA_SOURCE = ("VisA's official split file is split_csv/1cls.csv in the VisA repository "
                "(github.com/amazon-science/spot-diff); put it at ROOT/split_csv/1cls.csv or pass "
                "its path as split_csv")
_MAX_LISTED = 5


class DatasetError(InspectorError, ValueError):
    """A benchmark dataset folder, split file or ground-truth mask is missing or inconsistent."""


@dataclass(frozen=True)
class Sample:
    """One image of a benchmark split."""

    path: str  # relative to ROOT, posix separators: the key in scores.csv and maps.h5
    abs_path: Path
    label: int  # 0 good, 1 defect
    defect_type: str  # MVTec: the test sub-folder ("good", "broken_large", ...); VisA: good / anomaly
    mask_path: Path | None = None  # absolute; None = no defect pixels (all zeros)


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:_MAX_LISTED])
    return shown + (f" (and {len(paths) - _MAX_LISTED} more)" if len(paths) > _MAX_LISTED else "")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3) with OpenCV; raise ImageDecodeError naming the file."""
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: image file not found"
        raise ImageDecodeError(msg)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        msg = f"{path}: could not decode the image (corrupt or unsupported file)"
        raise ImageDecodeError(msg)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W): any value > 0 in a colour channel is anomalous.

    Read unchanged, so VisA's class-index masks (0 background, 1, 2, ... defects) and 16-bit
    masks stay exact; an alpha channel is ignored.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: ground-truth mask file not found"
        raise ImageDecodeError(msg)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0 or raw.ndim not in (2, 3):
        msg = f"{path}: could not decode the ground-truth mask (corrupt or unsupported file)"
        raise ImageDecodeError(msg)
    if raw.ndim == 3:
        raw = raw[:, :, :3].max(axis=2)
    return raw > 0


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------
class EvalDataset:
    """A category of a benchmark: the few-shot pool (``train``) and the evaluation set (``test``)."""

    name: Layout

    def __init__(self, root: Path, category: str, train: list[Sample], test: list[Sample]) -> None:
        self.root = root
        self.category = category
        self.train = train
        self.test = test

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, category={self.category!r}, "
                f"train={len(self.train)}, test={len(self.test)})")

    def load_image(self, sample: Sample) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        return read_image(sample.abs_path)

    def load_mask(self, sample: Sample, shape: tuple[int, ...]) -> np.ndarray:
        """Bool (H, W) ground truth of ``sample`` whose image has ``shape`` (H, W[, C])."""
        hw = tuple(shape[:2])
        if sample.mask_path is None:
            return np.zeros(hw, dtype=bool)
        mask = read_mask(sample.mask_path)
        if mask.shape != hw:
            msg = (f"{sample.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                   f"{sample.abs_path} is {hw[1]}x{hw[0]}; masks must have the image's size")
            raise DatasetError(msg)
        return mask


def _is_png(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".png"


def _scan_mvtec(root: Path, category: str) -> tuple[list[Sample], list[Sample]]:
    cat_dir = root / category
    train_dir, test_dir, gt_dir = cat_dir / "train" / "good", cat_dir / "test", cat_dir / "ground_truth"
    missing = [str(d) for d in (cat_dir, train_dir, test_dir) if not d.is_dir()]
    if missing:
        msg = (f"MVTec AD category {category!r} not found under {root}: missing folder(s) "
               f"{_listing(missing)}; expected ROOT/{category}/train/good and ROOT/{category}/test")
        raise DatasetError(msg)

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    train = [Sample(rel(p), p, 0, "good") for p in sorted(train_dir.iterdir()) if _is_png(p)]
    test: list[Sample] = []
    missing_masks: list[str] = []
    for type_dir in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        defect = type_dir.name
        for p in sorted(q for q in type_dir.iterdir() if _is_png(q)):
            if defect == "good":
                test.append(Sample(rel(p), p, 0, defect))
                continue
            mask = gt_dir / defect / f"{p.stem}_mask.png"
            if not mask.is_file():
                missing_masks.append(str(mask))
            test.append(Sample(rel(p), p, 1, defect, mask))
    if missing_masks:
        msg = f"MVTec AD {category!r}: {len(missing_masks)} ground-truth mask(s) missing: " + _listing(
            missing_masks)
        raise DatasetError(msg)
    if not test:
        msg = f"MVTec AD {category!r}: no .png images under {test_dir}/<defect_type>/"
        raise DatasetError(msg)
    test.sort(key=lambda s: s.path)
    return train, test


class MVTecAD(EvalDataset):
    """One MVTec AD category (see the module docstring for the layout)."""

    name: Layout = "mvtec"

    def __init__(self, root: str | Path, category: str) -> None:
        root = Path(root)
        train, test = _scan_mvtec(root, category)
        super().__init__(root, category, train, test)
        _logger.info("MVTec AD %s: %d test images (%d defect), %d good train images", category,
                     len(test), sum(s.label for s in test), len(train))


def _visa_csv_path(root: Path, split_csv: str | Path | None) -> Path:
    if split_csv is None:
        return root / VISA_SPLIT_CSV
    p = Path(split_csv)
    return p if p.is_absolute() else root / p


def _read_visa_split(root: Path, category: str, csv_path: Path) -> tuple[list[Sample], list[Sample]]:
    if not csv_path.is_file():
        msg = f"VisA split file not found: {csv_path}. {_VISA_SOURCE}"
        raise DatasetError(msg)
    train: list[Sample] = []
    test: list[Sample] = []
    objects: set[str] = set()
    missing: list[str] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in _VISA_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            msg = (f"{csv_path}: missing column(s) {absent}; expected header "
                   f"{','.join(_VISA_COLUMNS)}. {_VISA_SOURCE}")
            raise DatasetError(msg)
        for line_no, row in enumerate(reader, start=2):
            obj = (row["object"] or "").strip()
            objects.add(obj)
            if obj != category:
                continue
            split, label = (row["split"] or "").strip(), (row["label"] or "").strip()
            image = (row["image"] or "").strip().replace("\\", "/")
            mask = (row["mask"] or "").strip().replace("\\", "/")
            if split not in ("train", "test") or label not in ("normal", "anomaly") or not image:
                msg = (f"{csv_path}:{line_no}: expected split train/test, label normal/anomaly and an "
                       f"image path; got split={split!r} label={label!r} image={image!r}")
                raise DatasetError(msg)
            is_defect = label == "anomaly"
            if is_defect and not mask:
                msg = f"{csv_path}:{line_no}: anomaly image {image} has no mask path"
                raise DatasetError(msg)
            abs_image = root / image
            abs_mask = root / mask if is_defect else None
            for p in (abs_image, abs_mask):
                if p is not None and not p.is_file():
                    missing.append(str(p))
            sample = Sample(PurePosixPath(image).as_posix(), abs_image, int(is_defect),
                            "anomaly" if is_defect else "good", abs_mask)
            if split == "test":
                test.append(sample)
            elif not is_defect:
                train.append(sample)
    if category not in objects:
        msg = (f"VisA category {category!r} is not in {csv_path}; it lists: "
               f"{', '.join(sorted(objects)) or 'nothing'}")
        raise DatasetError(msg)
    if missing:
        msg = f"VisA {category!r}: {len(missing)} file(s) listed in {csv_path} not found: {_listing(missing)}"
        raise DatasetError(msg)
    if not test:
        msg = f"VisA {category!r}: {csv_path} lists no test images"
        raise DatasetError(msg)
    train.sort(key=lambda s: s.path)
    test.sort(key=lambda s: s.path)
    return train, test


class VisA(EvalDataset):
    """One VisA category from the official 1-class split (``ROOT/split_csv/1cls.csv`` by default).

    ``split_csv``: another split file, absolute or relative to ROOT.
    """

    name: Layout = "visa"

    def __init__(self, root: str | Path, category: str, split_csv: str | Path | None = None) -> None:
        root = Path(root)
        self.split_csv = _visa_csv_path(root, split_csv)
        train, test = _read_visa_split(root, category, self.split_csv)
        super().__init__(root, category, train, test)
        _logger.info("VisA %s: %d test images (%d defect), %d normal train images", category,
                     len(test), sum(s.label for s in test), len(train))


def detect_layout(root: str | Path, category: str) -> Layout:
    """'mvtec' when ROOT/<category>/{train/good,test} exist, else 'visa' when ROOT/split_csv/1cls.csv does."""
    root = Path(root)
    if (root / category / "train" / "good").is_dir() and (root / category / "test").is_dir():
        return "mvtec"
    if (root / VISA_SPLIT_CSV).is_file():
        return "visa"
    msg = (f"cannot tell the dataset layout of category {category!r} under {root}: looked for "
           f"{root / category / 'train' / 'good'} and {root / category / 'test'} (MVTec AD) and "
           f"{root / VISA_SPLIT_CSV} (VisA)")
    if not root.is_dir():
        msg += f"; {root} does not exist"
    elif (root / category / "Data").is_dir():
        msg += f". {root / category} looks like VisA: {_VISA_SOURCE}"
    raise DatasetError(msg)


def open_dataset(root: str | Path, category: str, dataset: str = "auto",
                 split_csv: str | Path | None = None) -> EvalDataset:
    """Open ``category`` as 'mvtec', 'visa' or 'auto' (:func:`detect_layout`; 'visa' if split_csv given)."""
    if dataset == "auto":
        dataset = "visa" if split_csv is not None else detect_layout(root, category)
    if dataset == "mvtec":
        if split_csv is not None:
            msg = "split_csv applies to VisA only"
            raise DatasetError(msg)
        return MVTecAD(root, category)
    if dataset == "visa":
        return VisA(root, category, split_csv)
    msg = f"unknown dataset {dataset!r}; use 'auto', 'mvtec' or 'visa'"
    raise DatasetError(msg)


def select_shots(pool: list[Sample], k: int, seed: int) -> list[Sample]:
    """``random.Random(seed).sample(pool sorted by path, k)`` - the few-shot references, in that order."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        msg = f"shots must be a whole number >= 0; got {k!r}"
        raise ValueError(msg)
    if k == 0:
        return []
    ordered = sorted(pool, key=lambda s: s.path)
    if k > len(ordered):
        msg = f"asked for {k} shots but the few-shot pool has only {len(ordered)} good image(s)"
        raise ValueError(msg)
    return random.Random(seed).sample(ordered, k)
