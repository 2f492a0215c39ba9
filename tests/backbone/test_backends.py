"""model.backend: the OpenVINO pass equals the torch pass, and its on-disk cache is never trusted blindly."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from inspector.backbone import backends
from inspector.backbone.backends import OpenVINORunner, TorchRunner, make_runner, resolve_backend
from inspector.backbone.dense import DenseFeatureExtractor
from inspector.errors import InspectorError

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def extractor(tiny_backbone) -> DenseFeatureExtractor:
    return DenseFeatureExtractor(tiny_backbone.model.visual, 64, (1, 2), model="tiny").eval()


@pytest.fixture(scope="module")
def seeded(extractor, tmp_path_factory) -> Path:
    """A cache folder holding the extractor's converted model (one conversion for the module)."""
    folder = tmp_path_factory.mktemp("ov-cache")
    OpenVINORunner(extractor, "tiny", "fp32", folder)
    return folder


def _copy(seeded: Path, tmp_path: Path) -> Path:
    shutil.copytree(seeded, tmp_path / "cache")
    return tmp_path / "cache"


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "openvino").iterdir() if not p.name.startswith("."))


def test_openvino_features_equal_torch(extractor: DenseFeatureExtractor, seeded: Path, tmp_path: Path) -> None:
    runner = OpenVINORunner(extractor, "tiny", "fp32", _copy(seeded, tmp_path))
    assert runner.source == "cache"
    images = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        ref = extractor(images)
    got = runner(images)
    assert got.grid == ref.grid and sorted(got.patches) == sorted(ref.patches) == [1, 2]
    assert torch.allclose(got.global_emb, ref.global_emb, atol=1e-5)
    assert torch.allclose(got.dense, ref.dense, atol=1e-5)
    for layer in ref.patches:
        assert torch.allclose(got.patches[layer], ref.patches[layer], atol=1e-5)
    assert runner(images[:1]).global_emb.shape == (1, ref.global_emb.shape[1])  # any batch size


@pytest.mark.slow
def test_second_start_reads_the_cache_and_a_changed_key_rebuilds(extractor, tmp_path: Path) -> None:
    OpenVINORunner(extractor, "tiny", "fp32", tmp_path)
    again = OpenVINORunner(extractor, "tiny", "fp32", tmp_path)
    assert again.source == "cache" and len(_entries(tmp_path)) == 1
    other = DenseFeatureExtractor(extractor.visual, 64, (0,), model="tiny").eval()  # other layers: another entry
    assert OpenVINORunner(other, "tiny", "fp32", tmp_path).source == "converted"
    assert len(_entries(tmp_path)) == 2


