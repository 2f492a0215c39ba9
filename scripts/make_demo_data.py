"""Regenerate fewshot_data/demo/ (the embedded demo line's images) deterministically.

    .venv/bin/python scripts/make_demo_data.py

Same code, seed and numpy/OpenCV versions -> byte-identical PNGs, so a rerun shows no git diff.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspector.demo.dataset import write_dataset

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / "fewshot_data" / "demo"
COMMAND = ".venv/bin/python scripts/make_demo_data.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="output folder (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = write_dataset(
        args.root,
        n_good_train=8,
        n_defect_per_kind=2,
        n_test_good=8,
        n_test_defect_per_kind=2,
        size=(256, 256),
        seed=args.seed,
        overwrite=True,
        command=COMMAND if args.root.resolve() == DEFAULT_ROOT and args.seed == 0 else None,
    )
    print(f"wrote {summary['n_files']} files, {summary['bytes'] / 1e6:.2f} MB to {summary['root']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
