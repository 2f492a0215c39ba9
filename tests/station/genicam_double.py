"""A GenICam camera double for the branches the GenTL simulator (viky.cti) cannot exercise.

The node map is real GenApi (``genicam.genapi.NodeMap``) loaded from ``data/genicam_double.xml``
(trigger, exposure, gain, offsets, timestamp latch); around it, a harvester / image acquirer /
buffer double with the interface the station uses, whose camera exposes on TriggerSoftware or on
:meth:`FakeCamera.pulse` (a hardware trigger) and stamps frames with its own clock.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

DOUBLE_XML = Path(__file__).parent / "data" / "genicam_double.xml"
CAMERA_EPOCH_S = 1000.0  # the camera's clock runs this far ahead of the host's perf_counter


def load_double(xml: Path = DOUBLE_XML) -> Any:
    from genicam import genapi

    nm = genapi.NodeMap()
    nm.load_xml_from_file(str(xml))
    return nm


class _Command:
    """A command node that also tells the fake camera it ran."""

    def __init__(self, node: Any, hook: Any) -> None:
        self._node, self._hook = node, hook
        self.node = node.node

    def execute(self) -> None:
        self._node.execute()
        self._hook()


class HookedNodeMap:
    """The XML node map, with TriggerSoftware and TimestampLatch wired to the fake camera."""

    def __init__(self, nm: Any, camera: FakeCamera) -> None:
        self._nm = nm
        self._hooks = {"TriggerSoftware": camera.software_trigger, "TimestampLatch": camera.latch}

    def get_node(self, name: str) -> Any:
        node = self._nm.get_node(name)
        return _Command(node, self._hooks[name]) if name in self._hooks else node

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nm, name)


class FakeBuffer:
    def __init__(self, image: np.ndarray, frame_id: int, camera_ns: int | None, fmt: str = "Mono8") -> None:
        h, w = image.shape[:2]
        self.payload = SimpleNamespace(components=[SimpleNamespace(data=image.reshape(-1), width=w, height=h,
                                                                   data_format=fmt)])
        self.module = SimpleNamespace(frame_id=frame_id)
        self._ns = camera_ns
        self.queued = False

    @property
    def timestamp_ns(self) -> int:
        if self._ns is None:
            msg = "timestamps not supported"
            raise RuntimeError(msg)
        return self._ns

    def queue(self) -> None:
        self.queued = True


class FakeCamera:
    """The camera: a node map, frames on trigger, its own clock and frame ids; ``unplug`` makes it vanish."""

    def __init__(self, serial: str = "D0001", timestamps: bool = True) -> None:
        self.nm = HookedNodeMap(load_double(), self)
        self.serial = serial
        self.timestamps = timestamps
        self.frames: queue.Queue[FakeBuffer] = queue.Queue()
        self.frame_id = 0
        self.unplugged = threading.Event()
        self.software_triggers = 0
        self.acquiring = False
        self.drop_next = 0  # triggers the camera ignores (a missed pulse)
        self.opens = 0
        self.buffer_format = "Mono8"  # the pixel format the buffers claim

    def clock_ns(self, host_t: float | None = None) -> int:
        return int(((time.perf_counter() if host_t is None else host_t) + CAMERA_EPOCH_S) * 1e9)

    def latch(self) -> None:
        self.nm.get_node("TimestampLatchValue").value = self.clock_ns()

    def software_trigger(self) -> None:
        self.software_triggers += 1
        self.pulse()

    def pulse(self, at: float | None = None, transfer_s: float = 0.0) -> None:
        """A trigger at host time ``at`` (now): the camera exposes and delivers after ``transfer_s``."""
        at = time.perf_counter() if at is None else at
        if self.drop_next:
            self.drop_next -= 1
            return
        if not self.acquiring or self.unplugged.is_set():
            return
        self.frame_id += 1
        w, h = int(self.nm.get_node("Width").value), int(self.nm.get_node("Height").value)
        image = np.full((h, w), self.frame_id % 256, np.uint8)
        buf = FakeBuffer(image, self.frame_id, self.clock_ns(at) if self.timestamps else None, self.buffer_format)
        if transfer_s > 0:
            threading.Timer(transfer_s, self.frames.put, args=(buf,)).start()
        else:
            self.frames.put(buf)


class FakeAcquirer:
    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera
        self.remote_device = SimpleNamespace(node_map=camera.nm)
        self.num_buffers = 0
        self.destroyed = False

    def start(self) -> None:
        self.camera.acquiring = True

    def stop(self) -> None:
        self.camera.acquiring = False

    def destroy(self) -> None:
        self.destroyed = True

    def try_fetch(self, *, timeout: float) -> FakeBuffer | None:
        if self.camera.unplugged.is_set():
            msg = "GenTL: device lost"
            raise RuntimeError(msg)
        try:
            return self.camera.frames.get(timeout=timeout)
        except queue.Empty:
            return None


class FakeHarvester:
    """What ``harvesters.core.Harvester`` offers the station, over one FakeCamera."""

    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera
        self.files: list[str] = []
        self.device_info_list: list[Any] = []

    def add_file(self, path: str, check_existence: bool = False) -> None:
        self.files.append(path)

    def update(self) -> None:
        self.device_info_list = [] if self.camera.unplugged.is_set() else [SimpleNamespace(property_dict={
            "vendor": "InspectorTest", "model": "DoubleCam-2M", "serial_number": self.camera.serial,
            "user_defined_name": "line1-top", "tl_type": "GEV", "access_status": 1})]

    def create(self, pos: int) -> FakeAcquirer:
        self.camera.opens += 1
        return FakeAcquirer(self.camera)

    def reset(self) -> None:
        self.device_info_list = []
