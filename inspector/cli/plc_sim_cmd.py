"""``inspector plc-sim``: play the line PLC against a station and check every reply."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
                    "virtual serial pair (no hardware, no station needed), --station CONFIG to start the real "
                    "station on a virtual serial pair and drive it.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the PLC end: /dev/ttyUSB0, COM3, /tmp/plc (socat pty), "
                                      "socket://host:port; modbus-tcp: the station's tcp://HOST:PORT")
    where.add_argument("--demo", action="store_true",
                       help="run against a built-in simulated station on a virtual null-modem pair (POSIX)")
    where.add_argument("--station", type=Path, metavar="CONFIG",
                       help="start the real station (`inspector run --config CONFIG --trigger plc`) on one end of a "
                            "virtual null-modem pair (POSIX) and drive it from the other; stopped afterwards")
    parser.add_argument("--station-ready-s", type=float, default=300.0,
                        help="--station: how long to wait for the station to load its line and answer "
                             "(default: %(default)s)")
    parser.add_argument("--station-log-dir", type=Path, metavar="DIR",
                        help="--station: the station's audit log folder (default: run without a log)")
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
    if args.station is not None:
        return _run_station(args, console)
    return _simulate(args, args.port, console)


def _simulate(args: argparse.Namespace, port: str, console: Console, handshake_s: float = 10.0) -> int:
    from inspector.plc.sim import AsciiPlcSimulator, ModbusPlcSimulator

    with console.status(f"{args.protocol} PLC on {escape(port)}: 0/{args.parts} triggers") as status:
        def progress(done: int) -> None:
            status.update(f"{args.protocol} PLC on {escape(port)}: {done}/{args.parts} triggers")

        if args.protocol == "ascii":
            sim = AsciiPlcSimulator(port, baudrate=args.baud, parity=args.parity, checksum=args.checksum,
                                    deadline_ms=args.timeout_ms, handshake_s=handshake_s, on_progress=progress)
            report = sim.run(args.parts, args.rate, prefix=args.prefix)
        else:
            sim_mb = ModbusPlcSimulator(port, baudrate=args.baud, parity=args.parity, unit_id=args.unit_id,
                                        deadline_ms=args.timeout_ms, handshake_s=handshake_s, on_progress=progress)
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


def _run_station(args: argparse.Namespace, console: Console) -> int:
    """The real station (`inspector run --trigger plc`, its own process) on one end of a pty pair, the
    simulator on the other: the PLC side of `make demo`, end to end through the inspection engine."""
    import os
    import signal
    import subprocess
    import sys

    from inspector.plc.ptypair import VirtualNullModem

    if args.protocol == "modbus-tcp":
        msg = "--station drives the serial protocols (ascii, modbus); for modbus-tcp run the station with " \
              "--plc-protocol modbus-tcp and use --port tcp://HOST:PORT"
        raise InspectorError(msg)
    with tempfile.TemporaryDirectory(prefix="plc-station-") as tmp:
        station_end, plc_end = Path(tmp) / "station", Path(tmp) / "plc"
        try:
            modem = VirtualNullModem(station_end, plc_end).start()
        except (OSError, AttributeError) as exc:
            msg = f"--station needs POSIX pseudo-terminals ({exc}); use socat or com0com and --port instead"
            raise InspectorError(msg) from exc
        log = ["--log-dir", str(args.station_log_dir)] if args.station_log_dir else ["--no-log"]
        cmd = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main())", "run",
               "--config", str(args.station), "--headless", "--plain", "--trigger", "plc",
               "--plc-port", str(station_end), "--plc-protocol", args.protocol, *log]
        errors = Path(tmp) / "station.err"
        with errors.open("wb") as err_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=os.environ.copy())
        try:
            console.print(f"[dim]station: {args.station} on {station_end} ({args.protocol}); loading its line, "
                          f"then the PLC simulator on {plc_end}[/dim]")
            with console.status(f"station loading its line (up to {args.station_ready_s:g} s) ..."):
                _wait_until_opened(proc, station_end, args.station_ready_s, errors)
            code = _simulate(args, str(plc_end), console, handshake_s=10.0)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the station stops cleanly: answers queued parts, closes its log
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            modem.stop()
        tail = [line for line in errors.read_text(errors="replace").splitlines() if line.strip()]
        if proc.returncode not in (0, -signal.SIGTERM):
            console.print(f"[red]the station exited with code {proc.returncode}:[/red]")
            code = code or 1
        for line in tail[-4:]:
            console.print(f"[dim]station: {escape(line)}[/dim]")
        return code


def _wait_until_opened(proc: Any, port: Path, timeout: float, errors: Path) -> None:
    """Until the station process has ``port`` open (its line is loaded, its link started); InspectorError
    with the station's last words when it exits first or takes longer than ``timeout``."""
    import os
    import time

    target = os.path.realpath(port)
    fd_dir = Path(f"/proc/{proc.pid}/fd")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = [x for x in errors.read_text(errors="replace").splitlines() if x.strip()]
            msg = f"the station exited with code {proc.returncode} before opening {port}: " + " | ".join(lines[-3:])
            raise InspectorError(msg)
        if not fd_dir.is_dir():
            return  # no /proc (not Linux): the simulator's own handshake waits instead
        for fd in fd_dir.iterdir():
            try:
                if os.path.realpath(fd) == target:
                    return
            except OSError:
                continue
        time.sleep(0.2)
    msg = f"the station did not open {port} within {timeout:g} s (--station-ready-s)"
    raise InspectorError(msg)


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
