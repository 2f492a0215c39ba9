"""Few-shot training data: ``good/``, ``defect/<class>/`` and optional ``defect/<class>/masks/``.

Every image is read, cropped to the line's ROI (masks too, so they stay aligned with what the
backbone sees) and hashed. A file that cannot be used is reported by name with the reason and
skipped; the run goes on with the rest. Splits are stratified by good / defect class and seeded,
with k-fold for sets too small for a hold-out, and nested (:func:`nest_folds`): each outer fold's
training images are split again into inner-training (fits the heads) and inner-validation (chooses
epochs, head weights, standardisation and the operating threshold); the outer validation images judge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config.training import TrainingSpec, ValidationSpec
from inspector.engine.fewshot import walk_fewshot
from inspector.errors import ImageDecodeError
from inspector.frames.imaging import IMAGE_SUFFIXES, load_image
from inspector.frames.preprocess import crop_roi
from inspector.training.errors import InsufficientDataError

_logger = logging.getLogger(__name__)

MASK_DIR = "masks"


@dataclass(frozen=True, eq=False)
class Sample:
    """One training image (ROI applied) with what is known about it."""

    key: str  # path relative to the few-shot folder (posix), or "synthetic/<method>/<source key>/<k>"
    image: np.ndarray  # HxWx3 RGB uint8
    label: int  # 0 good, 1 defect
    defect: str | None  # defect class (folder name); "synthetic" for synthesised defects
    mask: np.ndarray | None  # HxW uint8 in {0, 1}; None = a defect image without a mask
    sha256: str  # of the file bytes (real images) or of the pixels (synthetic)
    group: int  # source image: a synthetic defect shares the group of the good image it was made from
    synthetic: bool = False

    @property
    def has_mask(self) -> bool:
        return self.mask is not None


@dataclass
class FewShotData:
    """The usable images of one few-shot folder, and the files that had to be skipped (with why)."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def n_good(self) -> int:
        return sum(1 for s in self.samples if s.label == 0)

    @property
    def n_defect(self) -> int:
        return sum(1 for s in self.samples if s.label == 1)

    @property
    def classes(self) -> tuple[str, ...]:
        """Real defect classes, sorted."""
        return tuple(sorted({s.defect for s in self.samples if s.defect is not None and not s.synthetic}))

    def file_record(self) -> list[dict[str, str | int]]:
        """Name, sha256 and label of every image used: the data a version was trained on."""
        return [{"file": s.key, "sha256": s.sha256, "label": s.defect or "good", "mask": int(s.has_mask)}
                for s in self.samples]


