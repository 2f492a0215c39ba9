"""Cost of the DPAM dense path (zeroshot.dense: dpam) against the last-block branch, interleaved.

    python benchmarks/zeroshot_dense.py                      # ViT-B-16, random weights, 224 px, CPU
    python benchmarks/zeroshot_dense.py --model ViT-L-14-336 --blocks 0.8 --frames 10

Times the feature extractor's pass (``DenseFeatureExtractor``, batch 1, fp32) with the last-block
branch and with DPAM over ``--blocks`` (a count or a fraction of the depth), alternating the two on
every frame so that a shared machine's load drifts into both alike, and prints min / p50 / p90 of
each and the ratios (on a loaded machine the minimum is the steadiest figure of the intrinsic cost).
The engine adds nothing else for the option (the zero-shot head reads the same [B, N, D] tokens), so
``inspector bench --zs-dense dpam`` differs by this ratio in its backbone stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from inspector.backbone.dense import DenseFeatureExtractor
from inspector.backbone.loading import load_backbone
from inspector.config import ModelSpec
from inspector.config.line import parse_layer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--pretrained", default="random")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--blocks", type=parse_layer, default=0.8, help="zeroshot.dpam_blocks (count or fraction)")
    p.add_argument("--frames", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = load_backbone(ModelSpec(name=args.model, pretrained=args.pretrained, device="cpu"))
    visual = backbone.model.visual
    paths = {"last_block": DenseFeatureExtractor(visual, args.image_size, (0.5, 0.75), model=args.model).eval(),
             "dpam": DenseFeatureExtractor(visual, args.image_size, (0.5, 0.75), model=args.model,
                                           dense_blocks=args.blocks).eval()}
    h, w = paths["dpam"].image_size
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {k: [] for k in paths}
    with torch.inference_mode():
        for i in range(args.warmup + args.frames):
            for name, extractor in paths.items():
                t = time.perf_counter()
                extractor(image)
                if i >= args.warmup:
                    times[name].append((time.perf_counter() - t) * 1000.0)
    result = {"model": args.model, "image_size": h, "dpam_blocks": paths["dpam"].dense_blocks,
              "depth": len(visual.transformer.resblocks), "frames": args.frames, "threads": torch.get_num_threads()}
    for name, values in times.items():
        result[f"{name}_min_ms"] = float(np.min(values))
        result[f"{name}_p50_ms"] = float(np.percentile(values, 50))
        result[f"{name}_p90_ms"] = float(np.percentile(values, 90))
    result["dpam_over_last_block_p50"] = result["dpam_p50_ms"] / result["last_block_p50_ms"]
    result["dpam_over_last_block_min"] = result["dpam_min_ms"] / result["last_block_min_ms"]
    print(f"{args.model} @{h} px, DPAM over {result['dpam_blocks']} of {result['depth']} blocks, "
          f"{args.frames} frames interleaved, {result['threads']} threads")
    for name in paths:
        print(f"  {name:<11} min {result[f'{name}_min_ms']:8.1f} ms   p50 {result[f'{name}_p50_ms']:8.1f} ms   "
              f"p90 {result[f'{name}_p90_ms']:8.1f} ms")
    print(f"  dpam / last_block: min {result['dpam_over_last_block_min']:.3f}, "
          f"p50 {result['dpam_over_last_block_p50']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
