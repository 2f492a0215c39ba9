"""Does the calibrated threshold do what it promises? Realised false rejects, intervals, bias, escapes.

    python benchmarks/calibration.py                     # tiny random-weight ViT, 64 px: a few minutes on 2 cores
    python benchmarks/calibration.py --model ViT-B-16 --pretrained laion2b_s34b_b88k --image-size 224

For every synthetic line (the demo's ring parts and the woven / brushed textures), seed and number
of shots, the engine is fitted on good parts of one stream and judged on fresh parts of another:

- **false reject**: the share of ``--fresh`` fresh good parts at or above the threshold calibrated
  for each target, against the target and against the false-reject interval the calibration reports;
- **LOO bias**: per head, (held-out mean on the fitting set - mean on fresh good parts) / std on
  fresh good parts: how far the statistics fusion and the threshold rest on are from the line's;
- **escape**: the share of ``--defects`` fresh defective parts below the threshold.

At one shot every 1-shot statistics mode of the fit is run (``engine.fitting.ONE_SHOT_MODES``: the
default first, ``legacy`` the collapsing path before issue #12). Writes a JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import inspector.backbone  # noqa: F401  (registers the tiny architecture)
from inspector.backbone.dense import Features
from inspector.backbone.loading import load_backbone
from inspector.backbone.registry import TINY_MODEL
from inspector.config import ModelSpec, parse_station_config
from inspector.decision.calibrate import threshold_for_false_reject
from inspector.demo.parts import PartGenerator
from inspector.demo.textures import TextureGenerator
from inspector.engine import Inspector
from inspector.engine.fitting import ONE_SHOT_MODES, fit_state, one_part_calibration

LINES = {"ring": "metal ring", "woven": "woven fabric", "brushed": "brushed metal sheet"}
CHUNK = 100  # fresh parts per head evaluation (bounds the similarity matrix of the reference search)


def generator(line: str, size: int, seed: int, stream: int) -> PartGenerator | TextureGenerator:
    if line == "ring":
        return PartGenerator(size=(size, size), seed=seed, stream=stream)
    return TextureGenerator(line, (size, size), seed=seed, stream=stream)


def head_outputs(insp: Inspector, feats: Features) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw head scores and the fused score of encoded parts, in chunks, with the engine's fitted heads."""
    heads: dict[str, list[np.ndarray]] = {h: [] for h in insp.heads}
    fused = []
    with torch.inference_mode():
        for start in range(0, feats.batch_size, CHUNK):
            part = feats.index(slice(start, start + CHUNK))
            outs = {h: getattr(insp, h)(part) for h in insp.heads}
            fused.append(insp.fusion(outs)[0].double().numpy())
            for h, o in outs.items():
                heads[h].append(o.score.double().numpy())
    return {h: np.concatenate(v) for h, v in heads.items()}, np.concatenate(fused)


