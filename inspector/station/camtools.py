"""The line engineer's camera tools: which cameras this PC sees, and a test grab with the line's settings.

Used by ``inspector cameras`` and ``inspector cameras test`` (and open to the GUI): no station, no
engine, only the frame source the station config describes.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.config.camera import CameraSpec
from inspector.errors import InspectorError
from inspector.station.sources import BadFrame, Camera, CameraError, create_source

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraRow:
    """One camera in ``inspector cameras``."""

    kind: str  # genicam | opencv
    index: int  # genicam: position in the producers' discovery list; opencv: device index
    vendor: str
    model: str
    serial: str
    user_id: str
    producer: str  # genicam: the .cti file; opencv: the device node
    note: str = ""


def genicam_rows(cti: list[str], resolve: Callable[[Path], Path] = Path, simulator: bool = True,
                 factory: Callable[[], Any] | None = None) -> tuple[list[CameraRow], list[str]]:
    """Cameras of the producers ``cti`` (empty: GENICAM_GENTL64_PATH), plus the simulator; and problems."""
    from inspector.station import genicam

    problems: list[str] = []
    files: list[Path] = []
    try:
        files = genicam.producer_files(cti, resolve)
    except InspectorError as exc:
        if cti:
            problems.append(str(exc))
    if simulator:
        try:
            sim = genicam.simulator_cti()
            if sim not in files:
                files.append(sim)
        except InspectorError as exc:
            problems.append(str(exc))
    rows: list[CameraRow] = []
    for cti_file in files:
        try:
            devices = genicam.list_devices([cti_file], **({"factory": factory} if factory else {}))
        except Exception as exc:  # one broken producer must not hide the others
            problems.append(f"GenTL producer {cti_file}: {exc}")
            continue
        note = "simulator" if cti_file.name == "viky.cti" else ""
        for d in devices:
            rows.append(CameraRow("genicam", len(rows), d.vendor, d.model, d.serial, d.user_id, d.producer,
                                  ", ".join(x for x in (note, d.tl_type, d.access) if x)))
    return rows, problems


def opencv_rows(probe: int = 4) -> list[CameraRow]:
    """OpenCV cameras: the V4L2 devices on Linux (named, not opened); elsewhere indices 0..probe-1 that open."""
    rows = []
    if platform.system() == "Linux":
        for dev in sorted(Path("/sys/class/video4linux").glob("video*"), key=lambda p: int(p.name[5:] or 0)):
            name = _read(dev / "name")
            rows.append(CameraRow("opencv", int(dev.name[5:]), "", name, "", "", f"/dev/{dev.name}"))
        return rows
    import cv2

    for i in range(probe):
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened():
                rows.append(CameraRow("opencv", i, "", "", "", "", f"index {i}"))
        finally:
            cap.release()
    return rows


@dataclass
class GrabReport:
    """What ``inspector cameras test`` measured."""

    label: str
    frames: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0
    size: tuple[int, int] | None = None  # width, height
    frame_ids: list[int] = field(default_factory=list)
    id_gaps: int = 0  # frames missing between consecutive frame ids
    extra_frames: int = 0
    features: dict[str, Any] = field(default_factory=dict)  # the camera's settings after configuration
    grab_ms: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return (self.frames - 1) / self.seconds if self.frames > 1 and self.seconds > 0 else 0.0

    @property
    def continuous(self) -> bool:
        return self.id_gaps == 0 and not self.faults


def trial_grab(spec: CameraSpec, resolve: Callable[[Path], Path] = Path, frames: int = 20,
              source: Any = None) -> GrabReport:
    """Open the camera as the station would, grab ``frames`` frames (each with its own trigger) and measure."""
    from inspector.station.framematch import frame_gap

    src = source or create_source(spec, resolve)
    events: list[str] = []
    cam = Camera(src, spec, listener=lambda kind, detail: events.append(f"{kind}: {detail}"))
    report = GrabReport(cam.label)
    if not cam.connect():
        raise CameraError(cam.last_error)
    try:
        report.features = _features(src)
        t_first = None
        for _ in range(frames):
            trigger_t = time.perf_counter()
            armed = cam.arm(trigger_t)
            try:
                frame = cam.grab(trigger_t, armed)
            except (CameraError, BadFrame) as exc:
                report.faults.append(str(exc))
                if not cam.connected and not _reconnect(cam, spec.grab_timeout_s):
                    break
                continue
            t_first = t_first or time.perf_counter()
            report.seconds = time.perf_counter() - t_first
            report.frames += 1
            report.grab_ms.append(frame.grab_ms)
            report.size = (frame.image.shape[1], frame.image.shape[0])
            if frame.camera_frame_id is not None:
                if report.frame_ids:
                    report.id_gaps += frame_gap(report.frame_ids[-1], frame.camera_frame_id)
                report.frame_ids.append(frame.camera_frame_id)
        report.extra_frames = int(getattr(src, "extra_frames", 0))
    finally:
        cam.close()
    report.faults += [e for e in events if e.startswith("camera_extra_frame")]
    return report


def _features(src: Any) -> dict[str, Any]:
    session = getattr(src, "_session", None)
    if session is None:
        return {}
    from inspector.station import nodemap

    return nodemap.summary(session.nm)


def _reconnect(cam: Camera, timeout_s: float) -> bool:
    deadline = time.monotonic() + max(timeout_s, 1.0)
    while time.monotonic() < deadline:
        if cam.connect():
            return True
        time.sleep(min(cam.retry_in() or 0.05, 0.5))
    return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
