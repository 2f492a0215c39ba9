"""Heads: pure nn.Modules, fitted state in buffers, ``setup()`` then ``forward(features)``."""

from inspector.heads.base import HeadOutput
from inspector.heads.fusion import Fusion
from inspector.heads.probe import LinearProbeHead
from inspector.heads.references import ReferenceHead
from inspector.heads.zero_shot import ZeroShotHead

__all__ = ["Fusion", "HeadOutput", "LinearProbeHead", "ReferenceHead", "ZeroShotHead"]
