"""open_clip in, features out: weight loading (offline-first) and the one-pass dense extractor."""

from inspector.backbone.registry import register_model_configs

register_model_configs()
