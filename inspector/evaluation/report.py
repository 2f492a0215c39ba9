"""Self-contained report.html of one evaluation: curves, histograms, metrics and heatmaps.

Figures are drawn with matplotlib's Agg canvas (no pyplot, no GUI backend) and embedded as
base64 PNGs, so the one file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a backend a GUI already chose
    matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inspector.evaluation.metrics import METRIC_KEYS, precision_recall_curve, roc_curve

_logger = logging.getLogger(__name__)

_METRIC_NAMES = {
    "image_auroc": "Image AUROC",
    "image_ap": "Image AP",
    "image_f1_max": "Image F1-max",
    "pixel_auroc": "Pixel AUROC",
    "pixel_aupro": "Pixel AUPRO",
}
_GOOD, _DEFECT = "#2e7d32", "#c62828"
_MIN_SIDE = 256  # examples smaller than this (longest side, px) are enlarged for display


@dataclass(frozen=True)
class HeatmapExample:
    """One image shown in the report: RGB uint8 image, float map and bool mask of equal (H, W)."""

    path: str
    label: int
    score: float
    image: np.ndarray
    anomaly_map: np.ndarray
    mask: np.ndarray | None = None


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.12, top=0.92)  # fixed: no layout engine pass
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _curves(labels: np.ndarray, scores: np.ndarray, metrics: Mapping[str, Any]) -> list[str]:
    out = []
    fpr, tpr, _ = roc_curve(labels, scores)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color=_DEFECT, lw=1.8, label=f"AUROC {metrics.get('image_auroc', float('nan')):.4f}")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate (good images)", ylabel="true positive rate (defects)",
           title="Image ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    out.append(_img(_png(fig), "ROC curve"))

    precision, recall, thr = precision_recall_curve(labels, scores)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color=_DEFECT, lw=1.8,
            label=f"AP {metrics.get('image_ap', float('nan')):.4f}")
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    best = f1.size - 1 - int(np.argmax(f1[::-1]))
    ax.plot(recall[best], precision[best], "o", color="k",
            label=f"F1-max {f1[best]:.4f} at score >= {thr[best]:.4g}")
    ax.axhline(labels.mean(), color="0.6", lw=0.8, ls="--")
    ax.set(xlabel="recall", ylabel="precision", title="Image precision-recall", xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    out.append(_img(_png(fig), "PR curve"))

    fig = Figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot()
    lo, hi = float(scores.min()), float(scores.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    for sel, colour, name in ((~labels, _GOOD, "good"), (labels, _DEFECT, "defect")):
        ax.hist(scores[sel], bins=bins, histtype="stepfilled", color=colour, alpha=0.6,
                label=f"{name} ({int(sel.sum())})")
    ax.axvline(thr[best], color="k", lw=1.0, ls=":", label="F1-max threshold")
    ax.set(xlabel="image score", ylabel="images", title="Score distribution")
    ax.legend(fontsize=8)
    out.append(_img(_png(fig), "score histogram"))
    return out


def _overlay_png(ex: HeatmapExample, lo: float, hi: float) -> str:
    """Image | image blended with the jet-coloured map, both with the mask contour; PNG data URI."""
    image = np.ascontiguousarray(ex.image[..., :3], dtype=np.uint8)
    h, w = image.shape[:2]
    up = max(1, _MIN_SIDE // max(h, w, 1))  # small images: enlarge by an integer factor
    if up > 1:
        image = cv2.resize(image, (w * up, h * up), interpolation=cv2.INTER_NEAREST)
    norm = np.clip((np.asarray(ex.anomaly_map, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)
    heat = (matplotlib.colormaps["jet"](norm)[..., :3] * 255).astype(np.uint8)
    if heat.shape[:2] != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    blend = cv2.addWeighted(image, 0.5, heat, 0.5, 0.0)
    panels = [image.copy(), blend]
    if ex.mask is not None and np.any(ex.mask):
        mask = np.asarray(ex.mask).astype(np.uint8)
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for panel in panels:
            cv2.drawContours(panel, contours, -1, (0, 255, 0), 1)
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    both = np.concatenate([panels[0], gap, panels[1]], axis=1)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(both, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB image
        msg = f"could not encode the example {ex.path} as PNG"
        raise RuntimeError(msg)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _examples(examples: Sequence[HeatmapExample]) -> str:
    if not examples:
        return "<p>No examples.</p>"
    lo = min(float(np.min(e.anomaly_map)) for e in examples)
    hi = max(float(np.max(e.anomaly_map)) for e in examples)
    hi = hi if hi > lo else lo + 1.0
    cells = []
    for ex in examples:
        kind = "defect" if ex.label else "good"
        caption = f"{html.escape(ex.path)}<br>{kind}, score {ex.score:.6g}"
        cells.append(f"<figure>{_img(_overlay_png(ex, lo, hi), ex.path)}<figcaption>{caption}"
                     "</figcaption></figure>")
    note = (f"<p class='note'>Left: image with the ground-truth contour (green). Right: anomaly map "
            f"overlay (jet), one colour scale for all examples: {lo:.4g} blue to {hi:.4g} red.</p>")
    return note + "<div class='grid'>" + "".join(cells) + "</div>"


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple | dict):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def write_report(out_dir: str | Path, labels: Sequence[int] | np.ndarray,
                 scores: Sequence[float] | np.ndarray, paths: Sequence[str],
                 examples: Sequence[HeatmapExample], metrics: Mapping[str, Any]) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and return its path.

    ``examples``: at most the first 8 are shown. ``paths`` name the images in the same order as
    ``labels`` / ``scores`` (listed for the highest-scoring good and lowest-scoring defect images).
    """
    out_dir = Path(out_dir)
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if not (y.shape == s.shape and len(paths) == y.size):
        msg = f"labels ({y.size}), scores ({s.size}) and paths ({len(paths)}) must have equal length"
        raise ValueError(msg)
    title = f"{metrics.get('dataset', '')}/{metrics.get('category', '')}".strip("/") or "evaluation"

    rows = "".join(
        f"<tr><th>{_METRIC_NAMES[k]}</th><td>{_fmt(metrics.get(k))}</td>"
        f"<td>{'' if metrics.get(k) is None else f'{100 * metrics[k]:.2f} %'}</td></tr>"
        for k in METRIC_KEYS)
    info = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                   for k, v in metrics.items() if k not in METRIC_KEYS)

    if y.any() and not y.all():
        figures = "".join(_curves(y, s, metrics))
    else:
        figures = "<p>Curves need both good and defect images.</p>"

    order = np.argsort(-s, kind="stable")
    worst_good = [i for i in order if not y[i]][:10]
    worst_defect = [i for i in order[::-1] if y[i]][:10]

    def listing(idx: list[int]) -> str:
        return "".join(f"<tr><td>{html.escape(paths[i])}</td><td>{s[i]:.6g}</td></tr>" for i in idx)

    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation report: {html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em; }}
th {{ background: #f4f4f4; }}
.row img {{ margin-right: 0.5em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 0.5em; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 0.8em; color: #444; max-width: 660px; word-break: break-all; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Evaluation report: {html.escape(title)}</h1>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>%</th></tr>{rows}</table>
<h2>Curves</h2>
<div class="row">{figures}</div>
<h2>Heatmaps</h2>
{_examples(list(examples)[:8])}
<h2>Hardest images</h2>
<p class="note">Highest-scoring good images (possible false alarms) and lowest-scoring defects
(possible misses).</p>
<div class="grid">
<table><tr><th>good image</th><th>score</th></tr>{listing(worst_good)}</table>
<table><tr><th>defect image</th><th>score</th></tr>{listing(worst_defect)}</table>
</div>
<h2>Run</h2>
<table>{info}</table>
<p class="note">Protocol: docs/EVALUATION.md.</p>
</body></html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    _logger.info("wrote %s", path)
    return path