@pytest.mark.slow
def test_damaged_and_stale_entries_are_rebuilt(extractor, seeded: Path, tmp_path: Path, caplog) -> None:
    tmp_path = _copy(seeded, tmp_path)
    (entry,) = _entries(tmp_path)
    blob = bytearray((entry / "model.bin").read_bytes())
    blob[100] ^= 0xFF  # one flipped byte in the weights
    (entry / "model.bin").write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING):
        runner = OpenVINORunner(extractor, "tiny", "fp32", tmp_path)
    assert runner.source == "converted" and "model.bin does not match" in caplog.text
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(runner(images).dense, extractor(images).dense, atol=1e-5)
    assert OpenVINORunner(extractor, "tiny", "fp32", tmp_path).source == "cache"  # the rebuilt entry is good

    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["key"]["weights_sha256"] = "0" * 64  # built for other weights
    (entry / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert OpenVINORunner(extractor, "tiny", "fp32", tmp_path).source == "converted"
    assert "stale" in caplog.text

    (entry / "manifest.json").write_text("{not json")
    assert OpenVINORunner(extractor, "tiny", "fp32", tmp_path).source == "converted"


def test_weights_digest_changes_with_the_weights(extractor) -> None:
    before = backends.weights_digest(extractor)
    assert backends.weights_digest(extractor) == before
    with torch.no_grad():
        extractor.visual.proj[0, 0] += 1.0
    try:
        assert backends.weights_digest(extractor) != before
    finally:
        with torch.no_grad():
            extractor.visual.proj[0, 0] -= 1.0


def test_resolve_backend(monkeypatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cpu) == "openvino"
    assert resolve_backend("auto", cuda) == "torch"
    with pytest.raises(InspectorError, match="runs on the CPU"):
        resolve_backend("openvino", cuda)
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert resolve_backend("auto", cpu) == "torch"
    with pytest.raises(InspectorError, match=r"clip-inspector\[openvino\]"):
        resolve_backend("openvino", cpu)


def test_make_runner_without_cache_dir(extractor) -> None:
    assert isinstance(make_runner(extractor, "torch", model_name="t", precision="fp32", cache_dir=None), TorchRunner)
    runner = make_runner(extractor, "openvino", model_name="t", precision="fp32", cache_dir=None)
    assert isinstance(runner, OpenVINORunner) and runner.source == "converted"


@pytest.mark.slow
def test_engine_scores_match_between_backends(tiny_line_dict, tiny_backbone, tmp_path: Path) -> None:
    from inspector.config import LineConfig
    from inspector.demo.parts import PartGenerator
    from inspector.engine import Inspector
    from inspector.text.embeddings import TextEmbeddingCache

    gen = PartGenerator(size=(128, 128), seed=0, defect_rate=0.5)
    frames = [gen.next().image for _ in range(3)]
    scores = {}
    for backend in ("torch", "openvino"):
        line = LineConfig.model_validate({**tiny_line_dict, "model": {**tiny_line_dict["model"], "backend": backend}})
        engine = Inspector(line, tiny_backbone, TextEmbeddingCache(tmp_path))
        assert engine.runner.backend == backend
        scores[backend] = [r.score for r in engine.inspect_batch(frames)]
    assert scores["openvino"] == pytest.approx(scores["torch"], abs=1e-4)


def test_compile_is_for_the_torch_backend() -> None:
    from inspector.config.line import ModelSpec

    with pytest.raises(ValueError, match=r"model\.compile is torch\.compile"):
        ModelSpec(name="ViT-B-16", pretrained="random", backend="openvino", compile="default")
    assert ModelSpec(name="ViT-B-16", pretrained="random", compile="reduce-overhead").compile == "reduce-overhead"


@pytest.mark.slow
def test_compiled_engine_scores_equal_eager(tiny_line_dict, tiny_backbone, tmp_path: Path) -> None:
    """model.compile: torch.compile (inductor, CPU here) compiles at line start and scores as eager does."""
    from inspector.config import LineConfig
    from inspector.demo.parts import PartGenerator
    from inspector.engine import Inspector
    from inspector.text.embeddings import TextEmbeddingCache

    frames = [PartGenerator(size=(128, 128), seed=0, defect_rate=0.5).next().image for _ in range(2)]
    scores = {}
    for mode in ("off", "default"):
        line = LineConfig.model_validate({**tiny_line_dict, "model": {**tiny_line_dict["model"], "compile": mode}})
        engine = Inspector(line, tiny_backbone, TextEmbeddingCache(tmp_path))
        assert getattr(engine.runner, "compile_mode", None) == mode
        assert engine.backend_record().get("compile") == (None if mode == "off" else mode)
        scores[mode] = [r.score for r in engine.inspect_batch(frames)] + [engine.inspect(frames[0]).score]
    assert scores["default"] == pytest.approx(scores["off"], abs=1e-4)


def test_the_dpam_path_is_in_the_cache_key(extractor: DenseFeatureExtractor) -> None:
    key = backends.cache_key(extractor, "tiny", "fp32")
    assert "dense_blocks" not in key  # the last-block branch keeps the entries compiled before the option
    dpam = DenseFeatureExtractor(extractor.visual, 64, (1, 2), model="tiny", dense_blocks=3).eval()
    other = backends.cache_key(dpam, "tiny", "fp32")
    assert other["dense_blocks"] == 3 and backends._key_digest(other) != backends._key_digest(key)


@pytest.mark.slow
def test_openvino_runs_the_dpam_path(extractor: DenseFeatureExtractor, tmp_path: Path) -> None:
    dpam = DenseFeatureExtractor(extractor.visual, 64, (1, 2), model="tiny", dense_blocks=3).eval()
    runner = OpenVINORunner(dpam, "tiny", "fp32", tmp_path)
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = dpam(images)
    got = runner(images)
    assert torch.allclose(got.dense, ref.dense, atol=1e-5)
    assert torch.allclose(got.global_emb, ref.global_emb, atol=1e-5)
