"""`inspector predict IMAGE... --config FILE`: verdicts for image files, with heatmap overlays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inspector.cli.common import add_config_args, load_inspector


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="inspect image files and write heatmap overlays")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    add_config_args(p)
    p.add_argument("--out", type=Path, default=Path("out/predict"), help="folder for overlays (default: %(default)s)")
    p.add_argument("--no-overlays", action="store_true", help="print verdicts only")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")
    p.add_argument("--fail-on-ng", action="store_true", help="exit 1 when any image is NG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    from rich.console import Console
    from rich.table import Table

    from inspector.decision.overlay import render_overlay
    from inspector.errors import ImageDecodeError
    from inspector.frames.imaging import load_image

    _, inspector = load_inspector(args)
    console = Console()
    table = Table(title=f"line {inspector.line.name} - {inspector.backbone.identity.label()}")
    for col in ("image", "verdict", "score", "threshold", "defect", "regions", "ms"):
        table.add_column(col, justify="right" if col in ("score", "threshold", "regions", "ms") else "left")
    if not args.no_overlays:
        args.out.mkdir(parents=True, exist_ok=True)
    any_ng = errors = 0
    for path in args.images:
        try:
            frame = load_image(path)
            result = inspector.inspect(frame)
        except ImageDecodeError as exc:
            errors += 1
            console.print(f"[red]{exc}")
            continue
        any_ng |= not result.ok
        if not args.no_overlays:
            overlay = render_overlay(frame, result)
            cv2.imwrite(str(args.out / f"{path.stem}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        if args.json:
            print(json.dumps({"image": str(path), "verdict": result.verdict, "score": round(result.score, 6),
                              "threshold": round(result.threshold, 6), "defect": result.defect,
                              "defect_confidence": result.defect_confidence,
                              "regions": [r.__dict__ for r in result.regions],
                              "untrained_backbone": result.untrained_backbone,
                              "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()}}))
        else:
            colour = "green" if result.ok else "red"
            table.add_row(path.name, f"[{colour}]{result.verdict}", f"{result.score:.3f}", f"{result.threshold:.3f}",
                          result.defect or "-", str(len(result.regions)), f"{result.timings_ms['total']:.0f}")
    if not args.json:
        console.print(table)
        if not args.no_overlays:
            console.print(f"overlays written to {args.out}/")
    if errors:
        return 2
    return 1 if (any_ng and args.fail_on_ng) else 0
