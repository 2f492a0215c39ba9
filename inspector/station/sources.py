"""Frame sources (cameras, video files, image folders, the synthetic demo camera) and the Camera
wrapper that validates every frame and reconnects a lost camera with backoff (the shared frame types and
errors live in :mod:`inspector.station.source_base`; GenICam cameras in :mod:`inspector.station.genicam`).

A :class:`FrameSource` only produces raw frames; :class:`Camera` turns what can go wrong into two
exceptions the loop handles: :class:`CameraError` (no frame: lost, timed out, cannot open; the
camera reconnects by itself) and :class:`BadFrame` (a frame arrived but is unusable: empty,
wrong size, wrong dtype, undecodable file; recorded as a fault for that part). Neither is ever an OK.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config.camera import CameraSpec, SyntheticCameraSpec
from inspector.errors import ImageDecodeError, InspectorError
from inspector.frames.imaging import list_images, load_image, validate_frame
from inspector.station.source_base import (
    BadFrame,
    CameraConfigError,
    CameraError,
    Frame,
    FrameSource,
    MissingFrame,
    RawFrame,
    SourceExhausted,
)

__all__ = ["BadFrame", "Camera", "CameraConfigError", "CameraError", "FolderSource", "Frame", "FrameSource",
           "MissingFrame", "OpenCVSource", "RawFrame", "SourceExhausted", "SyntheticSource", "VideoSource",
           "create_source"]

_logger = logging.getLogger(__name__)

_BACKENDS = {"any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER, "ffmpeg": cv2.CAP_FFMPEG,
             "dshow": cv2.CAP_DSHOW, "msmf": cv2.CAP_MSMF}


class SyntheticSource(FrameSource):
    """Rendered ring parts (inspector.demo.parts): the demo camera."""

    def __init__(self, spec: SyntheticCameraSpec | None = None) -> None:
        from inspector.demo.parts import PartGenerator

        spec = spec or SyntheticCameraSpec()
        self._gen = PartGenerator(spec.size, spec.seed, spec.defect_rate, stream=spec.stream)
        self.label = f"synthetic(seed={spec.seed})"

    def resume_after(self, last_seq: int) -> None:
        # Part ids are the generator's numbers: a restart must not hand out P000001 again (duplicate ids in the log).
        self._gen.count = max(self._gen.count, int(last_seq))

    def read(self, timeout_s: float) -> RawFrame:
        part = self._gen.next()
        return RawFrame(part.image, part.part_id, part.defect or "good", part.part_id)


class FolderSource(FrameSource):
    """Image files of a folder in name order; new files are picked up at each pass."""

    def __init__(self, folder: Path, loop: bool = True) -> None:
        self.folder = Path(folder)
        self.loop = loop
        self.label = f"folder {self.folder}"
        self._files: list[Path] = []
        self._pos = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            msg = f"camera folder {self.folder} does not exist (camera.path)"
            raise CameraError(msg)
        self._files = list_images(self.folder)
        self._pos = 0
        if not self._files:
            msg = f"camera folder {self.folder} has no images (.png, .jpg, .bmp, .tif); copy frames into it"
            raise CameraError(msg)

    def read(self, timeout_s: float) -> RawFrame:
        if self._pos >= len(self._files):
            if not self.loop:
                msg = f"{self.label}: all {len(self._files)} images read (camera.loop is false)"
                raise SourceExhausted(msg)
            self.open()
        path = self._files[self._pos]
        self._pos += 1
        try:
            image = load_image(path)
        except ImageDecodeError as exc:  # the message names the file
            raise BadFrame(str(exc), path.name, path.stem) from None
        return RawFrame(image, path.name, part_id=path.stem)


class VideoSource(FrameSource):
    """A video file read frame by frame (at decode speed; the trigger sets the pace)."""

    def __init__(self, path: Path, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        self.label = f"video {self.path.name}"
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0

    def open(self) -> None:
        if not self.path.is_file():
            msg = f"camera video {self.path} does not exist (camera.path)"
            raise CameraError(msg)
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            msg = f"{self.label}: OpenCV cannot open the file (unsupported codec or corrupt file)"
            raise CameraError(msg)
        self._cap, self._pos = cap, 0

    def read(self, timeout_s: float) -> RawFrame:
        if self._cap is None:
            msg = f"{self.label}: not open"
            raise CameraError(msg)
        ok, frame = self._cap.read()
        if not ok and self.loop and self._pos > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pos = 0
            ok, frame = self._cap.read()
        if not ok:
            if self._pos > 0 and not self.loop:
                msg = f"{self.label}: end of video after {self._pos} frames (camera.loop is false)"
                raise SourceExhausted(msg)
            msg = f"{self.label}: no frame could be decoded"
            raise CameraError(msg)
        self._pos += 1
        return RawFrame(_rgb(frame), f"{self.path.name}#{self._pos}")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class OpenCVSource(FrameSource):
    """A live camera through OpenCV (USB/V4L2 index, RTSP URL, GStreamer pipeline for GigE).

    A reader thread keeps only the newest frame; :meth:`read` returns the first frame that
    arrives after it was called, so a trigger never gets a stale buffered frame.
    """

    def __init__(self, spec: CameraSpec, capture_factory: Callable[..., Any] = cv2.VideoCapture) -> None:
        self.spec = spec
        self._factory = capture_factory  # tests put a scripted capture here
        self.target: int | str = spec.device if spec.device is not None else str(spec.url)
        self.label = f"camera {self.target}" if spec.device is not None else f"camera {_redact(str(spec.url))}"
        self._session: _Session | None = None

    def open(self) -> None:
        spec = self.spec
        pipeline = isinstance(self.target, str) and "appsink" in self.target
        if (spec.backend == "gstreamer" or pipeline) and self._factory is cv2.VideoCapture and not _has_gstreamer():
            msg = (f"{self.label}: this OpenCV build has no GStreamer support (opencv-python-headless wheels "
                   "do not), so GStreamer pipelines (GigE cameras) cannot open; install an OpenCV built with "
                   "GStreamer on the station PC, or use a V4L2 / RTSP camera")
            raise CameraError(msg)
        ms = int(spec.grab_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(ms, 5000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = self._factory(self.target, _BACKENDS[spec.backend], params)
        if not cap.isOpened():
            cap.release()
            hint = ("check the cable and that no other program uses it" if spec.device is not None
                    else "check the URL / pipeline and the network")
            msg = f"{self.label}: cannot open ({hint})"
            raise CameraError(msg)
        if spec.fps:
            cap.set(cv2.CAP_PROP_FPS, spec.fps)
        if spec.frame_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.frame_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.frame_size[1])
        self._session = _Session(cap)

    @property
    def frames_received(self) -> int:
        """Frames the reader thread got from the driver in this session."""
        return self._session.count if self._session is not None else 0

    def read(self, timeout_s: float) -> RawFrame:
        session = self._session
        if session is None:
            msg = f"{self.label}: not open"
            raise CameraError(msg)
        deadline = time.monotonic() + timeout_s
        with session.cond:
            seen = session.count
            while session.count == seen and session.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f"{self.label}: no frame within {timeout_s:g} s (camera.grab_timeout_s)"
                    raise CameraError(msg)
                session.cond.wait(left)
            if session.count == seen:
                msg = f"{self.label}: {session.error}"
                raise CameraError(msg)
            frame, count = session.latest, session.count
        return RawFrame(_rgb(frame), str(count))  # type: ignore[arg-type]

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close(self.label)


class _Session:
    """One opened capture and its reader thread; a reconnect gets a new session, so a reader still
    blocked in the old driver call can never hand its late frame to the new one."""

    def __init__(self, cap: Any) -> None:
        self.cap = cap
        self.cond = threading.Condition()
        self.latest: np.ndarray | None = None
        self.count = 0
        self.error: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._reader, name="camera-reader", daemon=True)
        self.thread.start()

    def _reader(self) -> None:
        while not self.stop.is_set():
            try:
                ok, frame = self.cap.read()
            except cv2.error as exc:
                ok, frame = False, f"OpenCV error: {exc}"
            with self.cond:
                if ok:
                    self.latest, self.count = frame, self.count + 1
                else:
                    self.error = frame if isinstance(frame, str) else "the camera stopped delivering frames"
                self.cond.notify_all()
            if not ok:
                return

    def close(self, label: str) -> None:
        self.stop.set()
        self.thread.join(timeout=1.0)
        if self.thread.is_alive():
            # Releasing under a blocked read can crash some backends: release once the driver returns.
            _logger.warning("%s: reader blocked in the driver; releasing the device when it returns", label)
            threading.Thread(target=_release_after, args=(self.thread, self.cap), name="camera-release",
                             daemon=True).start()
            return
        self.cap.release()


def _has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def _release_after(thread: threading.Thread, cap: Any) -> None:
    thread.join()
    if cap is not None:
        cap.release()


def _rgb(frame: np.ndarray) -> np.ndarray:
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return frame


def _redact(url: str) -> str:
    """rtsp://user:secret@host -> rtsp://user:***@host (camera passwords stay out of logs)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.split("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url


