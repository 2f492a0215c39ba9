"""Run `inspector bench` on two git revisions of this repository, interleaved, in one session.

A refactor must not slow the core down; on a noisy shared machine that is only visible as a
ratio measured in the same run. Each revision is checked out into a temporary worktree and its
own `inspector bench` runs there (PYTHONPATH points at the worktree, the current venv provides
the packages); the runs alternate A, B, A, B, ... so load drifts hit both.

    python benchmarks/compare_revisions.py 7208abb HEAD --rounds 2 --frames 30 --json out/compare.json

Prints, per revision, the median over rounds of the bench's end-to-end p50, bare encode_image p50
and their ratio, then B / A for each. Extra arguments after `--` go to `inspector bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("end_to_end_p50_ms", "backbone_p50_ms", "ratio_p50", "startup_s", "peak_rss_mb")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def _bench(tree: Path, out: Path, bench_args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from inspector.cli import main; raise SystemExit(main())",
           "bench", *bench_args, "--json", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {k: float(data[k]) for k in FIELDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    bench_args = ["--model", "ViT-B-16", "--pretrained", "random", "--image-size", "224", "--shots", "4",
                  "--device", "cpu", "--frames", str(args.frames), *extra]
    revs = {"A": _git("rev-parse", args.rev_a), "B": _git("rev-parse", args.rev_b)}
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="compare-revs-") as tmp:
        trees = {}
        for name, rev in revs.items():
            trees[name] = Path(tmp) / name
            _git("worktree", "add", "--detach", str(trees[name]), rev)
        try:
            for i in range(args.rounds):
                for name in ("A", "B"):
                    figures = _bench(trees[name], Path(tmp) / f"{name}{i}.json", bench_args)
                    runs[name].append(figures)
                    print(f"round {i + 1} {name} {revs[name][:8]}: " +
                          ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
        finally:
            for tree in trees.values():
                _git("worktree", "remove", "--force", str(tree))
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in FIELDS} for name, rs in runs.items()}
    for name in ("A", "B"):
        print(f"{name} {revs[name][:8]} median: " + ", ".join(f"{k} {v:.3f}" for k, v in medians[name].items()))
    print("B / A: " + ", ".join(f"{k} {medians['B'][k] / medians['A'][k]:.3f}" for k in FIELDS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"revisions": revs, "bench_args": bench_args, "runs": runs,
                                         "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
