"""Does bf16 autocast pay on this CPU? open_clip's encode_image, fp32 vs bf16 autocast, interleaved in one run.

    .venv/bin/python benchmarks/precision.py --model ViT-B-16 --frames 10

bf16 is the same ``torch.autocast`` the engine uses for ``model.precision: bf16``
(``Inspector.precision_context``). Prints each precision's p50, the same-run ratio bf16 / fp32, the cosine
similarity of the two embeddings, the CPU's bf16 instruction sets (AVX-512 BF16 / AMX: without them
bf16 matrix products are emulated) and the load average. A probe of the backbone pass only, not of the
heads; the station's score tolerance for bf16 is tested in tests/engine/test_fast_paths.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As the station runs torch (inspector/__init__.py), set before torch loads its OpenMP runtime: spinning
# workers on a shared CPU make every pass several times slower and the comparison meaningless.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import open_clip
import torch

import inspector.backbone  # noqa: F401  (registers the tiny test architecture for --model inspector-tiny-vit)


def cpu_flags() -> list[str]:
    """The bf16-relevant instruction sets this CPU reports (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--image-size", type=int, default=None, help="input side (default: the model's own)")
    ap.add_argument("--frames", type=int, default=10, help="timed passes per precision (after 2 warm-up passes)")
    args = ap.parse_args(argv)
    model = open_clip.create_model(args.model, pretrained=None, force_image_size=args.image_size).eval()
    size = model.visual.image_size
    side = size[0] if isinstance(size, tuple | list) else int(size)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    contexts = {"fp32": nullcontext, "bf16": lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)}
    times: dict[str, list[float]] = {k: [] for k in contexts}
    out: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for name, ctx in contexts.items():
            for _ in range(2):
                with ctx():
                    out[name] = model.encode_image(x).float()
        for _ in range(args.frames):
            for name, ctx in contexts.items():
                t0 = time.perf_counter()
                with ctx():
                    model.encode_image(x)
                times[name].append(time.perf_counter() - t0)
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cos = torch.nn.functional.cosine_similarity(out["fp32"], out["bf16"]).item()
    result = {"fp32_p50_ms": p50["fp32"], "bf16_p50_ms": p50["bf16"], "ratio_bf16_over_fp32": p50["bf16"] / p50["fp32"],
              "cosine": cos, "load_avg": os.getloadavg()[0]}
    print(f"{args.model} @{side}, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bf16 units: "
          f"{', '.join(cpu_flags()) or 'none'}: encode_image p50 fp32 {p50['fp32']:.1f} ms, bf16 autocast "
          f"{p50['bf16']:.1f} ms, ratio bf16/fp32 {result['ratio_bf16_over_fp32']:.3f}, embedding cosine {cos:.5f}, "
          f"load avg {result['load_avg']:.1f}")
    return result


if __name__ == "__main__":
    main()
