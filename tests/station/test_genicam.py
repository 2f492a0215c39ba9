"""The GenICam source: on the GenTL simulator that ships with the genicam package (the harvesters path
of a real camera) and, for what the simulator lacks (trigger, timestamps, unplugging), on the camera
double over the XML node map (tests/station/genicam_double.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from inspector.config.camera import CameraSpec
from inspector.station.genicam import GenICamSource, producer_files, simulator_cti
from inspector.station.sources import BadFrame, Camera, CameraConfigError, CameraError, MissingFrame
from tests.station.genicam_double import FakeCamera, FakeHarvester


def sim_spec(**genicam: Any) -> CameraSpec:
    g = {"cti": ["genicam-simulator"], "serial": "1", "roi": [0, 0, 320, 240], "pixel_format": "Mono8"} | genicam
    return CameraSpec.model_validate({"kind": "genicam", "fps": 50, "grab_timeout_s": 1.0, "genicam": g,
                                      "reconnect_min_s": 0.01, "reconnect_max_s": 0.05})


def double_spec(mode: str = "software", **trigger: Any) -> CameraSpec:
    return CameraSpec.model_validate({
        "kind": "genicam", "grab_timeout_s": 0.5, "reconnect_min_s": 0.01, "reconnect_max_s": 0.05,
        "genicam": {"cti": ["genicam-simulator"], "serial": "D0001", "roi": [0, 0, 128, 128], "exposure_us": 200,
                    "trigger": {"mode": mode, "early_ms": 50, "late_ms": 200} | trigger}})


def double_camera(mode: str = "software", fake: FakeCamera | None = None, **trigger: Any
                  ) -> tuple[Camera, FakeCamera, list[tuple[str, str]]]:
    fake = fake or FakeCamera()
    spec = double_spec(mode, **trigger)
    events: list[tuple[str, str]] = []
    cam = Camera(GenICamSource(spec, factory=lambda: FakeHarvester(fake)), spec,
                 listener=lambda kind, detail: events.append((kind, detail)))
    assert cam.connect(), cam.last_error
    return cam, fake, events


# --- the simulator -------------------------------------------------------------------------------------------

def test_simulator_frames_carry_the_cameras_frame_ids() -> None:
    spec = sim_spec()
    source = GenICamSource(spec)
    cam = Camera(source, spec)
    assert cam.connect(), cam.last_error
    try:
        assert source.model == "Viky" and source.held["Width"] == 320 and source.held["PixelFormat"] == "Mono8"
        frames = [cam.grab(time.perf_counter()) for _ in range(4)]
    finally:
        cam.close()
    ids = [f.camera_frame_id for f in frames]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    assert all(f.image.shape == (240, 320, 3) and f.ref == f"frame {f.camera_frame_id}" for f in frames)
    assert all(f.camera_time_ns is None for f in frames)  # the simulator has no timestamps
    assert frames[-1].image.std() > 0  # a real picture (the bouncing ball), not an empty buffer


def test_simulator_device_selection() -> None:
    with pytest.raises(CameraError, match=r"no camera with serial 9 found \(seen: Viky serial 0, Viky serial 1"):
        GenICamSource(sim_spec(serial="9")).open()
    with pytest.raises(CameraConfigError, match=r"3 cameras found .*: name one with camera\.genicam\.serial"):
        GenICamSource(sim_spec(serial=None)).open()
    with pytest.raises(CameraError, match=r"camera\.genicam\.index 7: only 3 camera\(s\) found"):
        GenICamSource(sim_spec(serial=None, index=7)).open()
    source = GenICamSource(sim_spec(serial=None, index=2))
    source.open()
    source.close()


def test_a_setting_the_camera_refuses_stops_the_first_connect() -> None:
    spec = sim_spec(exposure_us=300)
    cam = Camera(GenICamSource(spec), spec)
    with pytest.raises(CameraConfigError, match=r"camera Viky has no feature ExposureTime"):
        cam.connect()
    assert not cam.connected


def test_producer_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CameraConfigError, match=r"GenTL producer .*nope\.cti does not exist \(camera\.genicam\.cti\)"):
        producer_files(["nope.cti"], lambda p: tmp_path / p)
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path / "empty"))
    with pytest.raises(CameraConfigError, match=r"camera\.genicam\.cti is empty and GENICAM_GENTL64_PATH"):
        producer_files([])
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    shutil.copy(simulator_cti(), vendor / "vendor.cti")
    monkeypatch.setenv("GENICAM_GENTL64_PATH", f"{tmp_path / 'empty'}:{vendor}")
    assert producer_files([]) == [(vendor / "vendor.cti").resolve()]


def test_simulator_reset_mid_stream_is_a_lost_camera_that_reconnects() -> None:
    spec = sim_spec()
    source = GenICamSource(spec)
    events: list[str] = []
    cam = Camera(source, spec, listener=lambda kind, detail: events.append(kind))
    assert cam.connect()
    try:
        cam.grab(time.perf_counter())
        source._session.ia.stop()  # the camera stops streaming (a reset mid-stream)
        with pytest.raises(CameraError, match=r"no frame within 1 s"):
            cam.grab(time.perf_counter())
        assert not cam.connected and events == ["camera_lost"]
        deadline = time.monotonic() + 5
        while not cam.connect() and time.monotonic() < deadline:
            time.sleep(0.01)
        frame = cam.grab(time.perf_counter())
        assert frame.camera_frame_id is not None and events == ["camera_lost", "camera_restored"]
    finally:
        cam.close()


# --- the node-map double: triggers, timestamps, unplugging ---------------------------------------------------

def test_software_trigger_fires_when_the_part_is_accepted() -> None:
    cam, fake, events = double_camera("software")
    try:
        for _ in range(3):
            t = time.perf_counter()
            assert cam.arm(t)  # what the trigger queue does on accept
            frame = cam.grab(t, armed=True)
            assert frame.camera_frame_id == fake.frame_id and frame.image.shape == (128, 128, 3)
            assert abs(frame.camera_time_ns / 1e9 - 1000.0 - t) < 0.05  # the camera's clock, latched at open
        tick = time.perf_counter()
        assert cam.grab(tick, armed=False).camera_frame_id == 4  # a free-run tick: fired at the grab
        assert fake.software_triggers == 4 and not events
    finally:
        cam.close()


def test_hardware_trigger_missing_and_extra_frames_never_shift_a_verdict() -> None:
    cam, fake, events = double_camera("hardware", source="Line1")
    try:
        t1 = time.perf_counter()
        fake.pulse(t1)
        assert cam.grab(t1).camera_frame_id == 1
        fake.drop_next = 1  # part 2: the camera misses the pulse
        t2 = time.perf_counter()
        fake.pulse(t2)
        with pytest.raises(MissingFrame, match=r"no frame for this trigger"):
            cam.grab(t2)
        assert cam.connected  # a missed pulse is this part's fault, not a lost camera
        fake.pulse(time.perf_counter())  # a stray pulse with no part behind it
        time.sleep(0.3)
        t3 = time.perf_counter()
        fake.pulse(t3)
        frame = cam.grab(t3)
        assert frame.camera_frame_id == 3  # part 3 gets its own frame, not the stray one (2)
        assert [k for k, _ in events] == ["camera_extra_frame"] and "ids 2" in events[0][1]
    finally:
        cam.close()


def test_a_late_transfer_is_matched_by_the_cameras_timestamp() -> None:
    cam, fake, _ = double_camera("hardware")
    try:
        t = time.perf_counter()
        fake.pulse(t, transfer_s=0.35)  # arrives after late_ms (0.2 s): its timestamp says it is this part's
        assert cam.grab(t).camera_frame_id == 1
    finally:
        cam.close()


def test_without_timestamps_the_receipt_time_decides() -> None:
    cam, fake, _ = double_camera("hardware", fake=FakeCamera(timestamps=False))
    try:
        t = time.perf_counter()
        fake.pulse(t, transfer_s=0.35)
        with pytest.raises(MissingFrame):  # received too late: it cannot be told from the next part's frame
            cam.grab(t)
    finally:
        cam.close()


def test_a_frame_the_station_cannot_convert_is_a_bad_frame_not_a_lost_camera() -> None:
    cam, fake, _ = double_camera("software")
    try:
        fake.buffer_format = "YUV422_8"
        with pytest.raises(BadFrame, match=r"frame 1: pixel format YUV422_8 is not supported.*pixel_format"):
            cam.grab(time.perf_counter())
        assert cam.connected and cam.bad_frames == 1
        fake.buffer_format = "Mono8"
        assert cam.grab(time.perf_counter()).camera_frame_id == 2
    finally:
        cam.close()


def test_lost_frame_ids_are_reported() -> None:
    cam, fake, events = double_camera("software")
    try:
        cam.grab(time.perf_counter())
        fake.frame_id += 2  # two frames lost on the link
        assert cam.grab(time.perf_counter()).camera_frame_id == 4
        assert events[0][0] == "camera_frames_lost" and "2 frame(s) lost before frame id 4" in events[0][1]
        assert cam.source.frames_lost == 2
        fake.frame_id += 1  # another loss within the second: counted, reported with the next report
        cam.grab(time.perf_counter())
        assert cam.source.frames_lost == 3 and len(events) == 1
    finally:
        cam.close()


def test_camera_unplugged_mid_part_is_a_camera_error_then_it_reconnects() -> None:
    cam, fake, events = double_camera("hardware")
    try:
        fake.unplugged.set()
        with pytest.raises(CameraError) as exc:
            cam.grab(time.perf_counter())
        assert not isinstance(exc.value, MissingFrame) and "device lost" in str(exc.value)
        assert not cam.connected
        time.sleep(cam.retry_in() + 0.01)
        assert not cam.connect()  # still unplugged: not found
        assert "no camera found" in cam.last_error
        fake.unplugged.clear()
        deadline = time.monotonic() + 5
        while not cam.connect() and time.monotonic() < deadline:
            time.sleep(0.01)
        t = time.perf_counter()
        fake.pulse(t)
        assert cam.grab(t).camera_frame_id == 1 and fake.opens == 2
        assert [k for k, _ in events] == ["camera_lost", "camera_restored"]
    finally:
        cam.close()
