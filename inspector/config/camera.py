"""Station-config sections of the frame source: camera and trigger mode.

Every key has a default, so a station file without ``camera`` / ``trigger`` sections runs the
synthetic demo camera in free-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from inspector.config.base import StrictModel


class SyntheticCameraSpec(StrictModel):
    """The demo camera: rendered ring parts (inspector.demo.parts), no hardware needed."""

    # Frame size [height, width] in pixels.
    size: tuple[int, int] = (256, 256)
    seed: int = Field(default=0, ge=0)
    # Fraction of parts rendered with a planted defect.
    defect_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    # Sub-stream of the seed; 2 keeps live parts apart from the demo data set (streams 0 and 1).
    stream: int = Field(default=2, ge=0)


class CameraSpec(StrictModel):
    """Where frames come from."""

    kind: Literal["synthetic", "folder", "video", "opencv"] = "synthetic"
    # opencv: device index (USB / V4L2 / DirectShow camera number) ...
    device: int | None = Field(default=None, ge=0)
    # ... or a URL / GStreamer pipeline (rtsp://..., "aravissrc ! ... ! appsink").
    url: str | None = Field(default=None, min_length=1)
    # opencv capture backend; "any" lets OpenCV choose.
    backend: Literal["any", "v4l2", "gstreamer", "ffmpeg", "dshow", "msmf"] = "any"
    # folder (images, sorted by name) or video file; relative to the config file.
    path: Path | None = None
    # folder / video: start again from the first frame at the end (False: the run ends there).
    loop: bool = True
    # Frame rate requested from the camera (opencv); None keeps the camera's own setting.
    fps: float | None = Field(default=None, gt=0, le=1000)
    # A grab that delivers no frame within this time is a camera fault.
    grab_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Reconnect after a lost camera: first retry after min, doubling up to max.
    reconnect_min_s: float = Field(default=0.5, gt=0, le=600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    # Expected frame size [width, height]; any other size is a recorded fault. None = accept any.
    frame_size: tuple[int, int] | None = None
    synthetic: SyntheticCameraSpec = SyntheticCameraSpec()

    @model_validator(mode="after")
    def _source_named(self) -> CameraSpec:
        if self.kind == "opencv" and (self.device is None) == (self.url is None):
            msg = "camera.kind 'opencv' needs exactly one of camera.device (index) or camera.url"
            raise ValueError(msg)
        if self.kind in ("folder", "video") and self.path is None:
            msg = f"camera.kind {self.kind!r} needs camera.path (the {self.kind} to read)"
            raise ValueError(msg)
        if self.reconnect_max_s < self.reconnect_min_s:
            msg = "camera.reconnect_max_s must be >= camera.reconnect_min_s"
            raise ValueError(msg)
        if self.frame_size is not None and min(self.frame_size) < 16:
            msg = "camera.frame_size is [width, height], each at least 16 px"
            raise ValueError(msg)
        return self


class TriggerSpec(StrictModel):
    """What starts an inspection: a timer (free_run), the PLC, or software (GUI button, API, tests)."""

    mode: Literal["free_run", "plc", "software"] = "free_run"
    # free_run: frames per second taken from the camera (frames the engine cannot keep up with are
    # dropped and counted); software: rate of `inspector run --trigger software`.
    rate_hz: float = Field(default=5.0, gt=0, le=1000)
    # Triggers waiting for the camera; a trigger beyond this is refused (PLC error E04).
    queue_size: int = Field(default=8, ge=1, le=1024)