def pixels_sha256(image: np.ndarray) -> str:
    """Hash of an image's pixels and shape (for images that have no file: synthetic defects)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _read(path: Path, roi: tuple[int, int, int, int] | None) -> tuple[np.ndarray, str, tuple[int, int]]:
    """The ROI crop of an image file, the file's sha256 and the full frame's (height, width)."""
    data = path.read_bytes()
    frame = load_image(path)
    image = crop_roi(frame, roi)
    return np.ascontiguousarray(image), hashlib.sha256(data).hexdigest(), (frame.shape[0], frame.shape[1])


def _find_mask(class_dir: Path, image_path: Path) -> Path | None:
    folder = class_dir / MASK_DIR
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{image_path.stem}{suffix}", folder / f"{image_path.stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_mask(path: Path, shape: tuple[int, int], roi: tuple[int, int, int, int] | None,
               frame_shape: tuple[int, int]) -> np.ndarray:
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        msg = f"{path}: not a decodable mask image"
        raise ImageDecodeError(msg)
    if raw.shape[:2] == frame_shape and roi is not None:
        raw = crop_roi(raw, roi)
    if raw.shape[:2] != shape:
        _logger.warning("mask %s is %dx%d, its image %dx%d: resized", path, raw.shape[1], raw.shape[0],
                        shape[1], shape[0])
        raw = cv2.resize(raw, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return (raw > 0).astype(np.uint8)


def load_fewshot(folder: Path, roi: tuple[int, int, int, int] | None = None) -> FewShotData:
    """Read the few-shot folder; unreadable / unsupported files are reported by name and skipped."""
    folder = Path(folder)
    if not (folder / "good").is_dir():
        msg = (f"{folder}: no good/ folder. Put images of good parts in {folder / 'good'} and defect images "
               f"in {folder / 'defect'}/<class>/ (masks, optional, in <class>/masks/ with the same file name)")
        raise InsufficientDataError(msg)
    files = walk_fewshot(folder)
    data = FewShotData(root=folder, skipped=list(files.stray))
    entries: list[tuple[Path, str | None, Path | None]] = [(p, None, None) for p in files.good]
    for name, paths in files.defects.items():
        entries += [(p, name, p.parent) for p in paths]
    for path, defect, class_dir in entries:
        key = path.relative_to(folder).as_posix()
        try:
            image, sha, frame_shape = _read(path, roi)
        except (ImageDecodeError, OSError) as exc:
            data.skipped.append(str(exc) if isinstance(exc, ImageDecodeError) else f"{path}: cannot read ({exc})")
            continue
        mask: np.ndarray | None = None
        if defect is None:
            mask = np.zeros(image.shape[:2], np.uint8)  # a good part has no defect pixels
        elif class_dir is not None and (mask_path := _find_mask(class_dir, path)) is not None:
            try:
                mask = _read_mask(mask_path, image.shape[:2], roi, frame_shape)
            except (ImageDecodeError, OSError) as exc:
                data.skipped.append(f"{mask_path}: mask unreadable ({exc}); {key} is used without a mask")
        data.samples.append(Sample(key, image, 0 if defect is None else 1, defect, mask, sha,
                                   group=len(data.samples)))
    for reason in data.skipped:
        _logger.warning("training data skipped: %s", reason)
    return data


def check_enough(data: FewShotData, spec: TrainingSpec, synthesis: bool) -> None:
    """Raise InsufficientDataError saying how many more images of which kind are needed."""
    problems = []
    if data.n_good < spec.min_good_images:
        need = spec.min_good_images - data.n_good
        problems.append(f"{data.n_good} usable good image(s) in {data.root / 'good'}, training needs at least "
                        f"{spec.min_good_images}: add {need} more")
    if data.n_defect == 0 and not synthesis:
        problems.append(f"no defect images in {data.root / 'defect'}/<class>/ and training.synthesis.mode is "
                        "'off': add at least 1 defect image (2 or more per class are better) or set "
                        "training.synthesis.mode to 'auto'")
    if problems:
        skipped = f" ({len(data.skipped)} file(s) were skipped, see above)" if data.skipped else ""
        raise InsufficientDataError("not enough training data" + skipped + ":\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------------------ splits
@dataclass(frozen=True)
class Fold:
    """Indices (into the real samples) used to train and to validate one model."""

    train: tuple[int, ...]
    val: tuple[int, ...]


def _rank(seed: int | str, sha256: str) -> str:
    """Seeded, data-independent order key of an image (adding images never reorders the others)."""
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def _stratified_order(samples: Sequence[Sample], label: int, seed: int | str) -> list[int]:
    """Indices of one label in seeded order within each class, interleaved class by class."""
    by_class: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if s.label == label:
            by_class.setdefault(s.defect or "good", []).append(i)
    queues = [sorted(v, key=lambda i: _rank(seed, samples[i].sha256)) for _, v in sorted(by_class.items())]
    order: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def _holdout(samples: Sequence[Sample], orders: list[list[int]], fraction: float, known: dict[str, int]
             ) -> list[int]:
    """Validation indices: remembered images keep their side; new ones fill each label up to its share."""
    val: list[int] = []
    for order in orders:
        if not order:
            continue
        target = min(max(1, round(len(order) * fraction)), len(order) - 1)
        side = {i: known.get(samples[i].sha256) for i in order}
        chosen = [i for i in order if side[i] == 1]
        chosen += [i for i in order if side[i] is None][: max(0, target - len(chosen))]
        if not chosen:  # every image of this label was trained on: hold one out (that costs no encoding)
            chosen = [order[0]]
        val += chosen[: len(order) - 1]  # keep at least one image of the label to train on
    return val


def make_folds(samples: Sequence[Sample], spec: ValidationSpec, seed: int, previous: dict[str, Any] | None = None
               ) -> tuple[str, list[Fold], dict[str, Any]]:
    """Stratified hold-out, or k-fold when a hold-out would leave a class with too few images.

    ``previous`` is the assignment record of the line's last run: an image keeps its side (or
    fold), so the validation set stays the same from one retraining to the next - the gate then
    compares versions on the same images, and a retraining encodes only the images that are new.
    Returns the mode (``holdout`` / ``kfold``), the folds and the record to keep for next time.
    """
    previous = previous or {}
    goods = _stratified_order(samples, 0, seed)
    defects = _stratified_order(samples, 1, seed)
    counts = [len(goods)] + ([len(defects)] if defects else [])
    mode = spec.split
    if mode == "auto":
        enough = all(round(n * spec.fraction) >= spec.min_per_class and n - round(n * spec.fraction) >= 2
                     for n in counts)
        mode = "holdout" if enough else "kfold"
    record = {"holdout": dict(previous.get("holdout", {})), "kfold": dict(previous.get("kfold", {}))}
    if mode == "holdout":
        val = _holdout(samples, [goods, defects], spec.fraction, record["holdout"])
        train = sorted(set(range(len(samples))) - set(val))
        record["holdout"].update({samples[i].sha256: int(i in val) for i in range(len(samples))})
        return "holdout", [Fold(tuple(train), tuple(sorted(val)))], record
    k = min(spec.folds, len(goods))
    if k < 2:
        msg = f"k-fold validation needs at least 2 good images, got {len(goods)}"
        raise InsufficientDataError(msg)
    known = {sha: f for sha, f in record["kfold"].get("fold", {}).items()} if record["kfold"].get("k") == k else {}
    assign: dict[int, int] = {}
    for order in (goods, defects):
        sizes = [0] * k
        for i in order:
            f = known.get(samples[i].sha256)
            if f is not None and 0 <= f < k:
                assign[i] = f
                sizes[f] += 1
        for i in order:
            if i not in assign:
                f = sizes.index(min(sizes))
                assign[i] = f
                sizes[f] += 1
    record["kfold"] = {"k": k, "fold": {**known, **{samples[i].sha256: f for i, f in assign.items()}}}
    folds = []
    for f in range(k):
        val = sorted(i for i, a in assign.items() if a == f)
        train = sorted(i for i, a in assign.items() if a != f)
        if val:
            folds.append(Fold(tuple(train), tuple(val)))
    return "kfold", folds, record


# ------------------------------------------------------------------------------------ nested splits
# An inner split needs 2 good images to fit on (the patch memory and the references leave one out)
# and 1 to choose with; the outer fold needs 1 more to judge.
MIN_INNER_TRAIN_GOOD = 2
# The inner-validation share of an outer training set: at least a third, so the few images that choose the
# standardisation and the threshold are not one or two.
INNER_MIN_FRACTION = 1 / 3


@dataclass(frozen=True)
class NestedFold:
    """One outer fold: its training images split again. Indices into the real samples."""

    inner_train: tuple[int, ...]  # fit the heads (and the engine's base heads)
    inner_val: tuple[int, ...]  # choose epochs, head weights, standardisation, operating threshold
    outer_val: tuple[int, ...]  # judge: chose nothing

    @property
    def outer_train(self) -> tuple[int, ...]:
        return tuple(sorted(self.inner_train + self.inner_val))


def inner_split(samples: Sequence[Sample], train: Sequence[int], fraction: float, seed: int
                ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(inner-train, inner-val) of an outer training set, stratified and seeded; None when too small.

    Good images: at least 2 stay to fit on and 1 goes to choose with (else None). Defect images:
    one or more go to inner-val when there are 2 or more (else inner-val has no defect).
    """
    subset = [samples[i] for i in train]
    val: list[int] = []
    for label, keep in ((0, MIN_INNER_TRAIN_GOOD), (1, 1)):
        order = [train[j] for j in _stratified_order(subset, label, f"inner:{seed}")]
        n_val = min(max(1, round(len(order) * fraction)), len(order) - keep)
        if label == 0 and n_val < 1:
            return None
        val += order[: max(n_val, 0)]
    return tuple(sorted(set(train) - set(val))), tuple(sorted(val))


