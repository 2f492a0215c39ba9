"""Station-config section of the HDF5 audit log (written by :mod:`inspector.audit`).

Every key has a default, so a station file without a ``log`` section logs to ``logs/`` next to the
config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from inspector.config.base import StrictModel


class LogSpec(StrictModel):
    """HDF5 audit log (inspector.audit): one record per inspected or failed part."""

    enabled: bool = True
    # Folder of the log files, relative to the config file (`inspector run --log-dir` overrides).
    folder: Path = Path("logs")
    # daily: a new file at local midnight; size: only when max_mb is reached (both modes honour max_mb).
    rotate: Literal["daily", "size"] = "daily"
    max_mb: float = Field(default=1024.0, gt=0.1, le=1_000_000)
    # Full frames stored losslessly (PNG): none, NG parts only, or every part.
    save_full_frames: Literal["none", "ng", "all"] = "ng"
    # Longer side of the JPEG thumbnail stored with every record (0 = none).
    thumbnail_px: int = Field(default=160, ge=0, le=1024)
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    # Side of the low-resolution anomaly heatmap stored with every record (0 = none).
    heatmap_px: int = Field(default=32, ge=0, le=256)
    # Records waiting for the log writer; when full, records are dropped, counted and noted in the log.
    queue_size: int = Field(default=64, ge=1, le=100_000)
    # fsync the file at most this often (seconds) so a power cut loses at most this much;
    # 0 = after every write, None = leave it to the OS.
    fsync_interval_s: float | None = Field(default=1.0, ge=0, le=3600)
    # Below this much free disk space the log stops writing (fault) instead of filling the disk.
    min_free_mb: float = Field(default=200.0, ge=0)
    # Delete closed log files older than this many days (None = keep everything).
    keep_days: float | None = Field(default=None, gt=0)
    # True: a log that cannot write puts the station in FAULT (no trigger is accepted without a
    # record); False: the station keeps inspecting and counts the lost records.
    required: bool = True
