"""``inspector models list | promote VERSION | rollback``: a line's registered adapter versions.

These commands change ``models/<line>/deployed.json`` only; a running station follows it
(:class:`inspector.training.deploy.DeploymentWatcher`) and swaps between two frames. Promotions and
rollbacks are recorded in the station's audit log (who, when, old -> new; see inspector.cli.audit_log), and
the deployed version's threshold becomes the line's live one through the station's one path
(:mod:`inspector.station.threshold`: a ``threshold_change`` event; a rollback restores the earlier record).
"""

from __future__ import annotations

import argparse

from inspector.cli.audit_log import add_audit_args, audited, who
from inspector.cli.common import add_config_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, promote or roll back a line's trained adapter versions",
                       description="Registered adapter versions of a line (models/<line>/).")
    p.set_defaults(func=lambda _args: _usage(p))
    cmds = p.add_subparsers(dest="models_command", metavar="{list,promote,rollback}")

    p_list = cmds.add_parser("list", help="versions with their held-out metrics; * marks the deployed one")
    add_config_args(p_list)
    p_list.set_defaults(func=run_list)

    p_promote = cmds.add_parser("promote", help="deploy a version if the gate allows it")
    add_config_args(p_promote)
    p_promote.add_argument("version", metavar="VERSION", help="e.g. v3 (see `inspector models list`)")
    p_promote.add_argument("--force", action="store_true", help="deploy even if the gate refuses (logged)")
    p_promote.add_argument("--reason", default="", help="why (recorded with the promotion)")
    add_audit_args(p_promote)
    p_promote.set_defaults(func=run_promote)

    p_back = cmds.add_parser("rollback", help="deploy the version that was deployed before the current one")
    add_config_args(p_back)
    p_back.add_argument("--reason", default="", help="why (recorded with the rollback)")
    add_audit_args(p_back)
    p_back.set_defaults(func=run_rollback)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage()
    return 2


def _station_registry(args: argparse.Namespace):
    from inspector.config import load_station_config
    from inspector.errors import InspectorError
    from inspector.training.registry import ModelRegistry

    station = load_station_config(args.config)
    try:
        line = station.line(args.line)
    except KeyError as exc:
        raise InspectorError(str(exc.args[0])) from None
    return station, ModelRegistry(station.resolve(station.model_dir), line.name)


def _registry(args: argparse.Namespace):
    return _station_registry(args)[1]


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    registry = _registry(args)
    deployed = registry.deployed()
    console = Console()
    versions = registry.versions()
    if not versions:
        console.print(f"line {registry.line}: no trained versions yet (deployed: {deployed}). "
                      f"Train one with `inspector train --config {args.config}`.", highlight=False)
        return 0
    table = Table(title=f"line {registry.line} (registry {registry.folder}); deployed: {deployed}")
    for col in ("", "version", "created", "heads", "AUROC", "F1", "false reject", "escape", "gate"):
        table.add_column(col, justify="right" if col in ("AUROC", "F1", "false reject", "escape") else "left")
    for v in versions:
        new = v.metrics.get("new", {})
        gate = v.metrics.get("gate", {})
        verdict = ("passed" if gate.get("passed") else "refused") + f" vs {gate.get('compared_to', '?')}"
        table.add_row("*" if v.version == deployed else "", v.version, v.created.replace("T", " ")[:19],
                      ",".join(v.card.get("heads", [])), f"{new.get('auroc', float('nan')):.3f}",
                      f"{new.get('f1', float('nan')):.3f}", f"{100 * new.get('false_reject_rate', float('nan')):.1f} %",
                      f"{100 * new.get('escape_rate', float('nan')):.1f} %", verdict)
    console.print(table)
    _print_live(console, args)
    return 0


def _print_live(console, args: argparse.Namespace) -> None:
    """The line's live threshold record (the station's book) beside the YAML's hand-written base value."""
    from inspector.cli.audit_log import log_folder
    from inspector.station.threshold import ThresholdBook

    station, registry = _station_registry(args)
    folder = log_folder(station, args)
    record = ThresholdBook(folder).live(registry.line) if folder is not None else None
    fixed = station.line(registry.line).decision.threshold
    live = f"{record.value:.4f} ({record.version}): {record.source()}" if record else "not recorded yet"
    console.print(f"live threshold {live}; config decision.threshold (base heads): "
                  f"{fixed if fixed is not None else 'not set'}", highlight=False)


def run_promote(args: argparse.Namespace) -> int:
    from rich.console import Console

    station, registry = _station_registry(args)
    info = registry.get(args.version)
    deployed = registry.deployed()
    console = Console()
    if info.version == deployed:
        console.print(f"line {registry.line}: {info.version} is already deployed", highlight=False)
        return 0
    gate = info.metrics.get("gate") or {}
    compared_to = gate.get("compared_to")
    reasons = list(gate.get("reasons") or [])
    if compared_to != deployed:
        # Its metrics were measured next to another model: no same-data comparison with this one exists.
        reasons = [f"{info.version} was validated against {compared_to}, but {deployed} is deployed now; retrain "
                   f"(`inspector train`) to compare with {deployed} on the same images"]
    passed = bool(gate.get("passed")) and compared_to == deployed
    if not passed and not args.force:
        console.print(f"[red]gate refuses {info.version}:[/] " + "; ".join(reasons), highlight=False)
        console.print("use --force --reason TEXT to deploy it anyway (logged)", highlight=False)
        return 1
    with audited(station, args, via_station=True) as record:  # a running station follows the registry
        old = registry.promote(info.version, who=who(args), forced=not passed, reason=args.reason,
                               gate={**gate, "passed": passed, "reasons": reasons}, audit=record)
        live = _deploy_threshold(station, args, registry, info.version, record, f"model {old} -> {info.version} "
                                 f"promoted{': ' + args.reason if args.reason else ''}")
    console.print(f"line {registry.line}: {old} -> {info.version}{' (FORCED)' if not passed else ''}",
                  highlight=False)
    _print_threshold(console, live)
    return 0


def _deploy_threshold(station, args: argparse.Namespace, registry, version: str, record, why: str):
    """The deployed version's threshold becomes live through the station's one path (station/threshold.py)."""
    from inspector.cli.audit_log import log_folder
    from inspector.station.threshold import ThresholdBook, deploy_threshold

    folder = log_folder(station, args)
    return deploy_threshold(station.line(registry.line), registry, version,
                            book=ThresholdBook(folder) if folder is not None else None, log_event=record,
                            who=who(args), why=why)


def _print_threshold(console, record) -> None:
    if record is None:
        console.print("live threshold: the base heads' own calibration, set when the station starts", highlight=False)
    else:
        console.print(f"live threshold {record.value:.4f} ({record.version}): {record.source()}", highlight=False)


def run_rollback(args: argparse.Namespace) -> int:
    from rich.console import Console

    station, registry = _station_registry(args)
    with audited(station, args, via_station=True) as record:  # a running station follows the registry
        old, new = registry.rollback(who=who(args), reason=args.reason, audit=record)
        live = _deploy_threshold(station, args, registry, new, record, f"model {old} rolled back to {new}"
                                 f"{': ' + args.reason if args.reason else ''}")
    console = Console()
    console.print(f"line {registry.line}: rolled back {old} -> {new}", highlight=False)
    _print_threshold(console, live)
    return 0
