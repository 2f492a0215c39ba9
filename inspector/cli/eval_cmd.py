"""`inspector eval ROOT --category C --shots K ...`: the accuracy protocol on MVTec AD / VisA."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspector.config.line import parse_layer

# Object names used in the prompts for the public benchmarks' categories.
CATEGORY_NAMES = {
    "metal_nut": "metal nut", "pcb1": "printed circuit board", "pcb2": "printed circuit board",
    "pcb3": "printed circuit board", "pcb4": "printed circuit board", "macaroni1": "macaroni",
    "macaroni2": "macaroni", "chewinggum": "chewing gum", "pipe_fryum": "pipe fryum",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate on MVTec AD / VisA (image/pixel AUROC, AP, F1-max, AUPRO)")
    p.add_argument("root", type=Path, metavar="ROOT", help="dataset root (MVTec AD or VisA layout)")
    p.add_argument("--category", required=True, help="e.g. bottle, screw, pcb1")
    p.add_argument("--shots", type=int, default=0, help="good reference images (0 = zero-shot)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shot selection")
    p.add_argument("--model", default="ViT-B-16-plus-240", help="open_clip architecture")
    p.add_argument("--pretrained", default="laion400m_e32", help="tag, local weights file or 'random'")
    p.add_argument("--image-size", type=int, default=None, help="input side in px (default: the model's)")
    p.add_argument("--layers", type=parse_layer, nargs="+", default=None,
                   help="patch-memory blocks: fractions of the depth (0.5 0.75), negative from the end, or 0-based")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--dataset", default="auto", choices=("auto", "mvtec", "visa"))
    p.add_argument("--object-name", help="object word in the prompts (default: from the category)")
    p.add_argument("--config", type=Path, help="take prompts and head weights from this station's line")
    p.add_argument("--line", help="line of --config")
    p.add_argument("--model-dir", type=Path, default=Path("models"))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--save-maps", action="store_true", help="write maps.h5 (one map per test image)")
    p.add_argument("--max-images", type=int, default=None,
                   help="smoke test: N evenly spaced test images (both classes needed)")
    p.add_argument("--mutual", action="store_true",
                   help="mutual scoring (MuSc): each test image against the other test images; no labels used")
    p.add_argument("--buffer", type=int, default=None,
                   help="with --mutual: each image against the N images before it in a seeded order (a line's buffer)")
    p.add_argument("--neighbourhood", type=int, choices=(1, 3, 5), default=None,
                   help="reference and mutual heads: aggregate patch tokens over an n x n neighbourhood "
                        "(fewshot.neighbourhood, mutual.neighbourhood)")
    p.add_argument("--image-score", choices=("max", "top1"), default=None,
                   help="reference head image score: map peak or mean of its top 1 %% (fewshot.image_score)")
    p.add_argument("--zs-dense", choices=("last_block", "dpam"), default=None,
                   help="zero-shot dense tokens: last-block v-v branch or DPAM over the last blocks (zeroshot.dense)")
    p.add_argument("--dpam-blocks", type=parse_layer, default=None,
                   help="with --zs-dense dpam: blocks of the v-v path from the last, a count or a fraction of the "
                        "depth (zeroshot.dpam_blocks, default 0.8)")
    p.add_argument("--zs-map-pool", type=int, choices=(1, 3), default=None,
                   help="zero-shot patch map: 3 = 3x3 mean filter before the peak (zeroshot.map_pool)")
    p.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=None,
                   help="fuse the zero-shot head (default: on, off with --mutual)")
    p.set_defaults(func=run)


def build_line(args: argparse.Namespace):
    """The evaluation line: its few-shot cap raised to ``--shots`` so that every requested shot is used."""
    from inspector.config import FewShotSpec, LineConfig, ModelSpec, load_station_config
    from inspector.config.line import MAX_SHOTS

    mutual = getattr(args, "mutual", False)
    if getattr(args, "buffer", None) is not None and not mutual:
        msg = "--buffer needs --mutual"
        raise ValueError(msg)
    if mutual and args.buffer is not None and args.buffer < 1:
        msg = f"--buffer {args.buffer}: the buffer holds at least one image"
        raise ValueError(msg)
    if args.shots > MAX_SHOTS:
        msg = f"--shots {args.shots}: a line holds at most {MAX_SHOTS} few-shot images (fewshot.max_shots)"
        raise ValueError(msg)
    object_name = args.object_name or CATEGORY_NAMES.get(args.category, args.category.replace("_", " "))
    model = {"name": args.model, "pretrained": args.pretrained, "device": args.device,
             "image_size": args.image_size, "precision": args.precision}
    if args.layers:
        model["feature_layers"] = tuple(args.layers)
    if args.config:
        base = load_station_config(args.config).line(args.line)
        fewshot = base.fewshot.model_copy(update={"max_shots": max(base.fewshot.max_shots, args.shots)})
        line = base.model_copy(update={"object_name": object_name, "roi": None, "fewshot": fewshot,
                                       "model": ModelSpec(**{**base.model.model_dump(), **model})})
    else:
        fewshot = FewShotSpec(max_shots=max(FewShotSpec().max_shots, args.shots))
        line = LineConfig(name=f"eval-{args.category}", object_name=object_name, model=ModelSpec(**model),
                          fewshot=fewshot)
        if mutual:  # every patch token of every image (MuSc), not the station's per-part coreset
            line = line.model_copy(update={"mutual": line.mutual.model_copy(update={"tokens_per_part": 4096})})
    options = {k: v for k in ("neighbourhood", "image_score") if (v := getattr(args, k, None)) is not None}
    if options:
        line = line.model_copy(update={"fewshot": line.fewshot.model_copy(update=options)})
    if "neighbourhood" in options:  # the mutual head aggregates alike
        mutual_spec = line.mutual.model_copy(update={"neighbourhood": options["neighbourhood"]})
        line = line.model_copy(update={"mutual": mutual_spec})
    zs = {key: v for key, name in (("dense", "zs_dense"), ("dpam_blocks", "dpam_blocks"), ("map_pool", "zs_map_pool"))
          if (v := getattr(args, name, None)) is not None}
    if zs:  # validated as the YAML is (ZeroShotSpec)
        line = line.model_copy(update={"zeroshot": type(line.zeroshot)(**{**line.zeroshot.model_dump(), **zs})})
    zero_shot = getattr(args, "zero_shot", None)
    heads = {}
    if mutual:
        heads["mutual"] = line.heads.mutual or 1.0
        # The head is on from the first image: its window is the bank (min_parts 1).
        line = line.model_copy(update={"mutual": line.mutual.model_copy(update={"min_parts": 1, "buffer": 1024})})
    if zero_shot is False or (zero_shot is None and mutual):
        heads["zero_shot"] = 0.0
    elif zero_shot:
        heads["zero_shot"] = line.heads.zero_shot or 1.0
    if heads:
        line = line.model_copy(update={"heads": line.heads.model_copy(update=heads)})
    return line


class EnginePredictor:
    """The evaluation runner's Predictor on top of the station engine."""

    def __init__(self, inspector) -> None:
        self.inspector = inspector

    def fit(self, good_images: list) -> None:
        cap = self.inspector.line.fewshot.max_shots
        if len(good_images) > cap:  # the engine would keep only the first `cap`: refuse, never truncate
            msg = (f"{len(good_images)} shots but the line's fewshot.max_shots is {cap}: the fit would "
                   "silently drop the rest; raise max_shots")
            raise ValueError(msg)
        if good_images:
            self.inspector.fit(good_images)

    def predict(self, image):
        result = self.inspector.inspect(image)
        return result.score, result.anomaly_map


