"""CLIP inspection station core: frame -> features -> heads -> decision. Never imports Qt."""

__version__ = "0.1.0"
