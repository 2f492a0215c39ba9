"""The demo data set writer: layout, train/test separation, determinism, no silent overwrite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import pytest

from inspector.demo.dataset import write_dataset
from inspector.demo.defects import DEFECT_KINDS


def _digest(path: Path) -> str:
    return hashlib.sha256(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes()).hexdigest()


def test_write_dataset_layout(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    summary = write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0)
    assert sorted(p.name for p in (root / "good").iterdir()) == ["good_000.png", "good_001.png", "good_002.png"]
    for kind in DEFECT_KINDS:
        assert sorted(p.name for p in (root / "defect" / kind).glob("*.png")) == [f"{kind}_000.png"]
        mask = cv2.imread(str(root / "defect" / kind / "masks" / f"{kind}_000.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (96, 96) and mask.any()
    tests = sorted(p.name for p in (root / "test").glob("*.png"))
    labels = [name.removesuffix(".png").split("_", 2)[2] for name in tests]
    assert sorted(labels) == sorted(["good", "good", *DEFECT_KINDS])
    assert [n.split("_")[1] for n in tests] == [f"{i:03d}" for i in range(len(tests))]
    for name, label in zip(tests, labels):
        image = cv2.imread(str(root / "test" / name), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(root / "test" / "masks" / name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert mask.any() == (label != "good")
    assert (root / "README.md").read_text().count("good/good_NNN.png") == 1
    assert summary["test"]["good"] == 2 and summary["defect"] == dict.fromkeys(DEFECT_KINDS, 1)
    # Train and test never share an image.
    train = {_digest(p) for p in root.glob("good/*.png")} | {_digest(p) for p in root.glob("defect/*/*.png")}
    assert not train & {_digest(p) for p in root.glob("test/*.png")}
    # Deterministic; refuses to overwrite unless asked.
    with pytest.raises(FileExistsError):
        write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")}
    write_dataset(root, 3, 1, 2, 1, size=(96, 96), seed=0, overwrite=True)
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")} == before
