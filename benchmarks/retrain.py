"""Retrain wall time of one line, as the line engineer sees it: ``inspector train`` end to end.

A synthetic ring line (256 px parts, planted scratch / dent / chip / stain defects with masks) on a
random-weight backbone with the default training settings (all four heads). Each run is the real
command in a fresh process; its wall time includes Python, torch and Lightning start-up and the
backbone load. Run 1 starts with empty caches (features and text embeddings), run 2 finds every
feature cached, run 3 follows the addition of one good image. The pipeline's own stage timings come
from the model card the run registered.

    .venv/bin/python benchmarks/retrain.py    # ViT-B-16, 16 good + 16 defect -> results/retrain.md
    .venv/bin/python benchmarks/retrain.py --model inspector-tiny-vit --image-size 128 --out -
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import yaml  # noqa: E402

from inspector.demo.bench import cpu_name  # noqa: E402
from inspector.demo.defects import DEFECT_KINDS  # noqa: E402
from inspector.demo.parts import PartGenerator  # noqa: E402

SIZE = 256


def _png(path: Path, rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)


def make_line(root: Path, model: str, image_size: int, layers: list[int], n_good: int, n_defect: int,
              training: dict | None = None) -> Path:
    """Few-shot folder + station YAML in ``root``; returns the YAML path."""
    gen = PartGenerator((SIZE, SIZE), seed=11)
    for i in range(n_good):
        _png(root / "fewshot" / "good" / f"good_{i:03d}.png", gen.good().image)
    for i in range(n_defect):
        kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
        part = gen.defective(kind)
        _png(root / "fewshot" / "defect" / kind / f"{kind}_{i:03d}.png", part.image)
        _png(root / "fewshot" / "defect" / kind / "masks" / f"{kind}_{i:03d}.png", part.mask)
    line = {"name": "ring", "object_name": "metal ring",
            "model": {"name": model, "pretrained": "random", "image_size": image_size, "feature_layers": layers},
            "prompts": {"defects": {"scratch": "a scratch on the ring surface", "dent": "a dent in the metal",
                                    "chip": "a chipped outer rim", "stain": "a brown stain on the metal"}},
            "fewshot": {"folder": "fewshot"}, "training": training or {}}
    config = root / "station.yaml"
    config.write_text(yaml.safe_dump({"station": "bench", "model_dir": "models", "cache_dir": "cache",
                                      "lines": [line]}))
    return config


def run_train(config: Path) -> dict:
    """One `inspector train` process: wall time and the timings of the version it registered."""
    exe = Path(sys.executable).with_name("inspector")
    cmd = [str(exe), "train", "--config", str(config), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"inspector train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    versions = sorted((config.parent / "models" / "ring").glob("v*"), key=lambda p: int(p.name[1:]))
    card = json.loads((versions[-1] / "card.json").read_text())
    metrics = json.loads((versions[-1] / "metrics.json").read_text())
    return {"wall_s": wall, "code": proc.returncode, "version": versions[-1].name, "timings": card["timings_s"],
            "cache": card["feature_cache"], "new": metrics["new"], "base": metrics["base"],
            "heads_auroc": metrics["heads_auroc"], "mode": metrics["validation"]["mode"]}


def run_in_process(config: Path, repeats: int = 2) -> list[dict]:
    """Retrain inside a running process on its loaded engine, as the GUI's Retrain button does:
    no interpreter / import start-up and no backbone load. Features are already cached."""
    from inspector.config import load_station_config
    from inspector.engine import Inspector
    from inspector.training.pipeline import train_line

    station = load_station_config(config)
    engine = Inspector.from_config(station)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = train_line(station, inspector=engine, promote=False)
        wall = time.perf_counter() - t0
        out.append({"wall_s": wall, "timings": dict(report.timings), "loadavg": os.getloadavg()[0]})
    return out


def report(args: argparse.Namespace, runs: list[dict], loads: list[tuple[float, float, float]],
           inproc: list[dict]) -> str:
    import torch

    from inspector.config.training import TrainingSpec

    spec = TrainingSpec()
    names = ["1: first run (empty caches)", "2: features cached", "3: one good image added",
             "4: features cached, `heads: [patch, clip_adapter, tip_adapter]`",
             "5: first run (empty caches), `augment.views: 0`"]
    lines = [
        "# Retrain wall time: `inspector train` end to end",
        "",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command: `.venv/bin/python benchmarks/retrain.py --model {args.model} --image-size {args.image_size} "
        f"--good {args.good} --defect {args.defect}`",
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores, no GPU; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}",
        f"- Line: {args.model} with random weights at {args.image_size} px, feature layers {args.layers}; "
        f"{args.good} good + {args.defect} defect parts (256 px, 4 defect kinds, with masks); default "
        f"`training:` settings (heads {', '.join(spec.heads)}; {spec.augment.views} augmented view(s) per "
        f"training image; at most {spec.max_epochs} epochs ({spec.coop.max_epochs} for CoOp), early stopping "
        f"after {spec.patience}); validation: {runs[0]['mode']} (a quarter of each class held out)",
        "- Each run is a fresh `inspector train` process: wall time includes interpreter, torch and Lightning "
        "start-up and the backbone load. Other jobs shared the CPU (load average per run below).",
        "",
        "| run | wall time | pipeline total | backbone + prompts | encode | train (all heads) | evaluate "
        "| views encoded / cached | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r, load in zip(names, runs, loads):
        t = r["timings"]
        train = sum(v for k, v in t.items() if k.startswith("train_"))
        lines.append(f"| {name} | {r['wall_s']:.1f} s | {t.get('total_before_register', 0):.1f} s | "
                     f"{t.get('backbone', 0):.1f} s | {t.get('encode', 0):.1f} s | {train:.1f} s | "
                     f"{t.get('evaluate', 0):.1f} s | "
                     f"{r['cache']['encoded']} / {r['cache']['hits']} | {load[0]:.1f} |")
    for i, r in enumerate(inproc, start=1):
        t = r["timings"]
        train = sum(v for k, v in t.items() if k.startswith("train_"))
        lines.append(f"| 6.{i}: features cached, retrain in the running process (GUI) | {r['wall_s']:.1f} s | "
                     f"{t.get('total_before_register', 0):.1f} s | {t.get('backbone', 0):.1f} s | "
                     f"{t.get('encode', 0):.1f} s | {train:.1f} s | {t.get('evaluate', 0):.1f} s | - | "
                     f"{r['loadavg']:.1f} |")
    first, cached, lean = runs[0], runs[1], runs[3]
    best_inproc = min(inproc, key=lambda r: r["wall_s"]) if inproc else None

    def met(value: float, target: float) -> str:
        return "met" if value <= target else "missed"

    def pipe(r: dict) -> float:
        return float(r["timings"].get("total_before_register", 0.0))

    startup = statistics.median(r["wall_s"] - pipe(r) for r in runs)
    lines += [
        "",
        f"- Target first run <= 60 s: {first['wall_s']:.1f} s ({met(first['wall_s'], 60)}).",
        f"- Target cached features <= 10 s: {cached['wall_s']:.1f} s as a fresh process, {pipe(cached):.1f} s in the "
        f"pipeline ({met(pipe(cached), 10)}); without the CoOp head {pipe(lean):.1f} s in the pipeline "
        f"({met(pipe(lean), 10)}), {lean['wall_s']:.1f} s as a process.",
        (f"- Retrain in the running station process (the GUI's Retrain button: engine and backbone loaded, "
         f"features cached): {best_inproc['wall_s']:.1f} s wall, best of {len(inproc)} "
         f"({met(best_inproc['wall_s'], 10)}).") if best_inproc else "- (in-process retrain not run)",
        f"- Process start-up (interpreter, torch / Lightning / open_clip imports) is about {startup:.1f} s of every "
        "command; a GUI that trains in its running process, on its loaded backbone, does not pay it nor the "
        "backbone load.",
        "- Per-head training time with cached features (run 2): " + ", ".join(
            f"{k.removeprefix('train_')} {v:.1f} s" for k, v in cached["timings"].items() if k.startswith("train_"))
        + ". CoOp runs the ViT-B-16 text transformer forward and backward every step.",
        f"- Held-out metrics of run 1 ({first['mode']}; random weights, so only the patch head can see the "
        f"defects): fused AUROC with the new adapter {first['new']['auroc']:.3f} vs base heads "
        f"{first['base']['auroc']:.3f}; per head "
        + ", ".join(f"{k} {v:.2f}" for k, v in first["heads_auroc"].items() if v is not None) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 9])
    ap.add_argument("--good", type=int, default=16)
    ap.add_argument("--defect", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "retrain.md"),
                    help="markdown file to write, '-' for stdout only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        root = Path(tmp)
        config = make_line(root, args.model, args.image_size, args.layers, args.good, args.defect)
        runs, loads = [], []
        for i in range(3):
            if i == 2:  # one more good part
                gen = PartGenerator((SIZE, SIZE), seed=12)
                _png(root / "fewshot" / "good" / "good_new.png", gen.good().image)
            loads.append(os.getloadavg())
            runs.append(run_train(config))
            print(f"run {i + 1}: {runs[-1]['wall_s']:.1f} s, {runs[-1]['cache']}", flush=True)
        station = yaml.safe_load(config.read_text())
        station["lines"][0]["training"] = {"heads": ["patch", "clip_adapter", "tip_adapter"]}
        config.write_text(yaml.safe_dump(station))
        loads.append(os.getloadavg())
        runs.append(run_train(config))
        print(f"run 4: {runs[-1]['wall_s']:.1f} s, {runs[-1]['cache']}", flush=True)
        station["lines"][0]["training"] = {}
        config.write_text(yaml.safe_dump(station))
        inproc = run_in_process(config)
        print("run 6 (in process): " + ", ".join(f"{r['wall_s']:.1f} s" for r in inproc), flush=True)
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        config = make_line(Path(tmp), args.model, args.image_size, args.layers, args.good, args.defect,
                           {"augment": {"views": 0}})
        loads.append(os.getloadavg())
        runs.append(run_train(config))
        print(f"run 5: {runs[-1]['wall_s']:.1f} s, {runs[-1]['cache']}", flush=True)
    text = report(args, runs, loads, inproc)
    print(text)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
