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


GENICAM_SIMULATOR = "genicam-simulator"  # a cti entry naming the GenTL simulator inside the genicam package


class GenICamTriggerSpec(StrictModel):
    """How the camera starts an exposure, and how a part is matched to its frame (docs/cameras.md)."""

    # free_run: the camera streams; a part gets the first frame exposed after its trigger.
    # software: the station fires TriggerSoftware the moment a trigger is accepted (one frame per part).
    # hardware: the PLC wires the camera's input line (one frame per pulse); the PLC's message names the part.
    mode: Literal["free_run", "software", "hardware"] = "free_run"
    # hardware: the camera input the PLC drives (TriggerSource: Line0, Line1, ...).
    source: str = Field(default="Line1", min_length=1, max_length=64)
    # hardware: TriggerActivation (RisingEdge, FallingEdge, AnyEdge, LevelHigh, LevelLow).
    activation: str = Field(default="RisingEdge", min_length=1, max_length=64)
    # TriggerDelay in microseconds between the trigger and the exposure (conveyor offset); None = keep.
    delay_us: float | None = Field(default=None, ge=0)
    # Triggered modes: a frame may come this much before the station accepted the part's trigger (the PLC
    # message can trail its pulse); an earlier frame belongs to no waiting part: an extra frame, a recorded fault.
    early_ms: float = Field(default=50.0, ge=0, le=10_000)
    # And at most this much after it (triggered: trigger delay + exposure + transfer; free run: more than a
    # frame period); a later frame belongs to a later part, so this part's frame is missing: a recorded
    # fault, never a shifted verdict.
    late_ms: float = Field(default=500.0, gt=0, le=60_000)


class GenICamSpec(StrictModel):
    """A GigE Vision / USB3 Vision camera through a GenTL producer (harvesters); see docs/cameras.md."""

    # GenTL producer files (.cti); empty = every .cti in the folders of GENICAM_GENTL64_PATH.
    # "genicam-simulator" names the simulated camera shipped with the genicam package.
    cti: list[str] = Field(default_factory=list)
    # The device: at most one of serial number, user-defined name, or index in the discovery list.
    serial: str | None = Field(default=None, min_length=1)
    user_id: str | None = Field(default=None, min_length=1)
    index: int | None = Field(default=None, ge=0)
    # PixelFormat (Mono8, RGB8, BGR8, BayerRG8, Mono12, ...); None keeps the camera's setting.
    pixel_format: str | None = Field(default=None, min_length=1)
    # Region of interest on the sensor [x, y, width, height] (OffsetX, OffsetY, Width, Height); None = keep.
    roi: tuple[int, int, int, int] | None = None
    # ExposureTime in microseconds (ExposureAuto is switched off); None keeps the camera's setting.
    exposure_us: float | None = Field(default=None, gt=0)
    # Gain in dB (GainAuto is switched off); None keeps the camera's setting.
    gain_db: float | None = None
    trigger: GenICamTriggerSpec = GenICamTriggerSpec()
    # Further features set in this order after the ones above, e.g. {BalanceWhiteAuto: Continuous}.
    features: dict[str, bool | int | float | str] = Field(default_factory=dict)
    # Buffers the producer may fill before the station takes them (frames beyond are dropped and counted).
    buffers: int = Field(default=8, ge=2, le=256)

    @model_validator(mode="after")
    def _one_device_key(self) -> GenICamSpec:
        named = [k for k in ("serial", "user_id", "index") if getattr(self, k) is not None]
        if len(named) > 1:
            msg = f"camera.genicam names the device by {' and '.join(named)}: give one (serial, user_id or index)"
            raise ValueError(msg)
        if self.roi is not None and (min(self.roi[:2]) < 0 or min(self.roi[2:]) < 1):
            msg = "camera.genicam.roi is [x, y, width, height] on the sensor: x, y >= 0, width, height >= 1"
            raise ValueError(msg)
        return self


class CameraSpec(StrictModel):
    """Where frames come from."""

    kind: Literal["synthetic", "folder", "video", "opencv", "genicam"] = "synthetic"
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
    # Frame rate requested from the camera (opencv; genicam: AcquisitionFrameRate); None keeps the camera's own.
    fps: float | None = Field(default=None, gt=0, le=1000)
    # A grab that delivers no frame within this time is a camera fault.
    grab_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Reconnect after a lost camera: first retry after min, doubling up to max.
    reconnect_min_s: float = Field(default=0.5, gt=0, le=600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    # Expected frame size [width, height]; any other size is a recorded fault. None = accept any.
    frame_size: tuple[int, int] | None = None
    synthetic: SyntheticCameraSpec = SyntheticCameraSpec()
    genicam: GenICamSpec = GenICamSpec()

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
        late = self.genicam.trigger.late_ms
        if self.kind == "genicam" and self.fps and self.genicam.trigger.mode == "free_run" and late <= 1000 / self.fps:
            msg = (f"camera.genicam.trigger.late_ms ({late:g}) must exceed the frame period of a free-running camera "
                   f"({1000 / self.fps:g} ms at camera.fps {self.fps:g}), else parts miss their frame")
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