class MutualPredictor(EnginePredictor):
    """The MuSc protocol on the engine: observe every test image, then score each against its window."""

    def __init__(self, inspector, seed: int, buffer: int | None) -> None:
        super().__init__(inspector)
        self.seed, self.buffer = seed, buffer
        self._tokens: list[dict] = []
        self._bank: dict | None = None
        self._windows: list | None = None

    def observe(self, index: int, image) -> None:
        if index != len(self._tokens):
            msg = f"test images must be observed in order; got {index} after {len(self._tokens)}"
            raise ValueError(msg)
        self._tokens.append(self.inspector.mutual_tokens(self.inspector.encode([image]))[0])

    def predict_index(self, index: int, image):
        import numpy as np
        import torch

        from inspector.evaluation.mutual import mutual_windows

        if self._bank is None:
            self._bank = {layer: torch.from_numpy(np.stack([t[layer] for t in self._tokens]))
                          for layer in self._tokens[0]}
            self._windows = mutual_windows(len(self._tokens), self.seed, self.buffer)
            self.inspector.set_mutual_bank(self._bank, stats=True)  # fusion statistics from the whole set
        window = torch.from_numpy(self._windows[index])
        self.inspector.set_mutual_bank({k: v[window] for k, v in self._bank.items()}, stats=False)
        return self.predict(image)


def run(args: argparse.Namespace) -> int:
    from inspector.backbone.loading import load_backbone
    from inspector.engine import Inspector
    from inspector.evaluation import run_evaluation

    try:
        line = build_line(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        inspector = Inspector(line, load_backbone(line.model, args.model_dir))
    except ValueError as exc:  # an option the backbone cannot honour (e.g. more DPAM blocks than it has)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    predictor = MutualPredictor(inspector, args.seed, args.buffer) if args.mutual else EnginePredictor(inspector)
    meta = {"model": line.model.name, "pretrained": line.model.pretrained,
            "backbone": inspector.backbone.identity.label(), "image_size": inspector.extractor.image_size[0],
            "feature_layers": list(inspector.extractor.layers), "object_name": line.object_name,
            "untrained_backbone": inspector.backbone.identity.untrained,
            "heads": {h: getattr(line.heads, h) for h in ("zero_shot", "references", "probe", "mutual")},
            "mutual": args.mutual, "mutual_buffer": args.buffer,
            "neighbourhood": line.fewshot.neighbourhood, "image_score": line.fewshot.image_score,
            "zeroshot": line.zeroshot.model_dump()}
    metrics = run_evaluation(args.root, args.category, args.shots, args.seed, predictor, args.out,
                             dataset=args.dataset, save_maps=args.save_maps, max_images=args.max_images, meta=meta)
    from rich.console import Console
    from rich.table import Table

    mode = (" + mutual" + (f" (buffer {args.buffer})" if args.buffer else "")) if args.mutual else ""
    table = Table(title=f"{args.category}, {args.shots}-shot{mode}, seed {args.seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro"):
        value = metrics.get(key)
        table.add_row(key, "-" if value is None else f"{100 * value:.1f}")
    Console().print(table)
    print(f"written: {args.out}/metrics.json, scores.csv, report.html" + (", maps.h5" if args.save_maps else ""))
    return 0
