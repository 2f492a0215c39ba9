"""Shared parts of the reliability scripts (soak.py, faults.py): the station under test, process
figures, and the check of what the PLC was told against what the audit log holds.

The station under test is a real line config (default: the demo line) whose backbone can be
swapped for a smaller registered architecture: the soak and the fault scenarios test the station's
plumbing (camera, queues, PLC link, HDF5 log), not the backbone.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inspector.plc.sim import PartTrace  # noqa: E402  (what the PLC saw for one trigger)

DEMO_CONFIG = ROOT / "station_configs" / "demo.yaml"
SMALL_MODEL = "inspector-tiny-vit"
_GAP_RE = re.compile(r" - seq (.+)$")


# ------------------------------------------------------------------------------------------------ station


def _depth(model: str) -> int | None:
    import open_clip

    import inspector.backbone  # noqa: F401  (registers the tiny architecture)

    cfg = open_clip.get_model_config(model)
    return int(cfg["vision_cfg"]["layers"]) if cfg and "layers" in cfg.get("vision_cfg", {}) else None


def station_dict(config: Path, model: str | None = None, image_size: int | None = None) -> dict[str, Any]:
    """The station YAML as a dict with every path absolute; ``model`` swaps the backbone of every line.

    With ``model``, the input size becomes the model's own (or ``image_size``) and the feature
    layers are moved to the same relative depth in the new model (demo [6, 9] of 12 -> [2, 3] of 4).
    """
    config = Path(config).resolve()
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    base = config.parent

    def absolute(value: str | None) -> str | None:
        return None if value is None else str((base / value).resolve())

    for key in ("model_dir", "cache_dir"):
        if key in data:
            data[key] = absolute(data[key])
    for section, key in (("log", "folder"), ("camera", "path")):
        if data.get(section, {}).get(key) is not None:
            data[section][key] = absolute(data[section][key])
    for line in data["lines"]:
        if (line.get("fewshot") or {}).get("folder") is not None:
            line["fewshot"]["folder"] = absolute(line["fewshot"]["folder"])
        if model is not None:
            spec = line["model"]
            old, new = _depth(spec["name"]) or 12, _depth(model)
            layers = spec.get("feature_layers", [6, 9])
            if new is not None:
                layers = sorted({min(new - 1, max(0, round(k * new / old))) for k in layers})
            spec.update(name=model, pretrained="random", sha256=None, image_size=image_size, feature_layers=layers)
        elif image_size is not None:
            line["model"]["image_size"] = image_size
    return data


def write_yaml(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def describe_model(data: dict[str, Any]) -> str:
    line = data["lines"][0]
    spec = line["model"]
    size = spec.get("image_size") or "native"
    return (f"{spec['name']} ({spec['pretrained']} weights, input {size}, feature layers {spec.get('feature_layers')}) "
            f"on line `{line['name']}`")


# ------------------------------------------------------------------------------------------------ process


def rss_mb() -> float:
    """Resident set size of this process in MiB (psutil, else /proc/self/status)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own descriptor
    except OSError:
        return -1


def process_figures() -> dict[str, float]:
    return {"rss_mb": round(rss_mb(), 1), "fds": open_fds(), "threads": threading.active_count()}


def cpu_name() -> str:
    """The CPU model (inspector.demo.bench.cpu_name), imported only when a report is written."""
    from inspector.demo.bench import cpu_name as name

    return name()