def run_case(insp: Inspector, goods: list[np.ndarray], fresh: Features, defects: Features, shots: int,
             targets: list[float], one_shot: str) -> dict:
    t0 = time.perf_counter()
    state = fit_state(insp, goods[:shots], one_shot=one_shot)
    insp.apply_fitted(state)
    fit_s = time.perf_counter() - t0
    fresh_heads, fresh_fused = head_outputs(insp, fresh)
    _, defect_fused = head_outputs(insp, defects)
    bias = {}
    for h, scores in fresh_heads.items():
        loo_mean, loo_std = (state.score_stats or {}).get(h, (float("nan"), float("nan")))
        spread = float(scores.std(ddof=1))
        bias[h] = {"loo_mean": loo_mean, "fresh_mean": float(scores.mean()), "fresh_std": spread,
                   "loo_std": loo_std, "bias_in_spread": (loo_mean - float(scores.mean())) / max(spread, 1e-12)}
    rows = []
    for target in targets:
        calib = threshold_for_false_reject(state.good_scores, target)
        if shots == 1:  # as the engine reports it: one part's views promise nothing about the line
            calib = one_part_calibration(calib, state.good_scores.size)
        lo, hi = calib.false_reject_interval or (float("nan"), float("nan"))
        realised = float(np.mean(fresh_fused >= calib.threshold))
        rows.append({"target": target, "threshold": calib.threshold, "estimator": calib.details["estimator"],
                     "interval": [lo, hi], "realised_false_reject": realised, "inside": bool(lo <= realised <= hi),
                     "escape": float(np.mean(defect_fused < calib.threshold)), "n_calibration": calib.n_good})
    return {"shots": shots, "one_shot": one_shot if shots == 1 else None, "heads": list(insp.heads),
            "fit_seconds": fit_s, "bias": bias, "fused_fresh_mean": float(fresh_fused.mean()),
            "fused_fresh_std": float(fresh_fused.std(ddof=1)), "targets": rows,
            "scores": {"good": state.good_scores, "fresh": fresh_fused, "defect": defect_fused}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=TINY_MODEL)
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--feature-layers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--part-size", type=int, default=128, help="rendered part side (pixels)")
    ap.add_argument("--lines", nargs="+", default=list(LINES), choices=list(LINES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=1,
                    help="independent few-shot sets per line and seed (disjoint parts of the fitting stream)")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--fresh", type=int, default=1000, help="fresh good parts per line and seed")
    ap.add_argument("--defects", type=int, default=200, help="fresh defective parts per line and seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summarise", type=Path, metavar="JSON",
                    help="only recompute the summary of an earlier run's JSON (no fits) and print it")
    ap.add_argument("--scores", type=Path, default=None,
                    help="also write every case's calibration-set and fresh fused scores (.npz) for offline study")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration.json"))
    args = ap.parse_args()
    if args.summarise is not None:
        data = json.loads(args.summarise.read_text())
        data["summary"] = summarise(data["cases"])
        args.summarise.write_text(json.dumps(data, indent=1))
        print_tables(data["cases"], data["summary"])
        return
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    backbone = load_backbone(ModelSpec(name=args.model, pretrained=args.pretrained))
    results = []
    for line in args.lines:
        cfg = {"name": line, "object_name": LINES[line],
               "model": {"name": args.model, "pretrained": args.pretrained, "image_size": args.image_size,
                         "feature_layers": args.feature_layers},
               "fewshot": {"max_shots": max(args.shots)}}
        insp = Inspector(parse_station_config({"lines": [cfg]}).lines[0], backbone)
        for seed in args.seeds:
            t0 = time.perf_counter()
            fit_gen = generator(line, args.part_size, seed, 0)
            n_fit = max(args.shots)
            goods = [[fit_gen.render(r * n_fit + i + 1).image for i in range(n_fit)] for r in range(args.repeats)]
            fresh_gen = generator(line, args.part_size, seed, 1)
            fresh = insp.encode([fresh_gen.render(i + 1).image for i in range(args.fresh)])
            bad_gen = generator(line, args.part_size, seed, 2)
            defects = insp.encode([bad_gen.defective().image for _ in range(args.defects)])
            print(f"{line} seed {seed}: parts rendered and encoded in {time.perf_counter() - t0:.1f} s", flush=True)
            for repeat, fit_set in enumerate(goods):
                for shots in args.shots:
                    for mode in ONE_SHOT_MODES if shots == 1 else ONE_SHOT_MODES[:1]:
                        case = run_case(insp, fit_set, fresh, defects, shots, args.targets, mode)
                        results.append({"line": line, "seed": seed, "repeat": repeat, **case})
    if args.scores is not None:
        arrays = {f"{i}_{k}": v for i, r in enumerate(results) for k, v in r["scores"].items()}
        np.savez_compressed(args.scores, **arrays)
    for r in results:
        del r["scores"]
    summary = summarise(results)
    out = {"command": " ".join(["python", "benchmarks/calibration.py", *sys.argv[1:]]),
           "model": args.model, "pretrained": args.pretrained, "image_size": args.image_size,
           "feature_layers": args.feature_layers, "part_size": args.part_size, "fresh": args.fresh,
           "defects": args.defects, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
           "loadavg_end": os.getloadavg(), "seconds": time.perf_counter() - t_start, "summary": summary,
           "cases": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print_tables(results, summary)
    print(f"\n{len(results)} fits in {out['seconds']:.0f} s; written to {args.out}")


def summarise(results: list[dict]) -> dict:
    """Per (shots, mode, target): realised false-reject range, share inside the interval, escapes, worst bias."""
    out = {}
    keys = sorted({(r["shots"], r["one_shot"] or "") for r in results})
    targets = sorted({t["target"] for r in results for t in r["targets"]})
    for shots, mode in keys:
        cases = [r for r in results if r["shots"] == shots and (r["one_shot"] or "") == mode]
        heads = sorted({h for r in cases for h in r["bias"]})
        biases = {h: np.array([r["bias"][h]["bias_in_spread"] for r in cases if h in r["bias"]]) for h in heads}
        # The held-out mean of K scores has a standard error of ~1/sqrt(K) spreads by itself: the mean
        # over lines and seeds, with its standard error, is what says whether the statistics are biased.
        mean_bias = {h: [float(b.mean()), float(b.std(ddof=1) / np.sqrt(b.size)) if b.size > 1 else float("nan")]
                     for h, b in biases.items()}
        worst = {h: float(np.abs(b).max()) for h, b in biases.items()}
        for target in targets:
            rows = [t for r in cases for t in r["targets"] if t["target"] == target]
            fr = np.array([t["realised_false_reject"] for t in rows])
            per_line = {}
            for line in sorted({r["line"] for r in cases}):
                mine = [t for r in cases if r["line"] == line for t in r["targets"] if t["target"] == target]
                lfr = np.array([t["realised_false_reject"] for t in mine])
                per_line[line] = {"mean": float(lfr.mean()), "median": float(np.median(lfr)),
                                  "inside_interval": float(np.mean([t["inside"] for t in mine])),
                                  "escape_median": float(np.median([t["escape"] for t in mine]))}
            out[f"{shots}{'/' + mode if mode else ''}@{target:g}"] = {
                "shots": shots, "one_shot": mode or None, "target": target, "cases": len(rows),
                "realised_min": float(fr.min()), "realised_median": float(np.median(fr)),
                "realised_max": float(fr.max()), "inside_interval": float(np.mean([t["inside"] for t in rows])),
                "median_interval": [float(np.median([t["interval"][i] for t in rows])) for i in (0, 1)],
                "escape_median": float(np.median([t["escape"] for t in rows])),
                "worst_abs_bias_in_spread": worst, "mean_bias_in_spread": mean_bias, "per_line": per_line}
    return out


def print_tables(results: list[dict], summary: dict) -> None:
    print("\nper case (realised false reject / reported interval / escape):")
    for r in results:
        tag = f"{r['line']:8s} seed {r['seed']} shots {r['shots']:2d}{' ' + r['one_shot'] if r['one_shot'] else ''}"
        cells = [f"{t['target']:.0%}: {t['realised_false_reject']:6.1%} in [{t['interval'][0]:.1%}, "
                 f"{t['interval'][1]:.1%}]{'' if t['inside'] else ' OUT'} esc {t['escape']:.0%}" for t in r["targets"]]
        bias = " ".join(f"{h}={b['bias_in_spread']:+.2f}" for h, b in r["bias"].items())
        print(f"  {tag:34s} {' | '.join(cells)} | bias {bias}")
    print("\nsummary:")
    print(f"  {'shots':10s} {'target':>6s} {'realised min/med/max':>24s} {'inside':>7s} {'interval (med)':>16s} "
          f"{'escape':>7s}  bias per head: mean +- s.e. over cases (worst |bias|), in good-score spreads")
    for s in summary.values():
        tag = f"{s['shots']}{' ' + s['one_shot'] if s['one_shot'] else ''}"
        rng = f"{s['realised_min']:.1%}/{s['realised_median']:.1%}/{s['realised_max']:.1%}"
        iv = f"{s['median_interval'][0]:.1%}-{s['median_interval'][1]:.1%}"
        bias = " ".join(f"{h}={m:+.2f}+-{se:.2f} ({s['worst_abs_bias_in_spread'][h]:.2f})"
                        for h, (m, se) in s["mean_bias_in_spread"].items())
        print(f"  {tag:10s} {s['target']:6.0%} {rng:>24s} {s['inside_interval']:7.0%} {iv:>16s} "
              f"{s['escape_median']:7.0%}  {bias}")
    print("\nper line: realised false reject mean / median (share inside the interval)")
    for s in summary.values():
        tag = f"{s['shots']}{' ' + s['one_shot'] if s['one_shot'] else ''}"
        cells = "  ".join(f"{line} {v['mean']:.1%} / {v['median']:.1%} ({v['inside_interval']:.0%})"
                          for line, v in s["per_line"].items())
        print(f"  {tag:10s} {s['target']:6.0%}  {cells}")


if __name__ == "__main__":
    main()
