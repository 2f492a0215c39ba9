"""int8 on the OpenVINO backend: refused where it cannot pay, cached by its calibration, switchable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.backbone import backends, quantize
from inspector.backbone.dense import DenseFeatureExtractor
from inspector.backbone.quantize import INT8_FLAGS, calibration_digest, check_int8_supported, cpu_int8_units
from inspector.config.line import ModelSpec
from inspector.errors import InspectorError

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_cpu_int8_units_read_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8\n")
    assert cpu_int8_units(info) == ("avx512_vnni", "amx_int8")
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_int8_units(info) == ()
    assert cpu_int8_units(tmp_path / "missing") == ()


def test_int8_is_refused_on_a_cpu_without_int8_units() -> None:
    with pytest.raises(InspectorError, match=r"no int8 dot-product units .*set model.precision to fp32"):
        check_int8_supported(())
    assert check_int8_supported(("avx_vnni",)) == ("avx_vnni",)
    assert set(INT8_FLAGS) >= {"avx512_vnni", "avx_vnni", "amx_int8"}


def test_int8_needs_the_openvino_backend() -> None:
    with pytest.raises(ValueError, match="int8 runs on the OpenVINO backend"):
        ModelSpec(name="ViT-B-16", pretrained="random", precision="int8", backend="torch")
    assert ModelSpec(name="ViT-B-16", pretrained="random", precision="int8", backend="auto").precision == "int8"
    with pytest.raises(ValueError, match="int8_tolerance"):
        ModelSpec(name="ViT-B-16", pretrained="random", precision="int8", backend="openvino", int8_tolerance=0)


def test_calibration_digest_follows_the_images() -> None:
    a = np.zeros((2, 3, 8, 8), np.float32)
    b = a.copy()
    b[1, 0, 0, 0] = 1e-6
    assert calibration_digest(a) == calibration_digest(a.copy())
    assert calibration_digest(a) != calibration_digest(b)
    assert calibration_digest(a) != calibration_digest(a[:1])


@pytest.fixture(scope="module")
def extractor(tiny_backbone) -> DenseFeatureExtractor:
    return DenseFeatureExtractor(tiny_backbone.model.visual, 64, (1, 2), model="tiny").eval()


@pytest.fixture
def int8_cpu(monkeypatch):
    """Pretend the CPU has int8 units, so the int8 path runs on any CI machine (it is only slower without)."""
    monkeypatch.setattr(backends, "check_int8_supported", lambda: ("avx512_vnni",))


@pytest.mark.slow
def test_quantize_caches_by_calibration_and_switches(extractor, int8_cpu, tmp_path: Path) -> None:
    runner = backends.OpenVINORunner(extractor, "tiny", "int8", tmp_path)
    assert runner.mode == "fp32" and runner.int8_units == ("avx512_vnni",)
    with pytest.raises(InspectorError, match="quantize first"):
        runner.use("int8")
    gen = torch.Generator().manual_seed(0)
    calib = torch.randn(4, 3, 64, 64, generator=gen).numpy()
    images = torch.randn(2, 3, 64, 64, generator=gen)
    fp32 = runner(images)
    assert runner.quantize(calib) == "quantized"
    assert runner.quantize(calib) == "memory"
    assert runner.mode == "fp32"  # quantizing never switches by itself: the engine decides
    runner.use("int8")
    int8 = runner(images)
    cos = torch.nn.functional.cosine_similarity(int8.global_emb, fp32.global_emb, dim=-1)
    assert cos.min() > 0.9 and not torch.equal(int8.global_emb, fp32.global_emb)
    assert int8.patches.keys() == fp32.patches.keys()
    # A second start reads the int8 model from the cache; other calibration images quantize again.
    again = backends.OpenVINORunner(extractor, "tiny", "int8", tmp_path)
    assert again.source == "cache" and again.quantize(calib) == "cache"
    again.use("int8")
    assert torch.allclose(again(images).global_emb, int8.global_emb, atol=1e-6)
    assert again.quantize(calib[:3]) == "quantized"
    assert again.mode == "fp32"  # a new calibration falls back to fp32 until checked


def test_quantize_refuses_without_int8_precision(extractor, tmp_path: Path) -> None:
    runner = backends.OpenVINORunner(extractor, "tiny", "fp32", tmp_path)
    with pytest.raises(InspectorError, match=r"set model\.precision to int8"):
        runner.quantize(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InspectorError, match="batch of preprocessed images"):
        quantize.quantize_model(runner.model, np.zeros((3, 64, 64), np.float32))


def test_int8_on_a_torch_backend_is_refused(extractor) -> None:
    with pytest.raises(InspectorError, match="int8 runs on the OpenVINO backend"):
        backends.make_runner(extractor, "torch", model_name="t", precision="int8", cache_dir=None)
