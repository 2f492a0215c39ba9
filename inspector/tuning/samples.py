"""A line's few-shot sample folder as the engineer edits it: capture a frame, list the samples, delete one.

The listing is :func:`~inspector.engine.fewshot.walk_fewshot`'s, so the store shows exactly the files a
fit reads (deleted samples in ``.deleted/`` and other hidden entries are not among them).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.engine.fewshot import DEFECT, GOOD, walk_fewshot

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# Operator feedback waits here (same layout: good/, defect/<class>/) until the engineer accepts it into the set;
# hidden, so a fit never reads a part nobody with the PIN has looked at.
CANDIDATES = ".candidates"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # GOOD or the defect class


class SampleStore:
    """A line's few-shot folder: ``good/*.png`` and ``defect/<class>/*.png``.

    Deleting moves a file to ``.deleted/`` (the fit never reads it), so a wrong click can be undone by hand.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def dir_for(self, label: str) -> Path:
        if label == GOOD:
            return self.folder / GOOD
        if not label or _SAFE.search(label) or label.startswith("."):
            msg = f"defect class {label!r} must be 1-64 of [A-Za-z0-9_.-]"
            raise ValueError(msg)
        return self.folder / DEFECT / label

    def samples(self) -> list[Sample]:
        files = walk_fewshot(self.folder)
        return [Sample(p, GOOD) for p in files.good] + [
            Sample(p, name) for name, paths in files.defects.items() for p in paths]

    def add(self, image: np.ndarray, label: str, part_id: str = "") -> Path:
        """Write an RGB frame as a lossless PNG into the label's folder (atomically); returns its path."""
        folder = self.dir_for(label)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        stem = f"{label}_{stamp}" + (f"_{_SAFE.sub('_', part_id)[:40]}" if part_id else "")
        path = folder / f"{stem}.png"
        k = 1
        while path.exists():
            path = folder / f"{stem}_{k}.png"
            k += 1
        ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        if not ok:
            msg = "PNG encoding of the frame failed"
            raise ValueError(msg)
        fd, tmp = tempfile.mkstemp(prefix=".capture.", suffix=".png", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
        os.replace(tmp, path)
        return path

    def candidates(self) -> SampleStore:
        """The operators' proposals for this folder (``.candidates/``), as a store of their own."""
        return SampleStore(self.folder / CANDIDATES)

    def accept(self, candidate: Path) -> Path:
        """Move a candidate (a file of :meth:`candidates`) into the set, same label; returns its new path."""
        candidate = Path(candidate).resolve()
        rel = candidate.relative_to((self.folder / CANDIDATES).resolve())
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}_{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}")
        shutil.move(str(candidate), target)
        return target

    def delete(self, path: Path) -> Path:
        """Move a sample to ``.deleted/`` (keeping its relative path); returns where it went."""
        path = Path(path).resolve()
        rel = path.relative_to(self.folder.resolve())
        target = self.folder / ".deleted" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}_{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}")
        shutil.move(str(path), target)
        return target
