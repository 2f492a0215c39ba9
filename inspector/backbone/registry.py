"""Registers the station's own open_clip architecture configs (a tiny ViT for fast tests)."""

from __future__ import annotations

from pathlib import Path

_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "inspector-tiny-vit"
_registered = False


def register_model_configs() -> None:
    """Add model_configs/*.json to open_clip's architecture registry (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(_CONFIG_DIR)
    _registered = True
