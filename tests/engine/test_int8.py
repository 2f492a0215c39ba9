"""The engine runs int8 only while it judges the few-shot parts as fp32 does."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.backbone import backends
from inspector.engine.int8 import compare

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_compare_counts_verdicts_and_the_largest_score_gap() -> None:
    a = [("OK", 0.1), ("NG", 2.0), ("OK", -0.3)]
    assert compare(a, a) == (0, 0.0)
    mismatches, diff = compare(a, [("OK", 0.15), ("OK", 1.9), ("OK", -0.3)])
    assert mismatches == 1 and diff == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same parts"):
        compare(a, a[:2])


def _line(tiny_line_dict: dict, **model) -> object:
    from inspector.config import LineConfig

    spec = {**tiny_line_dict["model"], "backend": "openvino", "precision": "int8", **model}
    return LineConfig.model_validate({**tiny_line_dict, "model": spec})


@pytest.mark.slow
def test_fit_checks_int8_against_fp32(tiny_line_dict, tiny_backbone, monkeypatch, tmp_path: Path) -> None:
    from inspector.demo.parts import PartGenerator
    from inspector.engine import Inspector
    from inspector.text.embeddings import TextEmbeddingCache

    monkeypatch.setattr(backends, "check_int8_supported", lambda: ("amx_int8",))
    gen = PartGenerator(size=(128, 128), seed=0, defect_rate=0.0)
    good = [gen.good().image for _ in range(4)]
    defect = PartGenerator(size=(128, 128), seed=1, defect_rate=1.0)
    defects = {"scratch": [defect.next().image for _ in range(2)]}

    engine = Inspector(_line(tiny_line_dict, int8_tolerance=10.0), tiny_backbone, TextEmbeddingCache(tmp_path))
    engine.fit(good, defects)
    check = engine.int8_check
    assert check is not None and check.parts == 6 and check.source == "quantized"
    assert check.accepted == (check.verdict_mismatches == 0)  # tolerance 10: only a verdict can refuse
    assert engine.runner.mode == ("int8" if check.accepted else "fp32")
    assert engine.backend_record()["precision"] == engine.runner.mode
    assert len(engine.inspect_batch(good[:2])) == 2

    # The same parts with a tolerance no quantized model meets: refused, the line runs fp32 and says why.
    strict = Inspector(_line(tiny_line_dict, int8_tolerance=1e-9), tiny_backbone, TextEmbeddingCache(tmp_path))
    strict.fit(good, defects)
    assert strict.int8_check is not None and not strict.int8_check.accepted
    assert strict.int8_check.max_score_diff > 1e-9
    assert strict.runner.mode == "fp32" and "int8 refused, running fp32" in strict.int8_check.reason
    record = strict.backend_record()
    assert record == {"backend": "openvino", "precision": "fp32", "int8_check": strict.int8_check.reason}
