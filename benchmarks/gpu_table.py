"""The GPU table in one command: per architecture, p50/p99 per frame, frames/s at batch 8 and 32, peak memory.

Rows: ViT-B-16 @224, ViT-B-16-plus-240 @240 and ViT-L-14-336 @336 (random weights: the speed of the
architecture, not of a trained model), each at fp32 and at the GPU's half precision (bf16 where the
card has it, else fp16), and half precision through torch.compile with CUDA graphs (``model.compile:
reduce-overhead``), through ``inspector bench`` (the full core against bare encode_image, one
process per row). ``--dry`` runs the same code path on the CPU with the tiny architecture and two
frames, so CI proves the script works before a GPU is lent.

    bash benchmarks/gpu.sh                 # on the GPU machine: writes benchmarks/results/gpu.{md,json}
    bash benchmarks/gpu.sh --dry --out-dir /tmp/x   # CPU, tiny model, seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import inspector.backbone  # noqa: E402, F401  (registers the tiny architecture)
from inspector.backbone.registry import TINY_MODEL  # noqa: E402
from inspector.demo.bench import BenchConfig, run_bench  # noqa: E402

MODELS = [("ViT-B-16", 224), ("ViT-B-16-plus-240", 240), ("ViT-L-14-336", 336)]
BATCHES = (1, 8, 32)


def half_precision() -> str:
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"


def variants(dry: bool) -> list[tuple[str, str, tuple[int, ...]]]:
    """(precision, model.compile, batches): fp32 and half eager at every batch, then half compiled.

    On the GPU the compiled rows use CUDA graphs (reduce-overhead: batch-1 launch overhead gone); the dry
    run compiles with inductor's default mode on the CPU, batch 1 only (compiling costs ~20 s there).
    """
    if dry:
        return [("fp32", "off", (1, 2)), ("bf16", "off", (1, 2)), ("fp32", "default", (1,))]
    half = half_precision()
    return [("fp32", "off", BATCHES), (half, "off", BATCHES), (half, "reduce-overhead", BATCHES)]


def rows(dry: bool) -> list[dict]:
    models = [(TINY_MODEL, 64)] if dry else MODELS
    device = "cpu" if dry else "cuda"
    frames = 2 if dry else 50
    out = []
    for model, size in models:
        for precision, compile_mode, batches in variants(dry):
            for batch in batches:
                cfg = BenchConfig(model=model, image_size=size, shots=2 if dry else 4, device=device,
                                  frames=frames if batch == 1 else max(2, frames // 4), warmup=1 if dry else 5,
                                  batch=batch, precision=precision, feature_layers=(0.5, 0.75), measure_startup=False,
                                  compile=compile_mode)
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                r = run_bench(cfg)
                out.append({"model": model, "image_size": size, "precision": precision, "compile": compile_mode,
                            "batch": batch, "device": r.device, "p50_ms_per_frame": r.end_to_end_p50_ms,
                            "p99_ms_per_frame": r.end_to_end_p99_ms, "frames_per_s": r.frames_per_s,
                            "encode_image_p50_ms": r.backbone_p50_ms, "ratio_p50": r.ratio_p50,
                            "peak_gpu_mb": r.peak_gpu_mb, "peak_rss_mb": r.peak_rss_mb})
                print(f"{model} @{size} {precision} compile {compile_mode} batch {batch}: "
                      f"{r.end_to_end_p50_ms:.2f} ms/frame p50, {r.frames_per_s:.1f} frames/s", flush=True)
    return out


def markdown(table: list[dict], meta: dict) -> str:
    lines = [f"# GPU table ({meta['date']}, {meta['device']}{', DRY RUN' if meta['dry'] else ''})", "",
             "| model | size | precision | compile | batch | p50 ms/frame | p99 ms/frame | frames/s "
             "| ratio to encode_image | peak GPU MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] else "-"
        lines.append(f"| {r['model']} | {r['image_size']} | {r['precision']} | {r['compile']} | {r['batch']} | "
                     f"{r['p50_ms_per_frame']:.2f} | {r['p99_ms_per_frame']:.2f} | {r['frames_per_s']:.1f} | "
                     f"{r['ratio_p50']:.3f} | {gpu} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny architecture, 2 frames: checks the script only")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device: run on the GPU machine, or --dry to check the script on the CPU", file=sys.stderr)
        return 2
    table = rows(args.dry)
    device = torch.cuda.get_device_name() if not args.dry else platform.processor() or platform.machine()
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "device": device, "dry": args.dry,
            "torch": torch.__version__, "cuda": torch.version.cuda}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gpu.json").write_text(json.dumps({"meta": meta, "rows": table}, indent=2) + "\n")
    (args.out_dir / "gpu.md").write_text(markdown(table, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