def nest_folds(samples: Sequence[Sample], spec: ValidationSpec, seed: int, previous: dict[str, Any] | None = None
               ) -> tuple[str, list[NestedFold], dict[str, Any], list[str]]:
    """Outer folds (:func:`make_folds`), each with its inner split; (mode, folds, record, notes).

    When an outer training set is too small to split again, the outer split degrades - hold-out to
    k-fold, then more folds (larger training sets, up to leave-one-good-out) - and a note says so;
    it never falls back to choosing on the judging data. Too few good images for any nesting raise.
    """
    mode, folds, record = make_folds(samples, spec, seed, previous)
    notes: list[str] = []

    def nested(outer: list[Fold]) -> list[NestedFold] | None:
        out = []
        for fold in outer:
            split = inner_split(samples, fold.train, max(spec.fraction, INNER_MIN_FRACTION), seed)
            if split is None:
                return None
            out.append(NestedFold(split[0], split[1], fold.val))
        return out

    result = nested(folds)
    n_good = sum(1 for s in samples if s.label == 0)
    k = len(folds) if mode == "kfold" else 1
    before = f"{mode} ({len(folds)} fold{'s' if len(folds) > 1 else ''})"
    while result is None and k < n_good:
        k += 1
        mode, folds, record = make_folds(samples, spec.model_copy(update={"split": "kfold", "folds": k}), seed,
                                         previous)
        result = nested(folds)
        if result is not None:
            notes.append(f"outer split {before} left a training set with fewer than {MIN_INNER_TRAIN_GOOD + 1} good "
                         f"images to split again: raised to {len(folds)}-fold (more, smaller judging folds)")
    if result is None:
        msg = (f"{n_good} good image(s): an honest gate needs at least {MIN_INNER_TRAIN_GOOD + 2} "
               f"({MIN_INNER_TRAIN_GOOD} to fit on, 1 to choose the epochs / weights / threshold with, 1 to judge)")
        raise InsufficientDataError(msg)
    return mode, result, record, notes
