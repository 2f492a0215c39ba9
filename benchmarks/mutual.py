"""Mutual scoring vs references vs zero-shot on the synthetic lines, through the `inspector eval` protocol.

    python benchmarks/mutual.py                       # tiny random-weight ViT, 64 px: minutes on 2 cores
    python benchmarks/mutual.py --model ViT-B-16-plus-240 --pretrained laion400m_e32 --image-size 240

Writes each synthetic line (the demo's ring parts, the woven and brushed textures) in the MVTec AD
layout (``ROOT/<category>/{train/good,test/<kind>,ground_truth/<kind>}``; train parts from stream 0,
test parts from stream 1 of the seed, ~14 % defective), then runs ``inspector eval`` on it in each
mode (0-shot zero-shot, 0-shot mutual, 0-shot mutual with a buffer, 1-shot, 4-shot, 4-shot + mutual)
and prints image AUROC / pixel AUROC / AUPRO per mode, mean over lines and seeds. Every figure is
in the run's metrics.json and recomputes from its scores.csv (and maps.h5 with --save-maps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np

from inspector.demo.parts import PartGenerator
from inspector.demo.textures import TextureGenerator

LINES = ("ring", "woven", "brushed")
MODES: dict[str, list[str]] = {
    "zero-shot": ["--shots", "0"],
    "mutual": ["--shots", "0", "--mutual"],
    "mutual-b16": ["--shots", "0", "--mutual", "--buffer", "16"],
    "1-shot": ["--shots", "1", "--no-zero-shot"],
    "4-shot": ["--shots", "4", "--no-zero-shot"],
    "4-shot+mutual": ["--shots", "4", "--mutual"],
    "mutual-r3": ["--shots", "0", "--mutual", "--neighbourhood", "3"],
    "1-shot-r3": ["--shots", "1", "--no-zero-shot", "--neighbourhood", "3"],
    "1-shot-top1": ["--shots", "1", "--no-zero-shot", "--image-score", "top1"],
    # Zero-shot dense map options (zeroshot.dense / dpam_blocks / map_pool); the tiny ViT has 4 blocks.
    "zero-shot-dpam2": ["--shots", "0", "--zs-dense", "dpam", "--dpam-blocks", "2"],
    "zero-shot-dpam3": ["--shots", "0", "--zs-dense", "dpam", "--dpam-blocks", "3"],
    "zero-shot-pool3": ["--shots", "0", "--zs-map-pool", "3"],
    "zero-shot-dpam2-pool3": ["--shots", "0", "--zs-dense", "dpam", "--dpam-blocks", "2", "--zs-map-pool", "3"],
    "zero-shot-dpam3-pool3": ["--shots", "0", "--zs-dense", "dpam", "--dpam-blocks", "3", "--zs-map-pool", "3"],
}


def _generator(line: str, size: int, seed: int, stream: int):
    if line == "ring":
        return PartGenerator((size, size), seed=seed, stream=stream)
    return TextureGenerator(line, (size, size), seed=seed, stream=stream)


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), data):
        msg = f"could not write {path}"
        raise OSError(msg)


def write_synthetic_mvtec(root: Path, line: str, seed: int = 0, n_train: int = 8, n_good: int = 43,
                          n_defect: int = 7, size: int = 128) -> Path:
    """One synthetic line as an MVTec AD category ``<line>`` under ``root``; returns ``root``."""
    cat = root / line
    train = _generator(line, size, seed, 0)
    for i in range(n_train):
        _png(cat / "train" / "good" / f"{i:03d}.png", train.render(i + 1).image)
    test = _generator(line, size, seed, 1)
    kinds = test.defect_kinds
    for i in range(n_good):
        _png(cat / "test" / "good" / f"{i:03d}.png", test.render(i + 1).image)
    for i in range(n_defect):
        kind = kinds[i % len(kinds)]
        part = test.render(n_good + i + 1, kind)
        _png(cat / "test" / kind / f"{i:03d}.png", part.image)
        _png(cat / "ground_truth" / kind / f"{i:03d}_mask.png", part.mask)
    return root


def main(argv: list[str] | None = None) -> int:
    from inspector.cli import main as cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("benchmarks/results/mutual-work"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lines", nargs="+", default=list(LINES), choices=LINES)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--model", default="inspector-tiny-vit")
    p.add_argument("--pretrained", default="random")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--size", type=int, default=128, help="side of the synthetic images, px")
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON")
    args = p.parse_args(argv)
    rows: dict[str, list[dict]] = {m: [] for m in args.modes}
    for seed in args.seeds:
        root = args.work / f"data-seed{seed}"
        for line in args.lines:
            if not (root / line).is_dir():
                write_synthetic_mvtec(root, line, seed, size=args.size)
            for mode in args.modes:
                out = args.work / f"seed{seed}" / line / mode
                cmd = ["eval", str(root), "--category", line, *MODES[mode], "--seed", str(seed),
                       "--model", args.model, "--pretrained", args.pretrained, "--image-size", str(args.image_size),
                       "--out", str(out)]
                print("inspector " + " ".join(cmd), flush=True)
                if cli(cmd) != 0:
                    return 1
                rows[mode].append(json.loads((out / "metrics.json").read_text()))
    table = {}
    print(f"\n{'mode':<16}{'image AUROC':>12}{'pixel AUROC':>12}{'AUPRO':>8}   (mean over {len(args.lines)} lines x "
          f"{len(args.seeds)} seeds)")
    for mode, ms in rows.items():
        vals = {k: float(np.mean([m[k] for m in ms])) for k in ("image_auroc", "pixel_auroc", "pixel_aupro")}
        table[mode] = vals | {"per_run": [{k: m[k] for k in ("category", "seed", "image_auroc")} for m in ms]}
        print(f"{mode:<16}{100 * vals['image_auroc']:>12.1f}{100 * vals['pixel_auroc']:>12.1f}"
              f"{100 * vals['pixel_aupro']:>8.1f}")
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
