"""The demo few-shot data set on disk: good, defect and test PNGs with masks, and its README."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.demo.defects import DEFECT_KINDS, MASK_THRESHOLD
from inspector.demo.parts import PartGenerator, check_size


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_FILTERED]
    ok, buf = cv2.imencode(".png", data, params)
    if not ok:
        msg = f"could not encode {path} as PNG"
        raise OSError(msg)
    path.write_bytes(buf.tobytes())


_README = """# Synthetic demo line data

Images for the embedded demo line: a machined steel ring (flange with a keyway and four bolt
holes) on a dark conveyor belt, {h}x{w} RGB PNG. There is no real camera or part in this project;
the images are rendered by `inspector.demo.parts` (random position jitter, rotation, radii,
lighting, turning marks, lens blur and sensor noise).

Defects planted on the ring: {kinds}. Masks are single-channel PNGs, 255 where the defect
covers the ring (coverage >= {thr}), all zero for good parts.

Regenerate (deterministic: with the same numpy/OpenCV versions the PNGs come out byte-identical):

    {command}

Parameters: seed={seed}, size=({h}, {w}); train parts come from sub-stream 0 and test parts from
sub-stream 1 of that seed, so the two never share an image.

Layout:

- `good/good_NNN.png` - {n_good} good reference parts
- `defect/<kind>/<kind>_NNN.png` and `defect/<kind>/masks/<kind>_NNN.png` - {n_def} per kind
- `test/test_NNN_<label>.png` and `test/masks/test_NNN_<label>.png` - {n_tg} good + {n_td} per kind,
  shuffled; `<label>` is `good` or the defect kind
"""


def write_dataset(
    root: Path,
    n_good_train: int,
    n_defect_per_kind: int,
    n_test_good: int,
    n_test_defect_per_kind: int,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    *,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Write a few-shot dataset (layout in the README it writes) under ``root``; return a summary.

    Refuses to touch an existing ``good/``, ``defect/`` or ``test/`` under ``root`` unless
    ``overwrite``, in which case those folders are replaced.
    """
    for name, n in (
        ("n_good_train", n_good_train),
        ("n_defect_per_kind", n_defect_per_kind),
        ("n_test_good", n_test_good),
        ("n_test_defect_per_kind", n_test_defect_per_kind),
    ):
        if not isinstance(n, (int, np.integer)) or n < 0 or n > 999:
            msg = f"{name} must be an integer in [0, 999], got {n!r}"
            raise ValueError(msg)
    size = check_size(size)
    root = Path(root)
    subdirs = [root / "good", root / "defect", root / "test"]
    existing = [d for d in subdirs if d.exists()]
    if existing and not overwrite:
        msg = f"{existing[0]} already exists; pass overwrite=True to replace the dataset under {root}"
        raise FileExistsError(msg)
    for d in existing:
        shutil.rmtree(d)
    root.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    train = PartGenerator(size, seed, stream=0)
    for i in range(n_good_train):
        path = root / "good" / f"good_{i:03d}.png"
        _write_png(path, train.good().image)
        files.append(path)
    for kind in DEFECT_KINDS:
        for i in range(n_defect_per_kind):
            part = train.defective(kind)
            name = f"{kind}_{i:03d}.png"
            _write_png(root / "defect" / kind / name, part.image)
            _write_png(root / "defect" / kind / "masks" / name, part.mask)
            files += [root / "defect" / kind / name, root / "defect" / kind / "masks" / name]

    test = PartGenerator(size, seed, stream=1)
    labels = ["good"] * n_test_good + [k for k in DEFECT_KINDS for _ in range(n_test_defect_per_kind)]
    order = np.random.default_rng(np.random.SeedSequence([seed, 1, 0])).permutation(len(labels))
    test_items = []
    for i, j in enumerate(order):
        label = labels[int(j)]
        part = test.good() if label == "good" else test.defective(label)
        name = f"test_{i:03d}_{label}.png"
        _write_png(root / "test" / name, part.image)
        _write_png(root / "test" / "masks" / name, part.mask)
        files += [root / "test" / name, root / "test" / "masks" / name]
        test_items.append({"file": f"test/{name}", "label": label, "part_id": part.part_id})

    h, w = size
    readme = _README.format(
        h=h,
        w=w,
        kinds=", ".join(DEFECT_KINDS),
        thr=MASK_THRESHOLD,
        seed=seed,
        command=command
        or (
            'python -c "from pathlib import Path; from inspector.demo.dataset import write_dataset; '
            f"write_dataset(Path('{root.as_posix()}'), {n_good_train}, {n_defect_per_kind}, {n_test_good}, "
            f'{n_test_defect_per_kind}, size=({h}, {w}), seed={seed}, overwrite=True)"'
        ),
        n_good=n_good_train,
        n_def=n_defect_per_kind,
        n_tg=n_test_good,
        n_td=n_test_defect_per_kind,
    )
    (root / "README.md").write_text(readme, encoding="utf-8")
    return {
        "root": str(root),
        "size": [h, w],
        "seed": seed,
        "good": n_good_train,
        "defect": {k: n_defect_per_kind for k in DEFECT_KINDS},
        "test": {"good": n_test_good, **{k: n_test_defect_per_kind for k in DEFECT_KINDS}},
        "test_items": test_items,
        "n_files": len(files) + 1,
        "bytes": sum(f.stat().st_size for f in files) + (root / "README.md").stat().st_size,
    }
