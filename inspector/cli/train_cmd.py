"""``inspector train --config FILE [--line NAME] [--max-epochs N]``: retrain a line's adapter.

Reads the line's few-shot folder, trains the heads on cached backbone features, validates on
held-out images, registers the version under ``models/<line>/`` and deploys it when the gate
passes. Ctrl-C cancels cleanly (nothing is registered); a second Ctrl-C aborts at once.
Exit codes: 0 trained (and deployed if asked), 1 the gate refused / training diverged, 2 user
error, 130 cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from inspector.cli.audit_log import add_audit_args, check_writable, recorder, who
from inspector.cli.common import add_config_args

if TYPE_CHECKING:
    from rich.console import Console

    from inspector.training.pipeline import TrainingReport
    from inspector.training.progress import CancelToken, TrainingEvent


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="retrain the line's adapter from its few-shot folder, validate, register, deploy",
        description="Retrain the line's adapter heads on its few-shot images (training: section of the line). "
                    "The new version is registered under models/<line>/ and deployed only if it is not worse "
                    "than the deployed one on the same held-out images.")
    add_config_args(p)
    p.add_argument("--max-epochs", type=int, metavar="N", help="override training.max_epochs")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--promote", dest="promote", action="store_true", default=None,
                       help="deploy the new version if the gate passes (default: training.auto_promote)")
    group.add_argument("--no-promote", dest="promote", action="store_false", help="register only")
    p.add_argument("--force", action="store_true", help="deploy even if the gate refuses (logged, with --reason)")
    p.add_argument("--reason", default="", help="why (recorded with the promotion)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    add_audit_args(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def _ctrl_c_cancels(token: CancelToken, console: Console) -> Iterator[None]:
    """First Ctrl-C cancels the run at its next check; the second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        console.print("[yellow]cancelling after the current step (Ctrl-C again to abort now) ...")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _RichProgress:
    """Observer that shows the run's stages as rich progress bars."""

    def __init__(self, console: Console, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console,
                                 disable=not enabled, transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: TrainingEvent) -> None:
        if event.stage == "train" and event.head:
            fold = f" fold {event.fold + 1}" if event.fold is not None else ""
            name = f"train {event.head}{fold}"
            note = " ".join(f"{k}={v:.3f}" for k, v in event.metrics.items())
        elif event.stage in ("encode", "synthesize"):
            name, note = event.stage, ""
        else:
            if not self.enabled or event.stage in ("load", "gate", "register", "promote", "done"):
                self.console.print(f"[dim]{event.stage}:[/] {event.message}", highlight=False)
            return
        if not self.enabled:
            if event.done == event.total or event.stage != "train":
                self.console.print(f"[dim]{event.stage}:[/] {event.message}", highlight=False)
            return
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.progress.add_task(name, total=event.total or None, note="")
        self.progress.update(task, completed=event.done, total=event.total or None, note=note)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from inspector.config import load_station_config
    from inspector.errors import InspectorError
    from inspector.training.errors import TrainingCancelledError, TrainingDivergedError
    from inspector.training.pipeline import train_line
    from inspector.training.progress import CancelToken

    station = load_station_config(args.config)
    try:
        line = station.line(args.line)
    except KeyError as exc:
        raise InspectorError(str(exc.args[0])) from None
    console = Console(stderr=True)
    token = CancelToken()
    if (line.training.auto_promote if args.promote is None else args.promote) or args.force:
        check_writable(station, args)  # a promotion at the end must be recorded: find out before training
    try:
        with _ctrl_c_cancels(token, console), _RichProgress(console, not args.no_progress) as bar:
            report = train_line(station, line.name, observers=[bar], cancel=token, max_epochs=args.max_epochs,
                                promote=args.promote, force=args.force, reason=args.reason, who=who(args),
                                audit=recorder(station, args))
    except TrainingCancelledError as exc:
        console.print(f"[yellow]{exc}")
        return 130
    except TrainingDivergedError as exc:
        console.print(f"[red]{exc}")
        return 1
    _print_report(report, Console())
    wanted = line.training.auto_promote if args.promote is None else args.promote
    refused = report.decision is not None and not report.decision.passed
    return 1 if wanted and refused and not report.promoted else 0


def _print_report(report: TrainingReport, console: Console) -> None:
    from rich.table import Table

    m = report.metrics
    v = m["validation"]
    judging = v.get("judging_defects") or {}
    methods = "/".join(judging.get("judge_methods", []))
    table = Table(title=f"line {report.line}: judged on {v['folds']} outer fold(s) ({v['mode']}, {v['n_good']} good / "
                        f"{v['n_defect']} defect)")
    for col in ("model", "AUROC", "F1", "false reject", "escape", "threshold"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = [("base heads", m["base"])]
    if m.get("deployed"):
        rows.append((f"deployed {m['deployed']['version']}", m["deployed"]))
    rows.append((f"new {report.version}", m["new"]))
    for name, r in rows:
        table.add_row(name, f"{r['auroc']:.3f}", f"{r['f1']:.3f}", f"{100 * r['false_reject_rate']:.1f} %",
                      f"{100 * r['escape_rate']:.1f} %", f"{r['threshold']:.3f}")
    console.print(table)
    console.print("the judging images chose nothing: epochs, head weights, standardisation and each threshold were "
                  "set on inner data" + (f"; synthetic judging defects ({judging.get('policy', '')}: {methods})"
                                         if v["synthetic_defects"] else ""), highlight=False)
    for reason in report.skipped:
        console.print(f"[yellow]skipped: {reason}", highlight=False)
    for note in (v.get("nesting") or {}).get("notes", []) + list(m.get("weight_notes") or []):
        console.print(f"[yellow]note: {note}", highlight=False)
    console.print(report.summary, highlight=False)
    if report.path is not None:
        console.print(f"version folder: {report.path}", highlight=False)
    total = report.timings.get("total")
    if total is not None:
        console.print(f"took {total:.1f} s ({report.cache.get('hits', 0):.0f} views cached, "
                      f"{report.cache.get('encoded', 0):.0f} encoded)", highlight=False)
