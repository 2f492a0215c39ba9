"""Would int8 dynamic quantization pay on the CPU? open_clip's encode_image, fp32 vs int8, interleaved.

    .venv/bin/python benchmarks/int8_dynamic.py --model ViT-B-16 --frames 15

Quantizes every ``nn.Linear`` (the MLPs and attention output projections; ``nn.MultiheadAttention``'s
fused input projection is not a Linear and stays fp32) with ``torch.ao.quantization.quantize_dynamic``
and prints the same-run time ratio and the cosine similarity of the embeddings. A probe, not a
station backend: see BENCHMARKS.md for why it is not adopted.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=15)
    args = ap.parse_args()
    model = open_clip.create_model(args.model, pretrained=None, force_image_size=args.image_size).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        quant = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.randn(1, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    with torch.inference_mode():
        for _ in range(2):
            model.encode_image(x)
            quant.encode_image(x)
        for _ in range(args.frames):
            for name, m in (("fp32", model), ("int8", quant)):
                t0 = time.perf_counter()
                m.encode_image(x)
                times[name].append(time.perf_counter() - t0)
        cos = torch.nn.functional.cosine_similarity(model.encode_image(x), quant.encode_image(x)).item()
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"{args.model} @{args.image_size}: encode_image p50 fp32 {p50['fp32']:.1f} ms, int8 {p50['int8']:.1f} ms, "
          f"ratio int8/fp32 {p50['int8'] / p50['fp32']:.3f}, embedding cosine {cos:.5f}, "
          f"load avg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
