"""`inspector log summary|export|seal|query|bundle`: read the station's HDF5 audit log and its index."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("log", help="audit log: summary, CSV / image export, seal after a crash")
    cmds = p.add_subparsers(dest="log_command", metavar="ACTION", required=True)

    s = cmds.add_parser("summary", help="counts, yield, time range, models, events of a log file or folder")
    s.add_argument("path", type=Path, metavar="FILE", help="audit file (*.h5) or a folder of them")
    s.add_argument("--events", type=int, default=10, metavar="N", help="show the last N events (default: 10)")
    s.set_defaults(func=summary)

    e = cmds.add_parser("export", help="export inspections to CSV (and images)")
    e.add_argument("path", type=Path, metavar="FILE", help="audit file (*.h5) or a folder of them")
    e.add_argument("--csv", type=Path, metavar="OUT", help="CSV file to write (one row per inspection)")
    e.add_argument("--images", type=Path, metavar="DIR", help="also write thumbnails / stored frames to DIR")
    e.add_argument("--all-images", action="store_true", help="with --images: every part, not only NG")
    e.set_defaults(func=export)

    c = cmds.add_parser("seal", help="make files left open by a crashed station readable by any HDF5 tool")
    c.add_argument("path", type=Path, metavar="FILE", help="audit file or folder (the station must not be running)")
    c.set_defaults(func=seal)

    q = cmds.add_parser("query", help="find inspections through the folder's index (part, time, line, verdict, ...)")
    q.add_argument("path", type=Path, metavar="FOLDER", help="the station's log folder")
    q.add_argument("--part", help="part id (exact)")
    q.add_argument("--from", dest="start", metavar="TIME", help="from this time (ISO 8601; local time unless it "
                   "has a zone, e.g. 2026-05-28T08:00 or 2026-05-28T06:00Z)")
    q.add_argument("--to", dest="end", metavar="TIME", help="until this time (exclusive; same format)")
    q.add_argument("--last", metavar="SPAN", help="the last SPAN: 90s, 15m, 8h, 7d (instead of --from)")
    q.add_argument("--line", help="product line")
    q.add_argument("--verdict", choices=("OK", "NG", "FAULT"), help="FAULT: parts that could not be inspected")
    q.add_argument("--defect", help="defect class, e.g. scratch")
    q.add_argument("--model-version", help="model version, e.g. base or v3")
    q.add_argument("--limit", type=int, default=100, metavar="N", help="at most N rows, newest first (0 = all)")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--out", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    q.add_argument("--events", action="store_true", help="list the events of the time range instead")
    q.set_defaults(func=query)

    b = cmds.add_parser("bundle", help="export a time range to a self-contained HDF5 + CSV bundle with checksums")
    b.add_argument("path", type=Path, metavar="FOLDER", help="the station's log folder")
    b.add_argument("--from", dest="start", metavar="TIME", help="from this time (ISO 8601, as for query)")
    b.add_argument("--to", dest="end", metavar="TIME", help="until this time (exclusive)")
    b.add_argument("--last", metavar="SPAN", help="the last SPAN: 15m, 8h, 7d (instead of --from)")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="new folder for the bundle")
    b.set_defaults(func=bundle)


def summary(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from inspector.audit.reader import AuditReader, resolve_files, summarize

    s = summarize(args.path)
    console = Console()
    table = Table(title=f"audit log {args.path}", show_header=False)
    table.add_column(style="dim")
    table.add_column()
    yield_txt = f"{s.yield_pct:.2f} %" if s.yield_pct is not None else "-"
    rows = [
        ("files", f"{len(s.files)}" + (f" ({len(s.open_files)} open / not sealed)" if s.open_files else "")),
        ("inspections", f"{s.records}: {s.ok} OK, {s.ng} NG, {s.faults} FAULT"),
        ("yield", yield_txt),
        ("seq", f"{s.first_seq}..{s.last_seq}" + (f"  [red]{s.missing_seqs} missing" if s.missing_seqs else "")
         if s.first_seq is not None else "-"),
        ("time (UTC)", f"{s.first_time} .. {s.last_time}" if s.first_time else "-"),
        ("lines", ", ".join(f"{k}: {v}" for k, v in s.lines.items()) or "-"),
        ("defects", ", ".join(f"{k}: {v}" for k, v in s.defects.items()) or "-"),
        ("models", ", ".join(f"{k}: {v}" for k, v in s.models.items()) or "-"),
        ("latency", " / ".join(f"{k} {v:.0f} ms" for k, v in s.latency_ms.items()) or "-"),
        ("events", ", ".join(f"{k}: {v}" for k, v in s.events.items()) or "-"),
    ]
    if s.unreadable:
        rows.append(("unreadable", "[red]" + ", ".join(s.unreadable)))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if args.events > 0:
        events = []
        for file in resolve_files(args.path):
            if str(file) in s.unreadable:
                continue
            with AuditReader(file) as reader:
                events += reader.events()
        if events:
            ev_table = Table(title=f"last {min(args.events, len(events))} events")
            for col, width in (("time (UTC)", 24), ("kind", 16), ("who", 12), ("what", 40), ("old -> new", 60)):
                ev_table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=width)
            for ev in events[-args.events:]:
                change = f"{ev['old'] or '-'} -> {ev['new']}" if ev["old"] or ev["new"] else ""
                ev_table.add_row(ev["timestamp"], ev["kind"], ev["who"], ev["what"], change)
            console.print(ev_table)
    return 0


def export(args: argparse.Namespace) -> int:
    from inspector.audit.export import export_csv, export_images
    from inspector.errors import InspectorError

    if args.csv is None and args.images is None:
        msg = "nothing to export: give --csv OUT and/or --images DIR"
        raise InspectorError(msg)
    if args.csv is not None:
        n = export_csv(args.path, args.csv)
        print(f"{n} inspections written to {args.csv}")
    if args.images is not None:
        n = export_images(args.path, args.images, "all" if args.all_images else "ng")
        print(f"{n} images written to {args.images}/")
    return 0


def seal(args: argparse.Namespace) -> int:
    from inspector.audit.h5log import claim_writer_lock, log_files
    from inspector.audit.reader import resolve_files
    from inspector.audit.recovery import seal as seal_file

    path = Path(args.path)
    files = resolve_files(path)
    # Holding the writer's folder lock proves no station is writing these files.
    lock = claim_writer_lock(path if path.is_dir() else path.parent)
    try:
        sealed = [f for f in (log_files(path) if path.is_dir() else files) if seal_file(f)]
    finally:
        lock.release()
    for f in sealed:
        print(f"sealed {f}")
    if not sealed:
        print("nothing to seal: every file was closed cleanly")
    return 0


def query(args: argparse.Namespace) -> int:
    from inspector.audit.catalog import open_index
    from inspector.audit.query import build_query, format_rows

    flt = build_query(part_id=args.part, start=args.start, end=args.end, last=args.last, line=args.line,
                      status=args.verdict, defect=args.defect, model_version=args.model_version)
    with open_index(args.path) as index:
        if args.events:
            rows = index.events(flt.start_ns, flt.end_ns if args.end else None)
            columns = ("time", "kind", "who", "what", "old", "new", "file", "row")
        else:
            rows = index.query(flt, limit=args.limit or None)
            columns = ("time", "seq", "part_id", "line", "status", "score", "threshold", "defect", "model_version",
                       "file", "row")
    text = format_rows(rows, columns, args.format)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"{len(rows)} row(s) written to {args.out}")
    else:
        print(text, end="")
    return 0


def bundle(args: argparse.Namespace) -> int:
    from inspector.audit.bundle import export_bundle
    from inspector.audit.query import build_query

    flt = build_query(start=args.start, end=args.end, last=args.last)
    made = export_bundle(args.path, args.out, flt.start_ns, flt.end_ns)
    print(f"{made.records} inspection(s), {made.events} event(s) -> {made.folder}/ ({', '.join(made.files)}, "
          "SHA256SUMS)")
    return 0
