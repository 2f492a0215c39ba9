"""`inspector export`: OpenVINO IR and ONNX files that reproduce the torch pass, with a truthful manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.cli import main
from tests.station.conftest import write_handle_station

ov = pytest.importorskip("openvino")


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "model_file"), [("openvino", "model.xml"), ("onnx", "model.onnx")])
def test_export_writes_a_model_that_reproduces_torch(tmp_path: Path, fmt: str, model_file: str, tiny_backbone) -> None:
    config = write_handle_station(tmp_path, tmp_path / "cache")
    out = tmp_path / "export"
    assert main(["export", "--config", str(config), "--line", "ring", "--format", fmt, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == fmt and manifest["model"] == "inspector-tiny-vit"
    assert manifest["image_size"] == [128, 128] and manifest["layers"] == [1, 2]
    assert manifest["check"]["max_abs_diff"] <= manifest["check"]["tolerance"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert list(manifest["outputs"]) == ["global_emb", "dense", "patches_1", "patches_2"]

    # An integrator's run: read the file, feed a normalised batch of 3 (another batch size than the check's).
    from inspector.backbone.dense import DenseFeatureExtractor

    extractor = DenseFeatureExtractor(tiny_backbone.model.visual, 128, (1, 2)).eval()
    images = torch.randn(3, 3, 128, 128)
    compiled = ov.Core().compile_model(ov.Core().read_model(out / model_file), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(images.numpy())
    with torch.inference_mode():
        ref = extractor(images)
    assert np.allclose(got[compiled.output(1)], ref.dense.numpy(), atol=1e-4)
    assert list(got[compiled.output(0)].shape) == [3, *manifest["outputs"]["global_emb"][1:]]


def test_export_unknown_line_is_a_clear_error(tmp_path: Path, capsys) -> None:
    config = write_handle_station(tmp_path, tmp_path / "cache")
    assert main(["export", "--config", str(config), "--line", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err
