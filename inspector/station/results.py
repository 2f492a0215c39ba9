"""One published part: the engine's inspection wrapped with what the station adds, built once.

The verdict path (each shape built once from the one before, never copied field by field):

* :class:`~inspector.decision.result.InspectionResult` - the engine's reading of one frame;
* :class:`~inspector.plc.port.PartVerdict` - the small answer a trigger source hears (:func:`part_verdict`);
* :class:`StationResult` - the part as every sink sees it: the two above (by reference), the part's
  number, time and timings, the frame, and the :class:`ModelStamp` of the engine that judged it;
* :class:`~inspector.audit.records.AuditRecord` - the log row (:func:`audit_record`): the audit layer
  sits below the station and the PLC, so it cannot read a StationResult itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.audit.media import downsample_heatmap, encode_frame, encode_thumbnail
from inspector.audit.records import AuditRecord
from inspector.config.log import LogSpec
from inspector.decision.result import InspectionResult
from inspector.plc.port import PartVerdict

if TYPE_CHECKING:
    from inspector.engine import Inspector
    from inspector.station.sources import Frame
    from inspector.station.triggers import Trigger


@dataclass(frozen=True)
class ModelStamp:
    """Which model judged a part: backbone identity, trained version, line config."""

    label: str = ""  # backbone identity label
    name: str = ""  # backbone model name
    weights_sha256: str | None = None
    version: str = "base"  # trained version from the registry, "base" = none
    config_hash: str = ""
    untrained: bool = False  # random backbone weights: verdicts demonstrate the station, not its accuracy

    @classmethod
    def of(cls, inspector: Inspector | None, version: str | None = None) -> ModelStamp:
        """The stamp of ``inspector`` (``version``: the one a result was made with, else the engine's now)."""
        if inspector is None:
            return cls(version=version or "")
        ident = inspector.backbone.identity
        return cls(ident.label(), ident.model, ident.sha256, version or inspector.model_version,
                   inspector.config_hash, bool(ident.untrained))


@dataclass(frozen=True)
class StationResult:
    """One part as every sink sees it (read-only: sinks share the same object)."""

    seq: int
    part_id: str
    time_ns: int  # UTC ns: when the frame was grabbed (or the fault happened)
    line: str
    verdict: PartVerdict  # what the trigger source was answered
    trigger: str  # free_run | plc | software
    timings_ms: dict[str, float]  # station stages + the engine's stages (see inspector.audit.schema.STAGES)
    result: InspectionResult | None = None  # None when the part was not inspected
    frame: np.ndarray | None = None  # the validated RGB frame (None when none was grabbed)
    frame_ref: str = ""
    truth: str | None = None
    model: ModelStamp = ModelStamp()
    camera_frame_id: int | None = None  # the camera's own frame id and timestamp (GenICam), None = none
    camera_time_ns: int | None = None

    @property
    def fault(self) -> str | None:
        return self.verdict.fault

    @property
    def ok(self) -> bool:
        return self.verdict.verdict == "OK"


def part_verdict(part_id: str, seq: int, result: InspectionResult | None, fault: str | None,
                 defect_classes: tuple[str, ...]) -> PartVerdict:
    """The answer for one part: the engine's verdict (defect numbered in the line's classes), or NG/FAULT."""
    if result is None:
        return PartVerdict.failed(part_id, fault or "not inspected", "FAULT", seq)
    defect = result.defect if result.verdict == "NG" else None
    index = defect_classes.index(defect) + 1 if defect in defect_classes else 0
    return PartVerdict(part_id, result.verdict, float(result.score), defect, index, seq)


def defect_classes(inspector: Inspector) -> tuple[str, ...]:
    """The line's defect classes in PLC order: the prompts' classes, then any other the engine names."""
    classes = list(inspector.line.prompts.defects)
    classes += [n for n in inspector.defect_names if n not in classes]
    return tuple(classes)


@dataclass
class Job:
    """One part between capture and publishing."""

    trigger: Trigger
    frame: Frame | None
    fault: str | None
    capture_start: float  # perf_counter seconds
    captured: float
    published: bool = False
    ref: str = ""  # frame reference when no frame could be used (bad frame)
    part_hint: str | None = None


class ResultBuilder:
    """Builds the verdict and the StationResult of each part for the running line."""

    def __init__(self, line: str) -> None:
        self.line = line  # the station's line, for parts without an inspection
        self.defect_classes: tuple[str, ...] = ()

    def install(self, inspector: Inspector, line: str) -> None:
        """A new engine (start, changeover): its line and defect classes."""
        self.defect_classes = defect_classes(inspector)
        self.line = line

    def build(self, job: Job, seq: int, result: InspectionResult | None, fault: str | None,
              t_inspect: float | None, inspector: Inspector | None) -> StationResult:
        trig, frame = job.trigger, job.frame
        timings: dict[str, float] = {"trigger_queue": (job.capture_start - trig.accepted) * 1000.0}
        if frame is not None:
            timings["capture"] = (job.captured - job.capture_start) * 1000.0
        if t_inspect is not None and result is not None:
            timings["inspect_queue"] = (t_inspect - job.captured) * 1000.0
            for stage, ms in result.timings_ms.items():
                timings["inspect" if stage == "total" else stage] = ms
        t_decide = time.perf_counter()
        part_id = trig.part_id or (frame.part_id if frame is not None else job.part_hint) or f"F{seq:08d}"
        verdict = part_verdict(part_id, seq, result, fault, self.defect_classes)
        now = time.perf_counter()
        timings["publish"] = (now - t_decide) * 1000.0
        timings["total"] = (now - trig.accepted) * 1000.0
        return StationResult(
            seq=seq,
            part_id=part_id,
            time_ns=frame.time_ns if frame is not None else time.time_ns(),
            line=result.line if result is not None else self.line,
            verdict=verdict,
            trigger=trig.kind,
            timings_ms=timings,
            result=result,
            frame=frame.image if frame is not None else None,
            frame_ref=frame.ref if frame is not None else job.ref,
            truth=frame.truth if frame is not None else None,
            # The result's own version: a swap between inspection and publishing must not relabel it.
            model=ModelStamp.of(inspector, result.model_version if result is not None else None),
            camera_frame_id=frame.camera_frame_id if frame is not None else None,
            camera_time_ns=frame.camera_time_ns if frame is not None else None,
        )


def audit_record(sr: StationResult, spec: LogSpec) -> AuditRecord:
    """StationResult -> AuditRecord, encoding the thumbnail, heatmap and (per spec) the full frame."""
    r, v, m, frame = sr.result, sr.verdict, sr.model, sr.frame
    save_frame = frame is not None and (spec.save_full_frames == "all"
                                        or (spec.save_full_frames == "ng" and v.verdict == "NG"))
    return AuditRecord(
        seq=sr.seq,
        time_ns=sr.time_ns,
        part_id=sr.part_id,
        line=sr.line,
        verdict=v.verdict,
        score=v.score,
        threshold=r.threshold if r is not None else float("nan"),
        defect=v.defect,
        defect_index=v.defect_index,
        defect_confidence=r.defect_confidence if r is not None else None,
        fault=v.fault,
        trigger=sr.trigger,
        frame_ref=sr.frame_ref,
        truth=sr.truth,
        model=m.label,
        model_name=m.name,
        weights_sha256=m.weights_sha256,
        model_version=m.version,
        config_hash=m.config_hash,
        untrained=m.untrained,
        n_regions=len(r.regions) if r is not None else 0,
        roi=tuple(r.roi) if r is not None else (0, 0, 0, 0),  # type: ignore[arg-type]
        stage_ms=sr.timings_ms,
        embedding=r.embedding if r is not None else None,
        heatmap=downsample_heatmap(r.anomaly_map, spec.heatmap_px) if r is not None else None,
        thumbnail_jpeg=encode_thumbnail(frame, spec.thumbnail_px, spec.jpeg_quality) if frame is not None else b"",
        frame_png=encode_frame(frame) if save_frame else b"",
        camera_frame_id=sr.camera_frame_id,
        camera_time_ns=sr.camera_time_ns,
        mutual_parts=r.mutual_parts if r is not None else -1,
    )
