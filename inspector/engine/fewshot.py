"""A line's few-shot folder: the one walk of it, and its images loaded for a fit.

The one walk of a line's few-shot folder: ``good/*`` and ``defect/<class>/*`` (masks in ``<class>/masks/``).

Every reader of the folder (the engine's fit, the fitted-state cache key, adapter training, the GUI's
sample store) lists it here, so they agree on which files count: image files directly inside
``good/`` and each ``defect/<class>/``; hidden entries (``.deleted/``, ``.DS_Store``) and the OS's
thumbnail files are not part of the set; anything else is reported by name.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspector.errors import ImageDecodeError
from inspector.frames.imaging import IMAGE_SUFFIXES, load_image

_logger = logging.getLogger(__name__)

GOOD = "good"
DEFECT = "defect"


def is_hidden(path: Path) -> bool:
    """Entries the few-shot set never contains: dot-files / dot-folders and OS thumbnail files."""
    return path.name.startswith(".") or path.name.lower() in ("thumbs.db", "desktop.ini")


@dataclass(frozen=True)
class FewShotFiles:
    """The image files of one few-shot folder, and what was found that is not part of it."""

    root: Path
    good: tuple[Path, ...] = ()
    defects: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # class -> files, classes sorted
    stray: tuple[str, ...] = ()  # one reason per file that is not an image or not in a class folder

    def defect_files(self) -> list[Path]:
        return [p for files in self.defects.values() for p in files]

    def selected(self, max_shots: int | None = None) -> list[Path]:
        """The files a fit reads: the first ``max_shots`` good images, then every defect image."""
        return [*self.good[:max_shots], *self.defect_files()]


def _images(folder: Path, stray: list[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or is_hidden(path):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            stray.append(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join(IMAGE_SUFFIXES)}")
            continue
        out.append(path)
    return out


def walk_fewshot(folder: Path) -> FewShotFiles:
    """List ``folder/good/*`` and ``folder/defect/<class>/*`` (a missing folder lists as empty)."""
    folder = Path(folder)
    stray: list[str] = []
    good = _images(folder / GOOD, stray)
    defects: dict[str, tuple[Path, ...]] = {}
    defect_root = folder / DEFECT
    if defect_root.is_dir():
        for loose in _images(defect_root, []):
            stray.append(f"{loose}: defect images go in a class folder, e.g. {defect_root / 'scratch' / loose.name}")
        for class_dir in sorted(p for p in defect_root.iterdir() if p.is_dir() and not is_hidden(p)):
            files = _images(class_dir, stray)
            if files:
                defects[class_dir.name] = tuple(files)
    return FewShotFiles(folder, tuple(good), defects, tuple(stray))


@dataclass
class FewShotSet:
    """Images of one line's few-shot folder, plus the files that had to be skipped."""

    good: list[np.ndarray] = field(default_factory=list)
    defects: dict[str, list[np.ndarray]] = field(default_factory=dict)
    good_paths: list[Path] = field(default_factory=list)
    defect_paths: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_folder(cls, folder: Path, max_shots: int | None = None) -> FewShotSet:
        """Read ``good/*`` and ``defect/<class>/*``; unreadable files are reported and skipped."""
        files = walk_fewshot(folder)
        out = cls(skipped=list(files.stray))
        for path in files.good[:max_shots]:
            try:
                out.good.append(load_image(path))
                out.good_paths.append(path)
            except ImageDecodeError as exc:
                out.skipped.append(str(exc))
        for name, paths in files.defects.items():
            for path in paths:
                try:
                    out.defects.setdefault(name, []).append(load_image(path))
                    out.defect_paths.append(path)
                except ImageDecodeError as exc:
                    out.skipped.append(str(exc))
        for reason in out.skipped:
            _logger.warning("few-shot image skipped: %s", reason)
        return out

    def file_record(self, root: Path) -> list[dict[str, str]]:
        """Name and sha256 of every image used: what a calibration was computed from."""
        return [{"file": str(p.relative_to(root)), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}
                for p in [*self.good_paths, *self.defect_paths]]
