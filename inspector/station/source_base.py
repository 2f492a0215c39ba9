"""What every frame source shares: the raw and validated frame, the source interface, and the errors a
grab can end in (none of them is ever an OK). :mod:`inspector.station.sources` re-exports all of it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspector.errors import ImageDecodeError, InspectorError


class CameraError(InspectorError):
    """No frame could be had: the camera is lost, cannot be opened or timed out."""


class CameraConfigError(CameraError):
    """The camera cannot take a configured setting (missing feature, value out of range, not writable).

    Retrying does not help: the config or the camera has to change, so a station refuses to start on it.
    """


class BadFrame(ImageDecodeError):
    """A frame arrived but cannot be inspected; ``ref`` / ``part_id`` name it for the fault record."""

    def __init__(self, message: str, ref: str = "", part_id: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref
        self.part_id = part_id


class MissingFrame(BadFrame):
    """A triggered camera delivered no frame for this part (missed trigger, dropped transfer) while it is
    still connected: a fault for this part only; the next part is never judged on a shifted frame."""


class SourceExhausted(InspectorError):
    """A folder or video without ``camera.loop`` has no more frames."""


@dataclass(frozen=True)
class RawFrame:
    """What a source delivers, before validation."""

    image: object
    ref: str  # frame number, file name, synthetic part id
    truth: str | None = None  # known ground truth (synthetic: defect kind or "good")
    part_id: str | None = None  # a part id the source knows (synthetic)
    camera_frame_id: int | None = None  # the camera's own frame / block id (GenICam)
    camera_time_ns: int | None = None  # the camera's own timestamp, ns on its clock (GenICam)


@dataclass(frozen=True)
class Frame:
    """A validated frame: RGB uint8 HxWx3, never modified after capture."""

    image: np.ndarray
    index: int  # frames delivered by this camera so far
    ref: str
    time_ns: int  # UTC wall clock when it was grabbed
    grab_ms: float
    truth: str | None = None
    part_id: str | None = None
    camera_frame_id: int | None = None
    camera_time_ns: int | None = None


class FrameSource(abc.ABC):
    """A producer of raw frames. ``read`` raises CameraError, ImageDecodeError or SourceExhausted."""

    label: str = "source"
    # Incidents that are no part's fault (extra frames, lost frame ids): ``notify(kind, detail)``, set by Camera.
    notify: Callable[[str, str], None] | None = None

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect (may raise CameraError)."""

    @abc.abstractmethod
    def read(self, timeout_s: float) -> RawFrame: ...

    def read_for(self, timeout_s: float, trigger_t: float, armed: bool) -> RawFrame:
        """The frame of the trigger accepted at ``trigger_t`` (perf_counter s); ``armed``: :meth:`arm` fired it.

        Sources without their own trigger take the next frame (:meth:`read`)."""
        return self.read(timeout_s)

    def arm(self, trigger_t: float) -> bool:
        """A part's trigger was accepted (any thread): a software-triggered camera exposes now. True if fired."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device; must not raise."""

    def resume_after(self, last_seq: int) -> None:  # noqa: B027 - optional hook
        """The log holds parts up to ``last_seq``: a source that numbers its own parts continues after them."""
