"""HDF5 feature cache: hits survive the process, only new (image, view) pairs are encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.backbone.dense import Features
from inspector.training.errors import TrainingCancelledError
from inspector.training.feature_cache import FeatureCache


class CountingEncoder:
    """Stands in for the backbone: features are a function of the image, calls are counted."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: list[np.ndarray]) -> Features:
        self.images += len(images)
        value = torch.tensor([float(img.mean()) for img in images])
        glob = torch.nn.functional.normalize(value[:, None] + torch.arange(4.0), dim=-1)
        patches = {1: value[:, None, None].expand(-1, 6, 3).clone() / 255}
        with torch.inference_mode():  # like the engine: inference tensors come out
            return Features(glob.clone(), value[:, None, None].expand(-1, 6, 2).clone(), {
                k: v.clone() for k, v in patches.items()}, (2, 3))


def _images(n: int, offset: int = 0) -> list[np.ndarray]:
    return [np.full((8, 8, 3), 10 * (i + offset), np.uint8) for i in range(n)]


def test_second_run_encodes_nothing_and_a_new_image_only_itself(tmp_path: Path) -> None:
    imgs = _images(5)
    keys = [(f"sha{i}", "orig") for i in range(5)]
    enc = CountingEncoder()
    first = FeatureCache.for_backbone(tmp_path, "model-A").get_or_encode(keys, lambda i: imgs[i], enc)
    assert enc.images == 5 and first.batch_size == 5 and first.grid == (2, 3)
    assert not first.global_emb.is_inference()
    cache = FeatureCache.for_backbone(tmp_path, "model-A")  # a new process: reads the file
    again = cache.get_or_encode(keys, lambda i: imgs[i], enc)
    assert enc.images == 5 and cache.stats.hits == 5 and cache.stats.encoded == 0
    assert torch.allclose(again.global_emb, first.global_emb)
    assert torch.allclose(again.patches[1], first.patches[1], atol=1e-3)  # float16 storage
    more = [*imgs, *_images(1, offset=7)]
    cache.get_or_encode([*keys, ("sha7", "orig"), ("sha0", "aug-x-1")], lambda i: more[min(i, 5)], enc)
    assert enc.images == 7  # the new image and the new view of an old one


def test_backbone_identity_separates_entries(tmp_path: Path) -> None:
    imgs = _images(2)
    keys = [("a", "orig"), ("b", "orig")]
    enc = CountingEncoder()
    FeatureCache.for_backbone(tmp_path, "model-A").get_or_encode(keys, lambda i: imgs[i], enc)
    FeatureCache.for_backbone(tmp_path, "model-B").get_or_encode(keys, lambda i: imgs[i], enc)
    assert enc.images == 4


def test_a_corrupt_file_is_set_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FeatureCache.for_backbone(tmp_path, "model-A")
    assert cache.path is not None
    cache.path.write_bytes(b"this is not HDF5")
    enc = CountingEncoder()
    imgs = _images(2)
    cache.get_or_encode([("a", "orig"), ("b", "orig")], lambda i: imgs[i], enc)
    assert enc.images == 2 and "unusable" in caplog.text
    assert list(tmp_path.glob("*.corrupt-*"))
    fresh = FeatureCache.for_backbone(tmp_path, "model-A")
    fresh.get_or_encode([("a", "orig")], lambda i: imgs[i], enc)
    assert fresh.stats.hits == 1


def test_memory_only_and_cancellation() -> None:
    enc = CountingEncoder()
    imgs = _images(20)
    cache = FeatureCache(None, "m")
    with pytest.raises(TrainingCancelledError):
        cache.get_or_encode([(str(i), "orig") for i in range(20)], lambda i: imgs[i], enc,
                            should_stop=lambda: enc.images >= 8)
    assert enc.images == 8
    cache.get_or_encode([(str(i), "orig") for i in range(20)], lambda i: imgs[i], enc)
    assert enc.images == 20  # what was encoded before the cancel is kept


def test_dense_tokens_keep_float32_and_an_older_format_is_rebuilt(tmp_path: Path) -> None:
    """Dense tokens feed the zero-shot head in log-odds units (T ~ 100 times the rounding): no float16 there."""
    import h5py

    imgs = _images(2)
    keys = [("a", "orig"), ("b", "orig")]
    enc = CountingEncoder()
    fine = torch.tensor([1.0 + 2.0**-12])  # not representable in float16
    def encode(images: list[np.ndarray]) -> Features:
        f = enc(images)
        return Features(f.global_emb, f.dense + fine, f.patches, f.grid)

    first = FeatureCache.for_backbone(tmp_path, "model-A").get_or_encode(keys, lambda i: imgs[i], encode)
    cache = FeatureCache.for_backbone(tmp_path, "model-A")
    again = cache.get_or_encode(keys, lambda i: imgs[i], encode)
    assert cache.stats.hits == 2 and torch.equal(again.dense, first.dense)
    assert torch.equal(first.dense, encode(imgs).dense)  # in memory too, exactly what the backbone gave
    assert cache.path is not None
    with h5py.File(cache.path, "a") as fh:
        fh.attrs["format"] = "inspector-features/1"  # float16 dense tokens
    older = FeatureCache.for_backbone(tmp_path, "model-A")
    before = enc.images
    older.get_or_encode(keys, lambda i: imgs[i], encode)
    assert enc.images == before + 2 and list(tmp_path.glob("*.corrupt-*"))
