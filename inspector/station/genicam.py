"""GigE Vision / USB3 Vision cameras through GenTL producers (harvesters): ``camera.kind: genicam``.

A reader thread takes every buffer the producer fills, converts it to RGB (inspector.frames.pixels),
stamps it with the camera's frame id and timestamp, and hands it to a
:class:`~inspector.station.framematch.FrameMatcher`, which pairs frames with triggers by order and
time (a missing or extra frame is a recorded fault, never a shifted verdict). Lost frame ids and
extra frames are reported through ``notify`` (audit events); a part without its frame gets
:class:`MissingFrame`; a camera that stops answering gets :class:`CameraError`, and the Camera
wrapper reconnects it as it does an OpenCV camera.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.config.camera import GENICAM_SIMULATOR, CameraSpec, GenICamSpec
from inspector.errors import ImageDecodeError
from inspector.frames.pixels import to_rgb
from inspector.station import nodemap
from inspector.station.framematch import ClockMap, FrameMatcher, GrabbedFrame, Pick, frame_gap
from inspector.station.source_base import (
    BadFrame,
    CameraConfigError,
    CameraError,
    FrameSource,
    MissingFrame,
    RawFrame,
)

_logger = logging.getLogger(__name__)

_FETCH_S = 0.05  # reader poll: how soon a stop or a lost device is noticed
_REPORT_EVERY_S = 1.0  # lost-frame reports at most this often
_SYNC_EVERY_S = 5.0  # camera clock re-latched this often (drift of a camera oscillator: ~50 ppm)
ENV_PATH = "GENICAM_GENTL64_PATH"
_LIVE_KEYS = {"ExposureTime": "exposure_us", "Gain": "gain_db"}  # the config key a live setting is saved to


def _harvester() -> Any:
    try:
        from harvesters.core import Harvester
    except ImportError:
        msg = "camera.kind genicam needs the harvesters package: pip install harvesters genicam"
        raise CameraConfigError(msg) from None
    return Harvester()


def simulator_cti() -> Path:
    """The simulated GenTL camera shipped inside the genicam package (viky.cti)."""
    try:
        import genicam
    except ImportError:
        msg = "the GenTL simulator ships with the genicam package: pip install genicam"
        raise CameraConfigError(msg) from None
    return Path(genicam.__file__).resolve().parent / "viky.cti"


def producer_files(entries: list[str], resolve: Callable[[Path], Path] = Path) -> list[Path]:
    """The .cti files of ``camera.genicam.cti`` (empty: every .cti in the folders of GENICAM_GENTL64_PATH)."""
    if not entries:
        folders = [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
        files = sorted({f.resolve() for d in folders if d.is_dir() for f in d.glob("*.cti")})
        if not files:
            msg = (f"no GenTL producer: camera.genicam.cti is empty and {ENV_PATH} names no folder with a .cti file "
                   f"({os.environ.get(ENV_PATH, 'not set')}); install the camera vendor's SDK or list its .cti file")
            raise CameraConfigError(msg)
        return files
    out = []
    for entry in entries:
        path = simulator_cti() if entry == GENICAM_SIMULATOR else resolve(Path(entry))
        if not path.is_file():
            msg = f"GenTL producer {path} does not exist (camera.genicam.cti); install the vendor SDK or fix the path"
            raise CameraConfigError(msg)
        out.append(path)
    return out


@dataclass(frozen=True)
class DeviceRow:
    """One camera a producer sees (``inspector cameras``)."""

    vendor: str
    model: str
    serial: str
    user_id: str
    tl_type: str  # GEV, U3V, Custom (simulator), ...
    producer: str  # the .cti file
    index: int  # position in the discovery list of all producers together
    access: str  # "" when it can be opened, else why not


def list_devices(files: list[Path], factory: Callable[[], Any] = _harvester) -> list[DeviceRow]:
    """Every camera the producers see, in discovery order (one harvester per file, to name the producer)."""
    rows: list[DeviceRow] = []
    for cti in files:
        h = factory()
        try:
            h.add_file(str(cti), check_existence=True)
            h.update()
            for info in h.device_info_list:
                props = info.property_dict
                rows.append(DeviceRow(str(props.get("vendor") or ""), str(props.get("model") or ""),
                                      str(props.get("serial_number") or ""),
                                      str(props.get("user_defined_name") or ""), str(props.get("tl_type") or ""),
                                      str(cti), len(rows), "" if props.get("access_status", 1) == 1 else "in use"))
        finally:
            h.reset()
    return rows


def _describe(g: GenICamSpec) -> str:
    if g.serial is not None:
        return f"serial {g.serial}"
    if g.user_id is not None:
        return f"user id {g.user_id}"
    return f"index {g.index}" if g.index is not None else "the only camera"


def select_device(infos: list[Any], g: GenICamSpec) -> int:
    """The position of the configured device among discovered ``infos`` (CameraError when absent)."""
    seen = ", ".join(f"{i.property_dict.get('model')} serial {i.property_dict.get('serial_number')}" for i in infos)
    if not infos:
        msg = "no camera found by the GenTL producer(s): check power, cable and network (`inspector cameras`)"
        raise CameraError(msg)
    for pos, info in enumerate(infos):
        props = info.property_dict
        if (g.serial is not None and str(props.get("serial_number")) == g.serial) or (
                g.user_id is not None and str(props.get("user_defined_name")) == g.user_id):
            return pos
    if g.index is not None:
        if g.index < len(infos):
            return g.index
        msg = f"camera.genicam.index {g.index}: only {len(infos)} camera(s) found ({seen})"
        raise CameraError(msg)
    if g.serial is None and g.user_id is None:
        if len(infos) == 1:
            return 0
        msg = f"{len(infos)} cameras found ({seen}): name one with camera.genicam.serial (or user_id / index)"
        raise CameraConfigError(msg)
    msg = f"no camera with {_describe(g)} found (seen: {seen}); check power, cable and the config"
    raise CameraError(msg)


@dataclass(frozen=True)
class _Raw:
    """A buffer's pixels as delivered, with what converting them needs."""

    data: np.ndarray
    width: int
    height: int
    pixel_format: str
    label: str

    def rgb(self) -> np.ndarray:
        return to_rgb(self.data, self.width, self.height, self.pixel_format, self.label)


