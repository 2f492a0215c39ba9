"""`inspector bench`: per-stage p50/p99 of the core vs the bare backbone, in one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.config.line import parse_layer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure the core's per-frame time against bare encode_image")
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--pretrained", default="random")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"),
                   help="model.precision (int8: OpenVINO backend, NNCF-quantized on the few-shot good parts)")
    p.add_argument("--layers", type=parse_layer, nargs="+", default=[0.5, 0.75],
                   help="patch-memory blocks: fractions of the depth, negative from the end, or 0-based blocks")
    p.add_argument("--backend", default=None, choices=("torch", "openvino", "auto"),
                   help="model.backend of the core (default torch; with --station the line's own); torch's bare "
                        "encode_image is timed in the same run")
    p.add_argument("--compile", default="off", choices=("off", "default", "reduce-overhead", "max-autotune"),
                   help="model.compile: torch.compile the backbone pass (torch backend; reduce-overhead = CUDA graphs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--mutual-buffer", type=int, default=0,
                   help="time the mutual head against a buffer of N parts (e.g. 64; 0 = off)")
    p.add_argument("--zs-dense", choices=("last_block", "dpam"), default=None,
                   help="zero-shot dense tokens (zeroshot.dense): the DPAM path costs one v-v attention per block")
    p.add_argument("--dpam-blocks", type=parse_layer, default=None,
                   help="with --zs-dense dpam: a block count or a fraction of the depth (zeroshot.dpam_blocks)")
    p.add_argument("--zs-map-pool", type=int, choices=(1, 3), default=None, help="zeroshot.map_pool")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    st = p.add_argument_group("--station: the backbone inside the full station (synthetic camera, log on, free run)")
    st.add_argument("--station", action="store_true",
                    help="run the station of --config and compare its backbone stage with the bare backbone")
    st.add_argument("--config", type=Path, default=Path("station_configs/demo.yaml"), help="station config")
    st.add_argument("--line", default=None, help="line of --config (default: its default line)")
    st.add_argument("--parts", type=int, default=20, help="parts the station inspects after --warmup")
    st.add_argument("--rate", type=float, default=20.0, help="free-run rate in Hz (above the engine's pace)")
    p.set_defaults(func=run)


def run_station(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from inspector.cli.bench_station import run_station_bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    precision = args.precision if args.precision != "fp32" else None  # None: the line's own
    result = run_station_bench(args.config, args.line, parts=args.parts, warmup=max(1, args.warmup),
                               rate_hz=args.rate, backend=args.backend, precision=precision,
                               say=lambda msg: console.log(msg))
    Console().print(
        f"{result['model']} @{result['image_size']}, {result['backend']} {result['precision']}: station backbone p50 "
        f"{result['station_backbone_p50_ms']:.1f} ms / bare {result['backbone_p50_ms']:.1f} ms = "
        f"[bold]{result['station_backbone_ratio']:.3f}[/] | {result['parts_per_s']:.2f} parts/s | "
        f"drops {sum(result['drops'].values())}, faults {result['faults']} | load {result['load_avg'][0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.station:
        return run_station(args)
    from rich.console import Console
    from rich.table import Table

    from inspector.demo.bench import BenchConfig, run_bench, write_json

    console = Console(stderr=True)
    cfg = BenchConfig(model=args.model, pretrained=args.pretrained, image_size=args.image_size, shots=args.shots,
                      device=args.device, frames=args.frames, warmup=args.warmup, batch=args.batch,
                      precision=args.precision, feature_layers=tuple(args.layers), threads=args.threads,
                      backend=args.backend or "torch", mutual_buffer=args.mutual_buffer,
                      compile=args.compile,
                      zeroshot={key: v for key, name in (("dense", "zs_dense"), ("dpam_blocks", "dpam_blocks"),
                                                         ("map_pool", "zs_map_pool"))
                                if (v := getattr(args, name, None)) is not None})
    result = run_bench(cfg, progress=lambda msg: console.log(msg))
    table = Table(title=f"{result.model} @{result.image_size}, {result.shots}-shot, batch {result.batch}, "
                        f"{result.device}, {result.precision}, {result.backend}")
    table.add_column("stage")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    for stage, p50 in result.stages_p50_ms.items():
        table.add_row(stage, f"{p50:.2f}", f"{result.stages_p99_ms[stage]:.2f}")
    table.add_row("[bold]end to end", f"{result.end_to_end_p50_ms:.2f}", f"{result.end_to_end_p99_ms:.2f}")
    if result.backend == "torch":
        table.add_row("[bold]bare encode_image", f"{result.backbone_p50_ms:.2f}", f"{result.backbone_p99_ms:.2f}")
    else:
        table.add_row(f"[bold]bare {result.backend} pass", f"{result.backbone_p50_ms:.2f}",
                      f"{result.backbone_p99_ms:.2f}")
        table.add_row("[bold]bare torch encode_image", f"{result.torch_backbone_p50_ms:.2f}", "")
    Console().print(table)
    search = result.memory_search_fraction_of_backbone
    parts = [f"ratio (end-to-end p50 / bare backbone p50): [bold]{result.ratio_p50:.3f}[/]"]
    if result.backend != "torch":
        parts.append(f"speedup vs torch encode_image: [bold]{result.speedup_vs_torch_p50:.3f}[/], "
                     f"max score diff {result.max_score_diff:.2e}")
    if search is not None:
        parts.append(f"memory search {100 * search:.1f}% of backbone ({result.memory_bank_tokens} tokens)")
    mutual = result.extra.get("mutual_fraction_of_backbone")
    if mutual is not None:
        parts.append(f"mutual scoring {100 * mutual:.1f}% of backbone (buffer {result.extra['mutual_buffer']})")
    parts += [f"startup {result.startup_s:.2f} s (cold {result.startup_cold_s:.1f} s)",
              f"changeover {result.changeover_s:.2f} s (cold {result.changeover_cold_s:.1f} s)",
              f"peak RSS {result.peak_rss_mb:.0f} MB"]
    if result.peak_gpu_mb:
        parts.append(f"peak GPU {result.peak_gpu_mb:.0f} MB")
    int8 = result.extra.get("int8_check")
    if isinstance(int8, dict):
        parts.append(f"int8 {'ACCEPTED' if int8['accepted'] else 'REFUSED'}: {int8['reason']}")
    Console().print(" | ".join(parts))
    if args.json:
        write_json(result, args.json)
    return 0