def create_source(spec: CameraSpec, resolve: Callable[[Path], Path] = Path) -> FrameSource:
    """The frame source a camera spec describes; ``resolve`` makes config paths absolute."""
    if spec.kind == "genicam":
        from inspector.station.genicam import GenICamSource

        return GenICamSource(spec, resolve)
    if spec.kind == "synthetic":
        return SyntheticSource(spec.synthetic)
    if spec.kind == "folder":
        return FolderSource(resolve(spec.path), spec.loop)  # type: ignore[arg-type]
    if spec.kind == "video":
        return VideoSource(resolve(spec.path), spec.loop)  # type: ignore[arg-type]
    return OpenCVSource(spec)


class Camera:
    """A frame source with validation, grab timing and reconnection with exponential backoff.

    Used from one thread (the loop's capture thread). ``listener(kind, detail)`` hears
    ``camera_lost`` / ``camera_restored``.
    """

    def __init__(self, source: FrameSource, spec: CameraSpec | None = None,
                 listener: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.spec = spec or CameraSpec()
        self.listener = listener
        self.label = source.label
        self.connected = False
        self.last_error = ""
        self.frames = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.losses = 0
        self._clock = clock
        self._backoff = self.spec.reconnect_min_s
        self._next_try = 0.0
        self._ever_connected = False
        source.notify = self._notify

    def retry_in(self) -> float:
        """Seconds until the next reconnect attempt (0 when connected or due)."""
        return 0.0 if self.connected else max(0.0, self._next_try - self._clock())

    def connect(self) -> bool:
        """Try to (re)open the source if an attempt is due; True when connected."""
        if self.connected:
            return True
        if self._clock() < self._next_try:
            return False
        try:
            self.source.open()
        except CameraConfigError as exc:
            self._schedule_retry(str(exc))
            if not self._ever_connected:  # a setting the camera refuses: the station must not start on it
                raise
            return False
        except Exception as exc:  # any driver error is a failed attempt, never a crash
            self._schedule_retry(str(exc) if isinstance(exc, InspectorError) else f"{self.label}: {exc}")
            return False
        self.connected = True
        self._backoff = self.spec.reconnect_min_s
        if self._ever_connected:
            self.reconnects += 1
            _logger.warning("%s: reconnected", self.label)
            self._notify("camera_restored", f"{self.label} reconnected after: {self.last_error}")
        self._ever_connected = True
        return True

    def arm(self, trigger_t: float) -> bool:
        """A trigger was accepted (any thread): let a software-triggered camera expose now; True if it fired."""
        if not self.connected:
            return False
        try:
            return self.source.arm(trigger_t)
        except Exception:  # the capture thread sees the camera's state when it grabs for this part
            _logger.warning("%s: software trigger failed", self.label, exc_info=True)
            return False

    def grab(self, trigger_t: float | None = None, armed: bool = False) -> Frame:
        """The next validated frame (``trigger_t``: the one of that trigger); raises CameraError, BadFrame or
        SourceExhausted."""
        if not self.connected:
            msg = f"{self.label} is not connected ({self.last_error}); next attempt in {self.retry_in():.1f} s"
            raise CameraError(msg)
        t0 = time.perf_counter()
        try:
            if trigger_t is None:
                raw = self.source.read(self.spec.grab_timeout_s)
            else:
                raw = self.source.read_for(self.spec.grab_timeout_s, trigger_t, armed)
        except SourceExhausted:
            raise
        except ImageDecodeError as exc:
            self.bad_frames += 1
            raise exc if isinstance(exc, BadFrame) else BadFrame(str(exc)) from None
        except CameraError as exc:
            self._lost(str(exc))
            raise
        except Exception as exc:  # a driver bug must not kill the capture thread
            _logger.exception("%s: unexpected error while grabbing", self.label)
            self._lost(f"{self.label}: {type(exc).__name__}: {exc}")
            raise CameraError(self.last_error) from exc
        grab_ms = (time.perf_counter() - t0) * 1000.0
        try:
            image = validate_frame(raw.image, source=f"{self.label} frame {raw.ref}")
        except ImageDecodeError as exc:
            self.bad_frames += 1
            raise BadFrame(str(exc), raw.ref, raw.part_id) from None
        if self.spec.frame_size is not None and (image.shape[1], image.shape[0]) != tuple(self.spec.frame_size):
            self.bad_frames += 1
            w, h = self.spec.frame_size
            msg = (f"{self.label} frame {raw.ref}: {image.shape[1]}x{image.shape[0]} px, expected {w}x{h} "
                   "(camera.frame_size); check the camera's resolution setting")
            raise BadFrame(msg, raw.ref, raw.part_id)
        self.frames += 1
        return Frame(image, self.frames, raw.ref, time.time_ns(), grab_ms, raw.truth, raw.part_id,
                     raw.camera_frame_id, raw.camera_time_ns)

    def close(self) -> None:
        try:
            self.source.close()
        except Exception:
            _logger.warning("%s: error while closing", self.label, exc_info=True)
        self.connected = False

    def _lost(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        self.losses += was
        try:
            self.source.close()
        except Exception:
            _logger.debug("close after loss failed", exc_info=True)
        self._schedule_retry(reason)
        if was:
            _logger.warning("%s lost: %s", self.label, reason)
            self._notify("camera_lost", reason)

    def _schedule_retry(self, reason: str) -> None:
        self.last_error = reason
        self._next_try = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2.0, self.spec.reconnect_max_s)

    def _notify(self, kind: str, detail: str) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, detail)
            except Exception:
                _logger.exception("camera listener failed")