class GenICamSource(FrameSource):
    """One GenICam camera; see the module doc. ``factory`` makes the Harvester (tests pass a double)."""

    def __init__(self, spec: CameraSpec, resolve: Callable[[Path], Path] = Path,
                 factory: Callable[[], Any] = _harvester) -> None:
        self.spec = spec
        self.g = spec.genicam
        self._resolve = resolve
        self._factory = factory
        self.label = f"genicam camera {_describe(self.g)}"
        self.model = ""
        self.held: dict[str, Any] = {}  # features as configured at the last open
        self.live: dict[str, Any] = {}  # settings changed on the running camera (GUI), kept across reconnects
        self.frames_lost = 0  # gaps in the camera's frame ids
        self.extra_frames = 0  # frames that belonged to no trigger (triggered modes)
        self._session: _Session | None = None

    @property
    def triggered(self) -> bool:
        return self.g.trigger.mode != "free_run"

    def open(self) -> None:
        files = producer_files(self.g.cti, self._resolve)
        h = self._factory()
        try:
            for cti in files:
                h.add_file(str(cti), check_existence=True)
            h.update()
            infos = list(h.device_info_list)
            pos = select_device(infos, self.g)
            info = infos[pos].property_dict
            try:
                ia = h.create(pos)
            except Exception as exc:
                msg = f"{self.label}: cannot open ({exc}); is another program using it?"
                raise CameraError(msg) from None
        except BaseException:
            h.reset()
            raise
        try:
            nm = ia.remote_device.node_map
            self.model = nodemap.model_name(nm, str(info.get("model") or "camera"))
            self.held = nodemap.configure(nm, self.g, self.spec, fallback_model=self.model)
            for name, value in self.live.items():
                self.held[name] = nodemap.set_feature(nm, name, value, key=_LIVE_KEYS.get(name, name), model=self.model)
            ia.num_buffers = self.g.buffers
            self._session = _Session(self, h, ia)
        except BaseException:
            _release(h, ia)
            raise

    def live_range(self, name: str) -> nodemap.FeatureRange | None:
        """A numeric feature of the open camera with its range (None: not open, or the camera lacks it)."""
        session = self._session
        return nodemap.feature_range(session.nm, name) if session is not None else None

    def set_live(self, name: str, value: float) -> Any:
        """Set ExposureTime / Gain / ... on the running camera (its Auto mode off); kept across reconnects.

        Raises CameraConfigError (naming the feature, model and range) or CameraError when not open."""
        session = self._session
        if session is None:
            msg = f"{self.label}: not open; start the station to adjust the camera"
            raise CameraError(msg)
        key = _LIVE_KEYS.get(name, name)
        auto = f"{name}Auto"
        node = nodemap.find(session.nm, auto)
        if node is not None and nodemap.read(session.nm, auto) != "Off":
            nodemap.set_feature(session.nm, auto, "Off", key=key, model=self.model)
        held = nodemap.set_feature(session.nm, name, value, key=key, model=self.model)
        self.live[name] = value
        self.held[name] = held
        return held

    def arm(self, trigger_t: float) -> bool:
        session = self._session
        if self.g.trigger.mode != "software" or session is None:
            return False
        session.fire()
        return True

    def read(self, timeout_s: float) -> RawFrame:
        return self.read_for(timeout_s, time.perf_counter(), armed=False)

    def read_for(self, timeout_s: float, trigger_t: float, armed: bool) -> RawFrame:
        session = self._session
        if session is None:
            msg = f"{self.label}: not open"
            raise CameraError(msg)
        if self.g.trigger.mode == "software" and not armed:
            trigger_t = time.perf_counter()
            session.fire()
        frame, extras, outcome = session.wait_for(trigger_t, timeout_s)
        self._report_extras(extras)
        if outcome is Pick.MISSING or (outcome is Pick.WAIT and self.triggered and session.alive()):
            why = ("the next frame is later than trigger.late_ms" if outcome is Pick.MISSING
                   else f"no frame within {timeout_s:g} s (camera.grab_timeout_s)")
            msg = (f"{self.label}: no frame for this trigger ({why}): a missed trigger pulse or a dropped transfer; "
                   "check the trigger wiring, trigger.delay_us / late_ms and the link")
            raise MissingFrame(msg)
        if frame is None:
            msg = session.error or f"{self.label}: no frame within {timeout_s:g} s (camera.grab_timeout_s)"
            raise CameraError(msg if msg.startswith(self.label) else f"{self.label}: {msg}")
        ref = f"frame {frame.frame_id}" if frame.frame_id is not None else ""
        try:
            image = frame.data.rgb() if isinstance(frame.data, _Raw) else frame.data
        except ImageDecodeError as exc:
            raise BadFrame(str(exc), ref) from None
        if isinstance(image, ImageDecodeError):
            raise BadFrame(str(image), ref)
        return RawFrame(image, ref, camera_frame_id=frame.frame_id, camera_time_ns=frame.camera_ns)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _report_extras(self, extras: tuple[GrabbedFrame, ...]) -> None:
        if not extras:
            return
        self.extra_frames += len(extras)
        ids = ", ".join(str(f.frame_id) for f in extras)
        self._tell("camera_extra_frame", f"{self.label}: {len(extras)} frame(s) with no trigger waiting (ids {ids}); "
                                         "dropped (a trigger pulse without a PLC message, or noise on the line)")

    def _tell(self, kind: str, detail: str) -> None:
        _logger.warning("%s", detail)
        if self.notify is not None:
            self.notify(kind, detail)


