"""`inspector export`: the line's backbone pass as an OpenVINO IR or ONNX file with a manifest, checked on reload."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the line's backbone as OpenVINO IR or ONNX, with a manifest")
    p.add_argument("--config", type=Path, required=True, help="station config")
    p.add_argument("--line", default=None, help="line of --config (default: its default line)")
    p.add_argument("--format", choices=("openvino", "onnx"), default="openvino")
    p.add_argument("--out", type=Path, required=True, help="output folder (model file(s) and manifest.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from inspector.backbone.dense import DenseFeatureExtractor
    from inspector.backbone.export import export_backbone
    from inspector.backbone.loading import load_backbone
    from inspector.config import load_station_config
    from inspector.demo.parts import PartGenerator
    from inspector.errors import InspectorError
    from inspector.frames.preprocess import Preprocessor

    station = load_station_config(args.config)
    try:
        line = station.line(args.line)
    except KeyError as exc:
        raise InspectorError(str(exc.args[0])) from None
    backbone = load_backbone(line.model.model_copy(update={"device": "cpu"}), station.resolve(station.model_dir))
    extractor = DenseFeatureExtractor(backbone.model.visual, line.model.image_size, line.model.feature_layers,
                                      model=line.model.name, dense_blocks=line.zeroshot.dense_blocks).eval()
    # The check input: two rendered parts through the line's own preprocessing (real pixel statistics).
    gen = PartGenerator(size=(256, 256), seed=0, defect_rate=0.5)
    images = Preprocessor(extractor.image_size, backbone.mean, backbone.std, backbone.device)(
        [gen.next().image for _ in range(2)])
    report = export_backbone(backbone, extractor, args.format, args.out, images)
    Console().print(f"exported {line.model.name} ({backbone.identity.label()}) as {args.format} to {args.out}: "
                    + ", ".join(p.name for p in report.files)
                    + f" | reload check: max |diff| {report.max_abs_diff:.2e} vs torch")
    return 0
