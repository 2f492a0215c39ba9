"""The query of a CLIP search of the audit log: a phrase or an example image, in the stored embeddings' space."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.audit.history import History, HistoryRow, rank
from inspector.config import parse_station_config
from inspector.demo.parts import PartGenerator
from inspector.engine import Inspector
from inspector.errors import WeightsNotFoundError
from inspector.tuning.search import BackboneQuery, parse_record_model, query_embedding, record_model
from tests.conftest import tiny_line


@pytest.fixture(scope="module")
def inspector(tiny_backbone) -> Inspector:
    return Inspector(parse_station_config({"lines": [tiny_line()]}).lines[0], tiny_backbone)


def test_text_query_is_a_unit_vector_in_the_text_space(inspector):
    q = query_embedding(inspector, "scratch near the hole")
    assert q.dtype == np.float32 and q.shape == (int(inspector.text.normal.shape[-1]),)
    assert float(np.linalg.norm(q)) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(q, query_embedding(inspector, "a dent in the rim"))


def test_image_query_finds_the_record_of_the_same_part(inspector):
    gen = PartGenerator(size=(128, 128), seed=3)
    frames = [gen.good().image for _ in range(4)]
    stored = inspector.encode(frames).global_emb.float().numpy()  # what the station logs per part
    model = record_model(inspector)
    assert model == inspector.backbone.identity.label()
    rows = [HistoryRow(None, i, {"model": model}, stored[i]) for i in range(4)]  # type: ignore[arg-type]
    q = query_embedding(inspector, frames[2])
    assert float(np.linalg.norm(q)) == pytest.approx(1.0, abs=1e-5)
    result = rank(History(rows), range(4), q, model)
    assert result.ranked[0][0] == 2 and result.ranked[0][1] == pytest.approx(1.0, abs=1e-4)


def test_record_model_fields_name_the_backbone():
    assert parse_record_model("inspector-tiny-vit (untrained backbone)") == ("inspector-tiny-vit", "random", None)
    assert parse_record_model("ViT-B-16/laion2b_s34b_b88k sha256:1a2b3c4d") == ("ViT-B-16", "laion2b_s34b_b88k",
                                                                                   "1a2b3c4d")
    assert parse_record_model("ViT-B-16/line-7.safetensors") == ("ViT-B-16", "line-7.safetensors", None)
    with pytest.raises(ValueError, match="cannot tell the backbone"):
        parse_record_model("")


def test_backbone_alone_encodes_text_as_the_station_did(inspector):
    """The viewer's encoder (no line, no fit) gives the station engine's text embedding for the records' model."""
    query = BackboneQuery(record_model(inspector))
    assert np.allclose(query.embed_text("scratch near the hole"), query_embedding(inspector, "scratch near the hole"),
                       atol=1e-5)


def test_backbone_query_names_the_missing_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="No local weights for ViT-B-16"):
        BackboneQuery("ViT-B-16/laion2b_s34b_b88k sha256:1a2b3c4d", tmp_path)