class _Session:
    """One opened camera: its harvester, image acquirer, reader thread and frame matcher."""

    def __init__(self, owner: GenICamSource, harvester: Any, ia: Any) -> None:
        self.owner = owner
        self.h, self.ia = harvester, ia
        self.nm = ia.remote_device.node_map
        trig = owner.g.trigger
        self.matcher = FrameMatcher(owner.triggered, trig.early_ms / 1000.0, trig.late_ms / 1000.0,
                                    capacity=owner.g.buffers)
        self.clock = ClockMap()
        self.tick_hz = float(nodemap.read(self.nm, "GevTimestampTickFrequency", 0) or 1e9)
        self.cond = threading.Condition()
        self.error: str | None = None
        self.last_id: int | None = None
        self.unreported = 0  # lost frame ids not yet reported
        self.reported_at = float("-inf")
        self.stop = threading.Event()
        self.fire_lock = threading.Lock()
        self._sync()
        ia.start()
        self.thread = threading.Thread(target=self._reader, name="genicam-reader", daemon=True)
        self.thread.start()

    def fire(self) -> None:
        """Execute TriggerSoftware (the camera exposes now)."""
        with self.fire_lock:
            node = nodemap.find(self.nm, "TriggerSoftware")
            if node is None:
                msg = f"camera {self.owner.model} has no feature TriggerSoftware (camera.genicam.trigger.mode)"
                raise CameraConfigError(msg)
            node.execute()

    def wait_for(self, trigger_t: float, timeout_s: float) -> tuple[GrabbedFrame | None, tuple[GrabbedFrame, ...],
                                                                     Pick]:
        deadline = time.monotonic() + timeout_s
        extras: list[GrabbedFrame] = []
        with self.cond:
            while True:
                picked = self.matcher.pick(trigger_t)
                extras += picked.extras
                if picked.outcome is not Pick.WAIT or self.error is not None:
                    return picked.frame, tuple(extras), picked.outcome
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, tuple(extras), Pick.WAIT
                self.cond.wait(left)

    def alive(self) -> bool:
        """Whether the camera still answers a register read (a triggered camera is silent between parts)."""
        if self.error is not None:
            return False
        try:
            node = self.nm.get_node("Width")
            node.node.invalidate_node()
            _ = node.value
        except Exception:
            return False
        return True

    def _sync(self) -> None:
        before = time.perf_counter()
        ticks = nodemap.latch_timestamp(self.nm)
        after = time.perf_counter()
        if ticks is not None:
            self.clock.sync(before, int(ticks * 1e9 / self.tick_hz), after)

    def _reader(self) -> None:
        while not self.stop.is_set():
            try:
                buf = self.ia.try_fetch(timeout=_FETCH_S)
            except Exception as exc:  # the producer lost the device (cable, power, reset)
                with self.cond:
                    self.error = f"{self.owner.label}: the camera stopped delivering frames ({exc})"
                    self.cond.notify_all()
                return
            if buf is None:
                continue
            received = time.perf_counter()
            try:
                frame = self._grabbed(buf, received)
            finally:
                buf.queue()
            self._count_gap(frame, received)
            with self.cond:
                dropped = self.matcher.add(frame)
                self.cond.notify_all()
            if dropped is not None and self.owner.triggered:
                self.owner._report_extras((dropped,))
            if self.clock.due(received, _SYNC_EVERY_S):
                self._sync()

    def _count_gap(self, frame: GrabbedFrame, now: float) -> None:
        """Lost frame ids: counted always, reported at most once a second (a starved link must not flood the log)."""
        gap = frame_gap(self.last_id, frame.frame_id)
        self.last_id = frame.frame_id if frame.frame_id is not None else self.last_id
        self.owner.frames_lost += gap
        self.unreported += gap
        if self.unreported and now - self.reported_at >= _REPORT_EVERY_S:
            self.owner._tell("camera_frames_lost", f"{self.owner.label}: {self.unreported} frame(s) lost before "
                             f"frame id {frame.frame_id} (link bandwidth, too few buffers or trigger overlap)")
            self.unreported, self.reported_at = 0, now

    def _grabbed(self, buf: Any, received: float) -> GrabbedFrame:
        module = buf.module
        frame_id = _int_or_none(lambda: module.frame_id)
        camera_ns = _int_or_none(lambda: buf.timestamp_ns)
        if camera_ns is None:
            ticks = _int_or_none(lambda: buf.timestamp)
            camera_ns = int(ticks * 1e9 / self.tick_hz) if ticks else None
        label = f"{self.owner.label} frame {frame_id}"
        data: object
        try:
            comp = buf.payload.components[0]
            # A copy (the buffer goes back to the producer); converted only if a part claims the frame.
            data = _Raw(np.array(comp.data, copy=True), int(comp.width), int(comp.height), str(comp.data_format),
                        label)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            data = ImageDecodeError(f"{label}: buffer without an image ({type(exc).__name__}: {exc})")
        mapped = self.clock.to_host(camera_ns)
        return GrabbedFrame(data, frame_id, camera_ns, received, mapped if mapped is not None else received)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)
        _release(self.h, self.ia)


def _int_or_none(get: Callable[[], Any]) -> int | None:
    try:
        value = get()
    except Exception:
        return None
    return int(value) if value is not None else None


def _release(h: Any, ia: Any) -> None:
    for step in (ia.stop, ia.destroy, h.reset):
        try:
            step()
        except Exception:
            _logger.debug("genicam release step failed", exc_info=True)
