"""Scaling of the core's per-frame time with shots, input size and batch size (one process, CPU or GPU).

    python benchmarks/scaling.py --model ViT-B-16 --device cpu --frames 8 --out benchmarks/results

Writes scaling.json, scaling.md (tables) and scaling.png (plot). Each row is one `run_bench` with the
bare encode_image measured in the same run, so every ratio is same-run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from inspector.demo.bench import BenchConfig, run_bench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 336, 448, 518])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {"shots": [], "size": [], "batch": []}

    def bench(kind: str, **kw: int) -> None:
        cfg = BenchConfig(model=args.model, device=args.device, frames=args.frames, warmup=1,
                          measure_startup=False, **kw)
        r = run_bench(cfg)
        row = {"kind": kind, **kw, **{k: v for k, v in asdict(r).items() if not isinstance(v, dict)},
               "loadavg": os.getloadavg()[0]}
        rows[kind].append(row)
        print(json.dumps({k: row[k] for k in ("kind", "shots", "image_size", "batch", "end_to_end_p50_ms",
                                              "backbone_p50_ms", "ratio_p50")}), flush=True)

    for shots in args.shots:
        bench("shots", shots=shots, image_size=224)
    for size in args.sizes:
        # 518 is not a multiple of 16: the nearest multiple below is used (512) and reported.
        bench("size", shots=4, image_size=size - size % 16)
    for batch in args.batches:
        bench("batch", shots=4, image_size=224, batch=batch)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=2))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (kind, key, label) in zip(axes, [("shots", "shots", "shots (good references)"),
                                             ("size", "image_size", "input size (px)"),
                                             ("batch", "batch", "batch size")]):
        xs = [r[key] for r in rows[kind]]
        ax.plot(xs, [r["end_to_end_p50_ms"] for r in rows[kind]], "o-", label="core end-to-end p50")
        ax.plot(xs, [r["backbone_p50_ms"] for r in rows[kind]], "s--", label="bare encode_image p50")
        ax.set_xlabel(label)
        ax.set_ylabel("ms per frame")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{args.model}, {rows['shots'][0]['device']}, random weights")
    fig.tight_layout()
    fig.savefig(args.out / "scaling.png", dpi=110)
    lines = [f"Machine: {platform.machine()} {os.cpu_count()} cores, {rows['shots'][0]['device']}; "
             f"date {dt.date.today()}; command: `python benchmarks/scaling.py --model {args.model} "
             f"--device {args.device} --frames {args.frames}`", ""]
    for kind, key in (("shots", "shots"), ("size", "image_size"), ("batch", "batch")):
        lines += [f"| {key} | end-to-end p50 ms | p99 ms | encode_image p50 ms | ratio | memory search / backbone "
                  "| load avg |", "|---|---|---|---|---|---|---|"]
        for r in rows[kind]:
            search = r["memory_search_fraction_of_backbone"]
            lines.append(f"| {r[key]} | {r['end_to_end_p50_ms']:.1f} | {r['end_to_end_p99_ms']:.1f} | "
                         f"{r['backbone_p50_ms']:.1f} | {r['ratio_p50']:.3f} | "
                         f"{'-' if search is None else f'{100 * search:.1f} %'} | {r['loadavg']:.1f} |")
        lines.append("")
    (args.out / "scaling.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
