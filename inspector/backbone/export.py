"""The line's backbone pass as a file an integrator can run elsewhere (OpenVINO IR or ONNX), with a manifest.

The exported model is :class:`~inspector.backbone.backends.FlatExtractor`: input ``images`` float32
[B, 3, H, W], RGB, already resized to the input size and normalised with the manifest's mean / std;
outputs ``global_emb`` [B, D], ``dense`` [B, N, D] and ``patches_<block>`` [B, N, C] (all L2-normalised;
N = grid rows x cols). After writing, the file is read back (OpenVINO reads both formats) and run on
the same input as torch; the largest absolute difference is recorded and must stay within tolerance.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from inspector.backbone.backends import FlatExtractor, convert_openvino, openvino_available, weights_digest
from inspector.backbone.dense import DenseFeatureExtractor
from inspector.backbone.loading import LoadedBackbone
from inspector.errors import InspectorError
from inspector.files import sha256_file

ExportFormat = Literal["openvino", "onnx"]
TOLERANCE = 1e-4
MANIFEST = "manifest.json"


@dataclass
class ExportReport:
    files: list[Path]
    manifest: dict[str, Any]
    max_abs_diff: float



def _write(extractor: DenseFeatureExtractor, fmt: ExportFormat, out: Path) -> list[Path]:
    if fmt == "openvino":
        import openvino as ov

        ov.save_model(convert_openvino(extractor), out / "model.xml", compress_to_fp16=False)
        return [out / "model.xml", out / "model.bin"]
    flat = FlatExtractor(extractor).eval()
    h, w = extractor.image_size
    # nn.MultiheadAttention's inference fast path is one fused op ONNX has no counterpart for: trace the plain ops.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer chatter
            torch.onnx.export(flat, (torch.zeros(1, 3, h, w),), str(out / "model.onnx"), input_names=["images"],
                              output_names=flat.output_names(), dynamic_axes={"images": {0: "batch"}},
                              opset_version=17, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return [out / "model.onnx"]


def reload_and_compare(path: Path, extractor: DenseFeatureExtractor, images: torch.Tensor) -> float:
    """Run the exported file (through OpenVINO) and torch on ``images``; the largest absolute output difference."""
    import openvino as ov

    compiled = ov.Core().compile_model(ov.Core().read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(images.numpy())
    with torch.inference_mode():
        ref = FlatExtractor(extractor)(images)
    return max(float((torch.from_numpy(got[compiled.output(i)]) - r).abs().max()) for i, r in enumerate(ref))


def export_backbone(backbone: LoadedBackbone, extractor: DenseFeatureExtractor, fmt: ExportFormat, out: Path,
                    images: torch.Tensor) -> ExportReport:
    """Write the extractor to ``out`` in ``fmt`` with ``manifest.json``, then reload it and compare on ``images``."""
    if not openvino_available():
        msg = ("inspector export needs the openvino package (to convert, and to read the file back for the check): "
               "pip install 'clip-inspector[openvino]'")
        raise InspectorError(msg)
    out.mkdir(parents=True, exist_ok=True)
    extractor = extractor.eval().cpu()
    files = _write(extractor, fmt, out)
    diff = reload_and_compare(files[0], extractor, images.cpu().float())
    if not diff <= TOLERANCE:
        msg = (f"the exported {fmt} model differs from torch by {diff:.3g} (> {TOLERANCE:g}) on the check input; "
               f"it was written to {out} but must not be used")
        raise InspectorError(msg)
    ident = backbone.identity
    h, w = extractor.image_size
    with torch.inference_mode():
        shapes = [list(t.shape[1:]) for t in FlatExtractor(extractor)(images[:1].cpu().float())]
    manifest = {
        "format": fmt, "model": ident.model, "pretrained": ident.pretrained, "weights_source": ident.source,
        "weights_sha256": ident.sha256, "untrained_backbone": ident.untrained,
        "extractor_sha256": weights_digest(extractor),  # the tensors the pass computes with
        "input": {"name": "images", "shape": ["batch", 3, h, w], "dtype": "float32", "layout": "NCHW", "color": "RGB",
                  "mean": list(backbone.mean), "std": list(backbone.std)},
        "image_size": [h, w], "layers": list(extractor.layers), "grid": list(extractor.grid),
        "outputs": {n: ["batch", *s] for n, s in zip(FlatExtractor(extractor).output_names(), shapes, strict=True)},
        "check": {"max_abs_diff": diff, "tolerance": TOLERANCE, "batch": int(images.shape[0])},
        "versions": {"torch": torch.__version__, "openvino": _ov_version()},
        "files": {p.name: sha256_file(p) for p in files},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return ExportReport(files=[*files, out / MANIFEST], manifest=manifest, max_abs_diff=diff)


def _ov_version() -> str:
    import openvino as ov

    return ov.get_version()