def percentiles(values: Iterable[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    import numpy as np

    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not data.size:
        return {}
    out = {f"p{q:g}": round(float(np.percentile(data, q)), 3) for q in qs}
    out["max"] = round(float(data.max()), 3)
    return out


def command_line() -> str:
    exe = Path(sys.executable)
    py = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    script = Path(sys.argv[0])
    script_txt = str(script.resolve().relative_to(ROOT)) if script.resolve().is_relative_to(ROOT) else str(script)
    return " ".join([py, script_txt, *sys.argv[1:]])


# ------------------------------------------------------------------------------------------------ audit log


@dataclass
class AuditContents:
    """Every record and event of a log folder."""

    records: dict[str, dict[str, Any]]  # part id -> record
    by_seq: dict[int, dict[str, Any]]
    duplicates: list[str]  # part ids or seqs logged twice
    events: list[dict[str, Any]]
    gap_seqs: set[int]  # seqs named by log_gap events
    files: list[str]
    open_files: list[str]  # still marked open for writing (a crash nobody sealed)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def parse_seq_ranges(text: str) -> set[int]:
    """"1-3, 7" -> {1, 2, 3, 7}."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def read_audit(folder: Path) -> AuditContents:
    from inspector.audit.h5log import log_files
    from inspector.audit.reader import AuditReader

    records: dict[str, dict[str, Any]] = {}
    by_seq: dict[int, dict[str, Any]] = {}
    duplicates: list[str] = []
    events: list[dict[str, Any]] = []
    gaps: set[int] = set()
    files, open_files = [], []
    for path in log_files(folder):
        with AuditReader(path) as reader:
            files.append(path.name)
            if reader.is_open_for_write:
                open_files.append(path.name)
            for rec in reader.records():
                if rec["part_id"] in records:
                    duplicates.append(f"part {rec['part_id']}")
                if rec["seq"] in by_seq:
                    duplicates.append(f"seq {rec['seq']}")
                records[rec["part_id"]] = rec
                by_seq[rec["seq"]] = rec
            for ev in reader.events():
                ev["file"] = path.name
                events.append(ev)
                if ev["kind"] == "log_gap":
                    m = _GAP_RE.search(ev["what"])
                    if m:
                        gaps |= parse_seq_ranges(m.group(1))
    return AuditContents(records, by_seq, duplicates, events, gaps, files, open_files)


def read_audit_isolated(folder: Path) -> AuditContents:
    """:func:`read_audit` in a child process: files this process's writer set aside after failed writes
    cannot be read here (HDF5 shares one handle per file per process)."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, __file__, "--dump-audit", str(folder)], capture_output=True, text=True,
                          timeout=600, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    data = json.loads(proc.stdout)
    by_seq = {int(k): v for k, v in data["by_seq"].items()}
    return AuditContents(data["records"], by_seq, data["duplicates"], data["events"], set(data["gap_seqs"]),
                         data["files"], data["open_files"])


# ------------------------------------------------------------------------------------------------ PLC vs log


@dataclass
class Reconciliation:
    """What the PLC was told against the audit log, part by part."""

    triggered: int = 0
    acked: int = 0
    answered: int = 0  # RES received
    inspected: int = 0  # RES with an inspection verdict
    fault_answers: int = 0  # NG/FAULT (part not inspected: camera down, ...)
    timeouts: int = 0  # NG/TIMEOUT: the log holds the late verdict
    refused: int = 0  # ERR E04 / E05
    unanswered: int = 0  # neither ACK nor ERR: the trigger never reached the station (port gone)
    logged: int = 0
    lost: list[str] = field(default_factory=list)  # ACKed, not in the log, not named by a log_gap
    gap_named: list[str] = field(default_factory=list)  # ACKed, not logged, seq named by a log_gap event
    no_result: list[str] = field(default_factory=list)  # ACKed, no RES reached the PLC
    unmatched: list[str] = field(default_factory=list)
    ok_without_inspection: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("lost", "gap_named", "no_result", "unmatched", "ok_without_inspection"):
            out[key] = len(getattr(self, key))
            out[f"{key}_examples"] = getattr(self, key)[:5]
        return out


def reconcile(parts: Iterable[PartTrace], log: AuditContents, decided: dict[str, int] | None = None,
              only_prefixes: tuple[str, ...] | None = None) -> Reconciliation:
    """Match every PLC trace with its audit record; ``decided`` maps part id -> station seq (to find gaps)."""
    from inspector.plc.protocol import sanitize_label

    r = Reconciliation()
    seen: set[str] = set()
    for p in parts:
        seen.add(p.part_id)
        r.triggered += 1
        if p.refused:
            r.refused += 1
            if p.part_id in log.records:
                r.unmatched.append(f"{p.part_id}: refused ({p.refused}) but logged")
            continue
        if p.ack_at is None:
            r.unanswered += 1
            if p.result_at is not None:
                r.unmatched.append(f"{p.part_id}: RES without ACK")
            continue
        r.acked += 1
        rec = log.records.get(p.part_id)
        if rec is None:
            seq = (decided or {}).get(p.part_id)
            (r.gap_named if seq is not None and seq in log.gap_seqs else r.lost).append(p.part_id)
        if p.verdict is None:
            r.no_result.append(p.part_id)
            continue
        r.answered += 1
        if p.defect == "TIMEOUT":
            r.timeouts += 1
            continue
        logged_fault = rec is not None and (bool(rec["fault"]) or not math.isfinite(rec["score"]))
        if p.verdict == "OK" and (logged_fault or not p.inspected):
            r.ok_without_inspection.append(p.part_id)
            continue
        if not p.inspected:
            r.fault_answers += 1
            if rec is not None and not logged_fault:
                r.unmatched.append(f"{p.part_id}: PLC got NG/{p.defect}, log has an inspection ({rec['verdict']})")
            continue
        r.inspected += 1
        if rec is None:
            continue
        problems = []
        if rec["verdict"] != p.verdict:
            problems.append(f"verdict {p.verdict} vs {rec['verdict']}")
        if logged_fault or abs(float(p.score) - float(rec["score"])) > 0.0005 + 1e-9:  # type: ignore[arg-type]
            problems.append(f"score {p.score} vs {rec['score']}")
        if p.verdict == "NG" and (p.defect or "-") != sanitize_label(rec["defect"]):
            problems.append(f"defect {p.defect} vs {rec['defect']}")
        if problems:
            r.unmatched.append(f"{p.part_id}: " + ", ".join(problems))
    for part_id in log.records:
        if part_id not in seen and (only_prefixes is None or part_id.startswith(only_prefixes)):
            r.unmatched.append(f"{part_id}: logged but never triggered")
    r.unmatched += [f"logged twice: {d}" for d in log.duplicates]
    r.logged = len(log.records)
    return r


if __name__ == "__main__" and sys.argv[1:2] == ["--dump-audit"]:
    import json

    contents = read_audit(Path(sys.argv[2]))
    json.dump({**asdict(contents), "gap_seqs": sorted(contents.gap_seqs)}, sys.stdout, default=str)
