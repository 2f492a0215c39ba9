"""`inspector calibrate --config FILE`: fit the line and write its threshold back to the YAML."""

from __future__ import annotations

import argparse
import datetime as dt

from inspector.cli.audit_log import add_audit_args, audited, who
from inspector.cli.common import add_config_args, load_inspector


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="compute the decision threshold from the few-shot set")
    add_config_args(p)
    p.add_argument("--method", choices=("false_reject", "f1", "cost"), help="default: the line's setting")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the config")
    prod = p.add_argument_group("threshold proposals from production (decision.recalibration)")
    prod.add_argument("--production", action="store_true",
                      help="show the station's latest production check of the live threshold (before -> after)")
    act = prod.add_mutually_exclusive_group()
    act.add_argument("--apply", action="store_true", help="with --production: make the pending proposal live")
    act.add_argument("--dismiss", metavar="REASON", help="with --production: keep the live threshold, say why")
    add_audit_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from inspector.config import update_line_in_file

    if args.production or args.apply or args.dismiss:
        return _production(args, console=Console())
    # Calibrate with the threshold free, whatever the file currently fixes.
    station, inspector = load_inspector(args)
    calib = inspector.calibrate(args.method)
    console = Console()
    console.print(f"line {inspector.line.name}: threshold {calib.threshold:.4f} by {calib.method} "
                  f"from {calib.n_good} good / {calib.n_defect} defect held-out scores")
    # How sure the threshold is: the expected false-reject interval for the good parts it saw.
    console.print(f"  expected false rejects on fresh good parts: {calib.describe()}")
    if calib.interval_method:
        console.print(f"  interval by {calib.interval_method}; more good parts narrow it")
    for key, value in calib.to_record().items():
        if key not in ("threshold", "false_reject_interval", "interval_level", "interval_method"):
            console.print(f"  {key}: {value}")
    if args.dry_run:
        return 0
    record = calib.to_record()
    record.update(
        computed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        backbone=inspector.backbone.identity.label(),
        fewshot_folder=str(inspector.line.fewshot.folder),
        fewshot_images=inspector.last_fit.files if inspector.last_fit else [],
    )
    old = station.line(inspector.line.name).decision.threshold
    new = round(float(calib.threshold), 6)
    with audited(station, args) as log:  # refused (nothing written) when the change cannot be recorded
        update_line_in_file(station.source, inspector.line.name,
                            {"decision.threshold": new, "decision.calibration.record": _plain(record)})
        log("calibration", who(args), f"line {inspector.line.name}: threshold calibrated ({calib.method}, "
            f"{calib.n_good} good / {calib.n_defect} defect) and written to {station.source.name}",
            {"decision.threshold": old}, {"decision.threshold": new, "method": calib.method})
        live = _record_threshold(station, args, inspector, calib, new, log)
    console.print(f"written to {station.source}; {live}")
    return 0


def _record_threshold(station, args: argparse.Namespace, inspector, calib, new: float, log) -> str:
    """The base heads' threshold record, through the station's one path (live unless a trained version runs)."""
    from inspector.cli.audit_log import log_folder
    from inspector.station.threshold import BASE, ThresholdBook, ThresholdRecord, set_live_threshold
    from inspector.training.registry import ModelRegistry

    folder = log_folder(station, args)
    deployed = ModelRegistry(station.resolve(station.model_dir), inspector.line.name).deployed()
    spec = inspector.line.decision.calibration
    interval = calib.false_reject_interval  # how sure the threshold is, where the method can say
    files = {f["file"]: f.get("sha256", "") for f in (inspector.last_fit.files if inspector.last_fit else [])}
    record = ThresholdRecord(new, calib.method, BASE, target=spec.target_false_reject if calib.method ==
                             "false_reject" else None, interval=tuple(interval) if interval else None,
                             files=files, who=who(args), why="inspector calibrate", config_value=new)
    set_live_threshold(inspector.line.name, record, book=ThresholdBook(folder) if folder else None, log_event=log,
                       live=deployed == BASE)
    return "live now" if deployed == BASE else f"recorded for the base heads; {deployed} stays live"


def _production(args: argparse.Namespace, console) -> int:
    """Show, apply or dismiss the station's production proposal for the line (the one threshold path)."""
    from inspector.station.handle import StationHandle

    handle = StationHandle(args.config, line=args.line, log_dir=args.log_dir, plc=False)
    try:
        proposal = handle.threshold_proposal()
        if proposal is None:
            console.print(f"line {handle.line}: no production check yet (the station checks every "
                          f"{handle.line_config().decision.recalibration.after_parts} parts)")
            return 1 if (args.apply or args.dismiss) else 0
        console.print(f"{proposal.when} ({proposal.status}) {proposal.describe()}", markup=False)
        console.print(f"  {proposal.ng} NG and {proposal.faults} FAULT parts in the span were not used; "
                      f"cutoff {proposal.cutoff:.4f} (live - margin)")
        if args.apply:
            record = handle.apply_threshold_proposal(who(args))
            console.print(f"applied: threshold {record.value:.4f} is live ({record.source()})")
        elif args.dismiss:
            handle.dismiss_threshold_proposal(who(args), args.dismiss)
            console.print(f"dismissed: {proposal.live:.4f} stays live")
        return 0
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    finally:
        handle.shutdown()


def _plain(value):
    """YAML-safe copy: numpy scalars -> float, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
