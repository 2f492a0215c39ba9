"""The mutual head's line options: off by default, a buffer that can warm up, strict keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.config import LineConfig
from tests.conftest import tiny_line


def test_mutual_is_off_on_existing_lines() -> None:
    line = LineConfig(**tiny_line())
    assert line.heads.mutual == 0.0
    assert (line.mutual.buffer, line.mutual.min_parts, line.mutual.interval, line.mutual.top) == (64, 16, 0.3, 0.01)
    assert (line.fewshot.neighbourhood, line.fewshot.image_score) == (1, "max")


def test_bad_mutual_options_are_named() -> None:
    with pytest.raises(ValidationError, match="never warm up"):
        LineConfig(**tiny_line(mutual={"buffer": 8, "min_parts": 9}))
    with pytest.raises(ValidationError, match=r"mutual\.buffr"):
        LineConfig(**tiny_line(mutual={"buffr": 8}))
    with pytest.raises(ValidationError, match="neighbourhood"):
        LineConfig(**tiny_line(fewshot={"neighbourhood": 2}))
