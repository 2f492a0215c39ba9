"""Layout of an audit file: dataset names, record dtypes, stage columns (shared by writer and reader).

One HDF5 file holds, per inspection ``i`` (row ``i`` of every per-record dataset):

=================  =============================  ===============================================
``inspections``    compound [N], gzip              seq, UTC time, part id, line, verdict, score,
                                                   threshold, defect, fault, model identity, ...
``stage_ms``       float32 [N, S]                  stage latencies; column names in attr ``stages``
``embedding``      float16 [N, D]                  global CLIP image embedding (NaN: not inspected)
``heatmap``        float16 [N, P, P]               low-resolution anomaly map over the record's ROI
``thumbnails``     uint8 [bytes]                   JPEG blobs, located by ``thumb_offset/size``
``frames``         uint8 [bytes]                   PNG blobs of full frames, ``frame_offset/size``
``events``         compound [E], gzip              config / threshold / model changes, faults, ...
=================  =============================  ===============================================

``len(inspections)`` is authoritative: the writer extends every other dataset before the table, so
a reader never sees a table row whose embedding, heatmap or blobs are missing.
"""

from __future__ import annotations

import numpy as np

FORMAT_NAME = "inspector-audit"
FORMAT_VERSION = 1
SUFFIX = ".h5"

# Station stages (milliseconds) in column order; engine stages of the core sit between
# inspect_queue and inspect. A stage a record does not have is NaN.
STAGES: tuple[str, ...] = (
    "trigger_queue",  # trigger accepted -> capture started
    "capture",  # grab + validation
    "inspect_queue",  # frame captured -> inspection started
    "preprocess",
    "backbone",
    "zero_shot",
    "references",
    "probe",
    "adapter",
    "mutual",  # the mutual head's search against the line's buffer (absent while it warms up)
    "fusion",
    "map",
    "decision",
    "inspect",  # the engine's total
    "publish",  # result built -> handed to every sink
    "total",  # trigger accepted -> verdict handed to the PLC reply
)

STR_LIMITS = {
    "part_id": 64,
    "line": 64,
    "defect": 64,
    "fault": 256,
    "trigger": 16,
    "frame_ref": 128,
    "truth": 32,
    "model": 128,
    "model_name": 64,
    "weights_sha256": 64,
    "model_version": 64,
    "config_hash": 32,
}

INSPECTION_DTYPE = np.dtype([
    ("seq", "<u8"),
    ("time_ns", "<i8"),  # UTC, nanoseconds since the Unix epoch
    ("part_id", f"S{STR_LIMITS['part_id']}"),
    ("line", f"S{STR_LIMITS['line']}"),
    ("verdict", "S2"),  # OK | NG
    ("score", "<f8"),  # NaN when not inspected
    ("threshold", "<f8"),
    ("defect", f"S{STR_LIMITS['defect']}"),  # "" none, class label, "anomaly", "FAULT"
    ("defect_index", "<i2"),  # 1-based index in the line's defect classes, 0 = none
    ("defect_confidence", "<f4"),  # NaN when unknown
    ("fault", f"S{STR_LIMITS['fault']}"),  # why the part was not inspected ("" = inspected)
    ("trigger", f"S{STR_LIMITS['trigger']}"),  # free_run | plc | software
    ("frame_ref", f"S{STR_LIMITS['frame_ref']}"),  # camera frame number, file name, ...
    ("truth", f"S{STR_LIMITS['truth']}"),  # ground truth where the source knows it (demo camera)
    ("model", f"S{STR_LIMITS['model']}"),  # backbone label, e.g. "ViT-B-16/laion2b sha256:1a2b3c4d"
    ("model_name", f"S{STR_LIMITS['model_name']}"),  # open_clip architecture
    ("weights_sha256", f"S{STR_LIMITS['weights_sha256']}"),  # "" for random weights
    ("model_version", f"S{STR_LIMITS['model_version']}"),  # adapter version, "base" = none
    ("config_hash", f"S{STR_LIMITS['config_hash']}"),
    ("untrained", "u1"),  # 1 = random-weight backbone (demo)
    ("n_regions", "<u2"),
    ("roi", "<i4", (4,)),  # x, y, width, height of the heatmap in frame pixels
    ("thumb_offset", "<u8"),
    ("thumb_size", "<u4"),  # 0 = no thumbnail
    ("frame_offset", "<u8"),
    ("frame_size", "<u4"),  # 0 = full frame not stored
    ("camera_frame_id", "<i8"),  # the camera's own frame / block id (GenICam), -1 = none
    ("camera_time_ns", "<i8"),  # the camera's own timestamp in ns on its clock (GenICam), -1 = none
    # Buffered parts the mutual head scored this part against: 0 while it warms up, -1 = no mutual head
    # on the line (and in files written before the column existed).
    ("mutual_parts", "<i2"),
])

EVENT_LIMITS = {"kind": 32, "who": 64, "what": 256, "old": 1024, "new": 1024}

EVENT_DTYPE = np.dtype([
    ("time_ns", "<i8"),
    ("after_seq", "<u8"),  # the last inspection seq written before the event
    ("kind", f"S{EVENT_LIMITS['kind']}"),  # station_start, changeover, threshold, camera_lost, ...
    ("who", f"S{EVENT_LIMITS['who']}"),  # operator / process that made the change
    ("what", f"S{EVENT_LIMITS['what']}"),
    ("old", f"S{EVENT_LIMITS['old']}"),
    ("new", f"S{EVENT_LIMITS['new']}"),
])

TABLE_CHUNK = 64
EVENT_CHUNK = 16
EMBEDDING_CHUNK = 64
HEATMAP_CHUNK = 16
THUMB_CHUNK = 1 << 16
FRAME_CHUNK = 1 << 18


def fixed_attrs(attrs: dict[str, object]) -> dict[str, object]:
    """Attribute values with every string as fixed-length UTF-8 bytes (a string list as an ``S`` array).

    h5py stores ``str`` as variable-length strings in a global heap, which carries no checksum: one
    damaged object size there sends HDF5 into an endless loop on the next read of any string
    attribute (found by tests/audit/test_reader_fuzz.py). Fixed-length strings sit in the attribute
    message itself. Readers decode both (:func:`inspector.audit.reader._attr`).
    """

    def fixed(value: object) -> object:
        if isinstance(value, str):
            data = value.encode("utf-8")
            return np.array(data, dtype=f"S{max(1, len(data))}")
        if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, (str, bytes)) for v in value):
            items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value]
            return np.array(items, dtype=f"S{max([1, *map(len, items)])}")
        return value

    return {k: fixed(v) for k, v in attrs.items()}


def encode_str(text: str | None, limit: int) -> bytes:
    """UTF-8 bytes cut to ``limit`` at a character boundary (fixed-size HDF5 string fields)."""
    data = (text or "").encode("utf-8")
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def decode_str(value: bytes | np.bytes_) -> str:
    return bytes(value).decode("utf-8", errors="replace")
