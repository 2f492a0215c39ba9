"""Frame sources and the Camera wrapper: validation, timeouts, reconnect with backoff, real OpenCV capture."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import parse_station_config
from inspector.config.camera import CameraSpec
from inspector.errors import ConfigError
from inspector.station.sources import (
    BadFrame,
    Camera,
    CameraError,
    FolderSource,
    OpenCVSource,
    SourceExhausted,
    SyntheticSource,
    VideoSource,
    _has_gstreamer,
    _redact,
    create_source,
)
from tests.station.conftest import SIZE, FlakySource, ScriptedSource, good_frame, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def write_video(path: Path, frames: int = 5) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SIZE, SIZE))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for i in range(frames):
        writer.write(np.full((SIZE, SIZE, 3), 40 * i, np.uint8))
    writer.release()
    return path


def test_camera_spec_validation_names_the_fix() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_station_config({"lines": [], "camera": {"kind": "opencv"}})
    assert "exactly one of camera.device" in str(exc.value)
    with pytest.raises(ConfigError, match=r"needs camera\.path"):
        parse_station_config({"lines": [], "camera": {"kind": "folder"}})
    with pytest.raises(ConfigError, match="reconnect_max_s must be >="):
        parse_station_config({"lines": [], "camera": {"reconnect_min_s": 5, "reconnect_max_s": 1}})
    assert CameraSpec().kind == "synthetic"  # a config without a camera section runs the demo camera


def test_folder_source_order_loop_and_end(tmp_path: Path) -> None:
    for name in ("b.png", "a.png", "notes.txt"):
        path = tmp_path / name
        if name.endswith(".png"):
            cv2.imwrite(str(path), good_frame())
        else:
            path.write_text("x")
    src = FolderSource(tmp_path, loop=True)
    src.open()
    assert [src.read(1).ref for _ in range(3)] == ["a.png", "b.png", "a.png"]
    once = FolderSource(tmp_path, loop=False)
    once.open()
    once.read(1)
    once.read(1)
    with pytest.raises(SourceExhausted, match=r"camera\.loop is false"):
        once.read(1)
    with pytest.raises(CameraError, match="does not exist"):
        FolderSource(tmp_path / "missing").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CameraError, match="has no images"):
        FolderSource(empty).open()


def test_video_file_source_loops(tmp_path: Path) -> None:
    video = write_video(tmp_path / "line.avi", frames=3)
    src = create_source(CameraSpec(kind="video", path=video))
    assert isinstance(src, VideoSource)
    src.open()
    refs = [src.read(1).ref for _ in range(5)]
    assert refs == ["line.avi#1", "line.avi#2", "line.avi#3", "line.avi#1", "line.avi#2"]
    src.close()
    once = VideoSource(video, loop=False)
    once.open()
    for _ in range(3):
        once.read(1)
    with pytest.raises(SourceExhausted):
        once.read(1)


class ScriptedCapture:
    """Stands in for cv2.VideoCapture: ``read`` blocks until the test feeds a frame (or False = stream lost)."""

    def __init__(self, *args: object) -> None:
        self.frames: queue.Queue[object] = queue.Queue()
        self.released = False
        CAPTURES.append(self)

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        return True

    def read(self) -> tuple[bool, object]:
        item = self.frames.get(timeout=30)
        return (False, None) if item is False else (True, item)

    def release(self) -> None:
        self.released = True
        self.frames.put(False)


CAPTURES: list[ScriptedCapture] = []


def test_opencv_source_returns_a_fresh_rgb_frame_and_times_out() -> None:
    CAPTURES.clear()
    spec = CameraSpec(kind="opencv", device=0, grab_timeout_s=30, reconnect_min_s=0.01)
    source = OpenCVSource(spec, capture_factory=ScriptedCapture)
    cam = Camera(source, spec)
    assert cam.connect()
    cap = CAPTURES[0]
    bgr = np.zeros((SIZE, SIZE, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    cap.frames.put(np.zeros((SIZE, SIZE, 3), np.uint8))
    wait_for(lambda: source.frames_received == 1, what="the reader to take the early frame")
    feeder = threading.Timer(0.05, cap.frames.put, args=(bgr,))
    feeder.start()  # a frame that arrives after the trigger
    frame = cam.grab()
    feeder.join()
    assert frame.image[0, 0].tolist() == [0, 0, 255]  # RGB, and not the frame buffered before the grab
    cam.spec = spec.model_copy(update={"grab_timeout_s": 0.2})
    with pytest.raises(CameraError, match=r"no frame within 0.2 s \(camera.grab_timeout_s\)"):
        cam.grab()
    assert not cam.connected and cam.losses == 1
    cap.frames.put(False)  # the driver's blocked read returns at last: the device is released then
    wait_for(lambda: cap.released, what="device release")


def test_opencv_stream_end_is_a_lost_camera(tmp_path: Path) -> None:
    video = write_video(tmp_path / "stream.avi", frames=4)
    spec = CameraSpec(kind="opencv", url=str(video), grab_timeout_s=2, reconnect_min_s=0.01)
    cam = Camera(create_source(spec), spec)
    assert isinstance(cam.source, OpenCVSource)
    assert cam.connect()  # a real OpenCV capture; a file is consumed at decode speed, then ends
    with pytest.raises(CameraError, match="stopped delivering frames"):
        for _ in range(10):
            cam.grab()
    assert not cam.connected and cam.losses == 1
    cam.close()


def test_opencv_source_that_cannot_open() -> None:
    spec = CameraSpec(kind="opencv", url="/nonexistent/stream.avi")
    src = OpenCVSource(spec)
    with pytest.raises(CameraError, match="cannot open"):
        src.open()
    gige = CameraSpec(kind="opencv", url="aravissrc ! videoconvert ! appsink", backend="gstreamer")
    if not _has_gstreamer():
        with pytest.raises(CameraError, match="no GStreamer support"):
            OpenCVSource(gige).open()
    assert _redact("rtsp://admin:hunter2@10.0.0.5/stream") == "rtsp://admin:***@10.0.0.5/stream"


def test_camera_validates_every_frame() -> None:
    items = [np.zeros((0, 0), np.uint8), np.full((SIZE, SIZE), 7, np.uint16) << 8,
             np.zeros((SIZE, SIZE * 2, 3), np.uint8), good_frame()]
    cam = Camera(ScriptedSource(items), CameraSpec(frame_size=(SIZE, SIZE)))
    assert cam.connect()
    with pytest.raises(BadFrame, match="empty frame"):
        cam.grab()
    assert cam.grab().image.max() == 7  # 16-bit grey is converted, not rejected
    with pytest.raises(BadFrame, match="expected 64x64") as exc:
        cam.grab()
    assert exc.value.ref == "item-2"
    assert cam.grab().index == 2
    assert cam.bad_frames == 2 and cam.connected


def test_reconnect_with_exponential_backoff() -> None:
    clock = FakeClock()
    events: list[tuple[str, str]] = []
    src = FlakySource()
    cam = Camera(src, CameraSpec(reconnect_min_s=1, reconnect_max_s=4), listener=lambda k, d: events.append((k, d)),
                 clock=clock)
    assert cam.connect() and cam.grab().image.shape == (SIZE, SIZE, 3)
    src.down.set()
    with pytest.raises(CameraError, match="cable pulled"):
        cam.grab()
    assert events == [("camera_lost", "flaky camera: cable pulled")]
    with pytest.raises(CameraError, match="not connected"):
        cam.grab()
    waits = []
    for _ in range(4):  # attempts at +1, +2, +4, +4 s: doubling up to reconnect_max_s
        assert not cam.connect()
        waits.append(cam.retry_in())
        clock.t += cam.retry_in()
    assert waits == [1.0, 2.0, 4.0, 4.0]
    src.down.clear()
    assert cam.connect() and cam.reconnects == 1
    assert events[-1][0] == "camera_restored"
    assert cam.retry_in() == 0.0


def test_synthetic_source_is_deterministic() -> None:
    a, b = SyntheticSource(), SyntheticSource()
    first = a.read(1)
    assert first.part_id == "P000001" and first.truth in ("good", "scratch", "dent", "chip", "stain")
    np.testing.assert_array_equal(first.image, b.read(1).image)
