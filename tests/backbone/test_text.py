from __future__ import annotations

import open_clip
import pytest
import torch

from inspector.backbone.registry import TINY_MODEL
from inspector.backbone.text import encode_text

PROMPTS = ["a photo of a flawless metal ring.", "a ring with a scratch on the rim", "x",
           "a close-up photo of a machined metal ring with a brown stain on the metal surface."]


@pytest.mark.parametrize("name", [TINY_MODEL, pytest.param("ViT-B-16", marks=pytest.mark.slow)])
def test_truncated_context_gives_open_clips_embeddings(name: str) -> None:
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    tokens = open_clip.get_tokenizer(name)(PROMPTS)
    with torch.inference_mode():
        ours = encode_text(model, tokens)
        theirs = model.encode_text(tokens)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
