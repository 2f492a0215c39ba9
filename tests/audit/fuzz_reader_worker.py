"""Child process for the reader fuzz test: reads damaged audit files, one JSON line per file.

``python -m tests.audit.fuzz_reader_worker FILE...`` prints ``{"file": ..., "outcome": ...}`` per file,
flushed before the next one, so a crash or hang of the interpreter (HDF5 is C code) names the file it
was reading. Outcomes: ``ok`` (with the records read), ``audit_error`` (AuditReadError with its message),
``raw`` (any other exception: a bug).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inspector.audit.reader import AuditReader, AuditReadError, summarize


def read_all(path: Path) -> dict:
    """Everything a user can read from a file: records, events, media, embeddings, the summary."""
    with AuditReader(path) as reader:
        records = reader.records()
        events = reader.events()
        reader.embeddings()
        for i in range(len(records)):
            reader.heatmap(i)
            reader.thumbnail(i)
            reader.frame(i)
    summary = summarize(path)
    return {"records": [[r["seq"], r["part_id"], r["verdict"], r["score"], r["time_ns"]] for r in records],
            "events": [[e["kind"], e["who"], e["new"]] for e in events], "unreadable": summary.unreadable}


def main(files: list[str]) -> None:
    for name in files:
        path = Path(name)
        print(json.dumps({"file": name, "outcome": "start"}), flush=True)
        try:
            out = {"file": name, "outcome": "ok", **read_all(path)}
        except AuditReadError as exc:
            out = {"file": name, "outcome": "audit_error", "message": str(exc)}
        except Exception as exc:  # reported to the test as a bug
            out = {"file": name, "outcome": "raw", "message": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
