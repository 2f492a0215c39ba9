"""zeroshot.dense / dpam_blocks / map_pool on the engine: validated config, its own model key, the head's pooling."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from inspector.config import LineConfig
from inspector.demo.parts import PartGenerator
from inspector.engine import Inspector
from inspector.text.embeddings import TextEmbeddingCache
from inspector.training.feature_cache import cache_key
from tests.conftest import tiny_line


def _line(**zeroshot) -> LineConfig:
    return LineConfig(**tiny_line(model={"name": "inspector-tiny-vit", "pretrained": "random", "image_size": 64,
                                         "feature_layers": [1, 2]}, zeroshot=zeroshot))


def test_config_defaults_and_refusals() -> None:
    spec = _line().zeroshot
    assert (spec.dense, spec.dpam_blocks, spec.map_pool, spec.dense_blocks) == ("last_block", 0.8, 1, 1)
    assert _line(dense="dpam").zeroshot.dense_blocks == 0.8
    assert _line(dense="dpam", dpam_blocks=2).zeroshot.dense_blocks == 2
    assert _line(dpam_blocks=2).zeroshot.dense_blocks == 1  # the block count applies to dpam only
    for bad in ({"dense": "surgery"}, {"dpam_blocks": 0}, {"dpam_blocks": 1.5}, {"dpam_blocks": 0.0},
                {"dpam_blocks": "all"}, {"map_pool": 2}, {"pool": 3}):
        with pytest.raises(ValidationError):
            _line(**bad)


def test_dpam_has_its_own_model_key_and_caches(tiny_backbone, tmp_path) -> None:
    text = TextEmbeddingCache(tmp_path)
    plain = Inspector(_line(), tiny_backbone, text)
    dpam = Inspector(_line(dense="dpam", dpam_blocks=2), tiny_backbone, text)
    one = Inspector(_line(dense="dpam", dpam_blocks=1), tiny_backbone, text)
    pooled = Inspector(_line(map_pool=3), tiny_backbone, text)
    default = Inspector(_line(dense="dpam"), tiny_backbone, text)
    assert default.extractor.dense_blocks == 3  # floor(0.8 * 4)
    assert "dense=" not in plain.model_key  # the key lines had before the option: their caches stay valid
    assert dpam.model_key == f"{plain.model_key}|dense=dpam2"
    assert one.model_key == pooled.model_key == plain.model_key  # same features: one cache
    assert cache_key(dpam.model_key) != cache_key(plain.model_key)  # training feature caches never mix
    assert plain.config_hash != pooled.config_hash  # fitted states key on the config hash too
    image = PartGenerator((64, 64), seed=1).good().image
    a, b, c = (e.encode([image]) for e in (plain, dpam, one))
    assert np.allclose(a.dense.numpy(), c.dense.numpy()) and not np.allclose(a.dense.numpy(), b.dense.numpy())
    assert np.allclose(a.global_emb.numpy(), b.global_emb.numpy(), atol=1e-6)
    assert pooled.zero_shot.map_pool == 3
    assert pooled.inspect(image).anomaly_map.shape == image.shape[:2]


def test_more_dpam_blocks_than_the_backbone_has_is_a_clear_error(tiny_backbone, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"dpam_blocks 9: .* has only 4 transformer blocks"):
        Inspector(_line(dense="dpam", dpam_blocks=9), tiny_backbone, TextEmbeddingCache(tmp_path))
