"""``inspector plc-sim``: play the line PLC against a station and check every reply."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.plc.sim import SimReport

_logger = logging.getLogger(__name__)
MAX_LISTED = 20


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plc-sim",
        help="simulate the line PLC: send triggers over a serial port and check every reply",
        description="Sends N triggers at a fixed rate and checks one ACK and one result per part, matching part "
                    "ids and the deadline. Exit code 0 = every part answered correctly, 1 = mismatches, "
                    "2 = usage or port error. Use --demo to run against a built-in simulated station over a "
                    "virtual serial pair (no hardware, no station needed).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the PLC end: /dev/ttyUSB0, COM3, /tmp/plc (socat pty), "
                                      "socket://host:port; modbus-tcp: the station's tcp://HOST:PORT")
    where.add_argument("--demo", action="store_true",
                       help="run against a built-in simulated station on a virtual null-modem pair (POSIX)")
    parser.add_argument("--protocol", choices=("ascii", "modbus", "modbus-tcp"), default="ascii",
                        help="modbus = Modbus RTU (serial), modbus-tcp = Modbus TCP (default: %(default)s)")
    parser.add_argument("--parts", type=int, default=100, help="triggers to send (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="triggers per second; Modbus sends the next part only after the previous result "
                             "(default: %(default)s)")
    parser.add_argument("--timeout-ms", type=float, default=2500,
                        help="deadline trigger -> result; set it to the station's result_timeout_ms plus the "
                             "transmission time (default: %(default)s)")
    parser.add_argument("--baud", type=int, default=115200, help="default: %(default)s")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N", help="default: %(default)s")
    parser.add_argument("--unit-id", type=int, default=1, help="Modbus slave id of the station (default: 1)")
    parser.add_argument("--checksum", action="store_true", help="ASCII: send *HH checksums and require them back")
    parser.add_argument("--prefix", default="P", help="ASCII part-id prefix (default: %(default)s)")
    parser.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> None:
    problems = []
    if args.parts < 1:
        problems.append("--parts must be >= 1")
    if not 0 < args.rate <= 10_000:
        problems.append("--rate must be in (0, 10000] Hz")
    if args.timeout_ms <= 0:
        problems.append("--timeout-ms must be > 0")
    if not 1 <= args.unit_id <= 247:
        problems.append("--unit-id must be 1..247")
    if len(args.prefix) > 26 or not all(ch.isalnum() or ch in "_-" for ch in args.prefix):
        problems.append("--prefix must be at most 26 of A-Z a-z 0-9 _ -")
    if args.protocol == "modbus-tcp" and args.port is not None and not args.port.startswith("tcp://"):
        problems.append(f"--protocol modbus-tcp needs --port tcp://HOST:PORT (the station's address), got {args.port}")
    if args.protocol != "modbus-tcp" and args.port is not None and args.port.startswith("tcp://"):
        problems.append(f"--port {args.port} is a TCP address: add --protocol modbus-tcp")
    if problems:
        raise InspectorError("; ".join(problems))


def run(args: argparse.Namespace) -> int:
    _validate(args)
    console = Console()
    if args.demo:
        return _run_demo(args, console)
    return _simulate(args, args.port, console)


def _simulate(args: argparse.Namespace, port: str, console: Console) -> int:
    from inspector.plc.sim import AsciiPlcSimulator, ModbusPlcSimulator

    with console.status(f"{args.protocol} PLC on {escape(port)}: 0/{args.parts} triggers") as status:
        def progress(done: int) -> None:
            status.update(f"{args.protocol} PLC on {escape(port)}: {done}/{args.parts} triggers")

        if args.protocol == "ascii":
            sim = AsciiPlcSimulator(port, baudrate=args.baud, parity=args.parity, checksum=args.checksum,
                                    deadline_ms=args.timeout_ms, on_progress=progress)
            report = sim.run(args.parts, args.rate, prefix=args.prefix)
        else:
            sim_mb = ModbusPlcSimulator(port, baudrate=args.baud, parity=args.parity, unit_id=args.unit_id,
                                        deadline_ms=args.timeout_ms, on_progress=progress)
            report = sim_mb.run(args.parts, args.rate)
    if not report.parts and report.mismatches:
        raise InspectorError(report.mismatches[0])
    _print_report(report, console)
    return 0 if report.ok else 1


def _run_demo(args: argparse.Namespace, console: Console) -> int:
    from inspector.config.plc import PlcSpec
    from inspector.plc.factory import create_plc_link
    from inspector.plc.ptypair import VirtualNullModem
    from inspector.plc.simstation import SimulatedStation

    if args.protocol == "modbus-tcp":
        return _run_tcp_demo(args, console)
    with tempfile.TemporaryDirectory(prefix="plc-demo-") as tmp:
        station_end, plc_end = Path(tmp) / "station", Path(tmp) / "plc"
        try:
            modem = VirtualNullModem(station_end, plc_end).start()
        except (OSError, AttributeError) as exc:
            msg = f"--demo needs POSIX pseudo-terminals ({exc}); use socat or com0com and --port instead"
            raise InspectorError(msg) from exc
        spec = PlcSpec(protocol=args.protocol, port=str(station_end), baudrate=args.baud, parity=args.parity,
                       unit_id=args.unit_id, checksum="required" if args.checksum else "optional",
                       result_timeout_ms=max(10, int(args.timeout_ms) - 500))
        try:
            with SimulatedStation(lines=("demo",)) as station, create_plc_link(spec, station) as link:
                if not link.wait_for_state("connected", timeout=5):
                    msg = f"demo station did not open {station_end}: {link.detail}"
                    raise InspectorError(msg)
                console.print(f"[dim]demo: simulated station on {station_end}, PLC on {plc_end}[/dim]")
                return _simulate(args, str(plc_end), console)
        finally:
            modem.stop()


def _run_tcp_demo(args: argparse.Namespace, console: Console) -> int:
    """The simulated station as a Modbus TCP server on a free loopback port, the simulator as its master."""
    import socket

    from inspector.config.plc import PlcSpec
    from inspector.plc.factory import create_plc_link
    from inspector.plc.simstation import SimulatedStation

    with socket.socket() as probe:  # the kernel's pick of a free port; released before the server binds it
        probe.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    spec = PlcSpec(protocol="modbus-tcp", port=url, unit_id=args.unit_id,
                   result_timeout_ms=max(10, int(args.timeout_ms) - 500))
    with SimulatedStation(lines=("demo",)) as station, create_plc_link(spec, station) as link:
        if not link.wait_for_state("connected", timeout=5):
            msg = f"demo station did not listen on {url}: {link.detail}"
            raise InspectorError(msg)
        console.print(f"[dim]demo: simulated station listening on {url}[/dim]")
        return _simulate(args, url, console)


def _print_report(report: SimReport, console: Console) -> None:
    table = Table(title=f"plc-sim {report.protocol} on {escape(report.port)}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("triggers sent", str(len(report.parts)))
    for kind in ("OK", "NG", "FAULT", "TIMEOUT", "REFUSED", "MISSING"):
        table.add_row(kind, str(report.count(kind)))
    if report.latencies_ms:
        table.add_row("trigger -> result p50", f"{report.percentile(50):.2f} ms")
        table.add_row("trigger -> result p99", f"{report.percentile(99):.2f} ms")
        table.add_row("trigger -> result max", f"{max(report.latencies_ms):.2f} ms")
    table.add_row("elapsed", f"{report.elapsed_s:.2f} s")
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    if report.ok:
        console.print("[green]PASS[/green]: every trigger got one ACK and one result for the right part in time")
        return
    console.print(f"[red]FAIL[/red]: {len(report.mismatches)} mismatch(es)")
    for line in report.mismatches[:MAX_LISTED]:
        console.print(f"  {escape(line)}")
    if len(report.mismatches) > MAX_LISTED:
        console.print(f"  ... and {len(report.mismatches) - MAX_LISTED} more")
