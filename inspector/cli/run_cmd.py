"""`inspector run --config FILE`: run the station (camera -> inspection -> PLC / audit log) with a dashboard."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inspector.cli.common import add_config_args
from inspector.errors import InspectorError
from inspector.files import FolderLock
from inspector.station.standby import station_fingerprint, station_lock, wait_writer_free


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the station: camera -> inspection -> PLC / audit log, with a live dashboard",
                       description="Run the inspection station until Ctrl-C (or --frames parts). Ctrl-C and "
                                   "SIGTERM stop cleanly: queued parts are answered, the log is closed.")
    add_config_args(p)
    p.add_argument("--headless", action="store_true",
                   help="terminal dashboard (the operator GUI is started by the gui package)")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N parts (default: run until stopped)")
    p.add_argument("--log-dir", type=Path, metavar="DIR", help="audit log folder (default: log.folder of the config)")
    p.add_argument("--no-log", action="store_true", help="run without the audit log")
    p.add_argument("--trigger", choices=["free_run", "software", "plc"],
                   help="trigger mode (default: trigger.mode of the config)")
    p.add_argument("--rate", type=float, metavar="HZ",
                   help="free-run / software trigger rate (default: trigger.rate_hz)")
    p.add_argument("--plc-port", metavar="PORT",
                   help="serial port of the PLC link, or tcp://HOST:PORT for modbus-tcp (default: plc.port)")
    p.add_argument("--plc-protocol", choices=["ascii", "modbus", "modbus-tcp"],
                   help="PLC protocol: ascii, modbus (RTU), modbus-tcp (default: plc.protocol)")
    p.add_argument("--mqtt", metavar="URL",
                   help="publish results, events and status to this MQTT broker: mqtt://HOST[:PORT] or "
                        "mqtts://HOST[:PORT] (default: outputs.mqtt of the config; docs/plant.md)")
    p.add_argument("--results-db", metavar="URL",
                   help="also write every inspection and event to this PostgreSQL database: "
                        "postgresql://USER@HOST[:PORT]/DB (default: outputs.database of the config; docs/history.md)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up after S seconds (exit 1 if --frames not reached)")
    p.add_argument("--standby", action="store_true",
                   help="warm standby: load the line now, wait while another station runs on the same log folder, "
                        "take over the moment it ends (kill, crash, stop); see docs/deployment.md")
    p.add_argument("--plain", action="store_true",
                   help="one line per part instead of the live dashboard (default when stdout is not a terminal)")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A service manager's SIGTERM stops the station like Ctrl-C (clean drain, files closed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _software_driver(loop: Any, rate_hz: float, count: int | None, stop: threading.Event) -> None:
    """`--trigger software`: trigger parts at a steady rate through the same path a PLC uses."""
    from inspector.plc.port import TriggerRejected

    period = 1.0 / rate_hz
    next_at = time.monotonic()
    sent = 0
    while not stop.is_set() and (count is None or sent < count):
        delay = next_at - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        next_at = max(next_at + period, time.monotonic() - period)
        try:
            loop.trigger()
            sent += 1
        except TriggerRejected:
            continue  # counted by the loop (E04 / E05); try again at the next tick


def _plc_spec(station: Any, args: argparse.Namespace) -> Any:
    """The config's plc section with --plc-port / --plc-protocol applied, validated like the YAML."""
    from inspector.config.plc import PlcSpec

    spec = station.plc or PlcSpec()
    updates = {k: v for k, v in (("port", args.plc_port), ("protocol", args.plc_protocol)) if v}
    try:  # model_copy would not check e.g. a serial port given for modbus-tcp
        return PlcSpec.model_validate({**spec.model_dump(), **updates})
    except ValueError as exc:
        msg = f"--plc-port / --plc-protocol: {exc}"
        raise InspectorError(msg) from exc


def _link_status(link: Any) -> str:
    if link is None:
        return "not started"
    state = getattr(link, "state", "?")
    return str(getattr(state, "value", state))


def _wait_as_standby(loop: Any, err: Any) -> tuple[FolderLock, str | None, str]:
    """Load every line of the station (the active one may change over while we wait), then wait for the lock.

    Returns the lock, whom it was taken from (None: nobody held it) and the fingerprint of what was loaded.
    """
    with err.status(f"standby: loading line {loop.line} ..."):
        loop.engines.get(loop.line)  # the line it would start on now: must load
    for name in loop.line_names():
        if name == loop.line:
            continue
        try:
            with err.status(f"standby: loading line {name} ..."):
                loop.engines.get(name)
        except Exception as exc:  # another line's problem must not keep the standby from covering this one
            err.print(f"[yellow]standby: line {name} could not be loaded ({exc}); a takeover onto it loads it then")
    loaded = station_fingerprint(loop.station)
    lock = station_lock(loop.log_folder)
    if lock.try_acquire():
        err.print("standby: no station is running on this log folder; starting now")
        return lock, None, loaded
    previous = lock.holder()
    ready = sum(1 for name in loop.line_names() if loop.engines.cached(name) is not None)
    err.print(f"standby ready: {ready} line(s) loaded; waiting to take over from the active station ({previous})")
    try:
        lock.acquire()
    except BaseException:
        lock.release()
        raise
    if not wait_writer_free(loop.log_folder):
        err.print("[yellow]standby: the audit writer lock is still held 5 s after the station ended")
    err.print(f"standby: the active station ({previous}) ended; taking over")
    return lock, previous, loaded


def _config_at_takeover(loop: Any, station: Any, loaded: str, make_loop: Any, path: Path,
                        err: Any) -> tuple[Any, Any, str]:
    """The loop a standby starts (and its config, and a note for the audit log): its loaded lines, or the
    config as it is now when it changed meanwhile.

    A config that became invalid while the standby waited does not take the line down: the standby runs
    what it loaded (the config the failed station ran, too) and says so.
    """
    from inspector.config import load_station_config

    if station_fingerprint(station) == loaded:  # the lines are loaded; start on the one the station ran when it died
        return make_loop(station, engines=loop.engines), station, ""
    err.print("standby: the config or the few-shot data changed while waiting; reloading")
    try:
        fresh = load_station_config(path)
    except InspectorError as exc:
        err.print(f"[red]standby: {exc}\n[red]running the config loaded when the standby started; fix the file "
                  "and restart the station to apply it")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        note = f"changed config refused ({first}); kept the loaded one"
        return make_loop(station, engines=loop.engines), station, note
    return make_loop(fresh), fresh, "config or few-shot data changed while waiting: reloaded"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from inspector.config import load_station_config
    from inspector.station.dashboard import UNTRAINED_BANNER, Dashboard, PlainReporter, summary_text
    from inspector.station.loop import StationLoop

    if args.frames is not None and args.frames < 1:
        msg = f"--frames must be at least 1, got {args.frames}"
        raise InspectorError(msg)
    if args.rate is not None and not 0 < args.rate <= 1000:
        msg = f"--rate must be in (0, 1000] Hz, got {args.rate}"
        raise InspectorError(msg)
    station = load_station_config(args.config)
    mode = args.trigger or station.trigger.mode
    if mode == "plc" and station.plc is None and not args.plc_port:
        msg = f"{args.config}: trigger mode plc needs a plc: section (port, protocol) or --plc-port PORT"
        raise InspectorError(msg)
    if mode == "plc":
        _plc_spec(station, args)  # a bad --plc-port / --plc-protocol is refused now, not after the line loaded
    err = Console(stderr=True, soft_wrap=True)  # one line per message in a service journal
    if not args.headless:
        err.print("[dim]the operator GUI is started by the gui package; showing the terminal dashboard")

    def make_loop(config: Any, engines: Any = None) -> StationLoop:
        # Without --line: the line this folder's last station ran (a restart or takeover resumes it).
        return StationLoop(config, line=args.line, log_dir=args.log_dir, log=False if args.no_log else None,
                           trigger_mode=mode, rate_hz=args.rate, max_parts=args.frames, engines=engines,
                           resume_line=args.line is None)

    loop = make_loop(station)  # its start() refuses a second station on the folder before loading anything
    lock: FolderLock | None = None  # a standby's, taken after its wait
    link: Any = None
    stop_driver = threading.Event()
    driver: threading.Thread | None = None
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    interrupted = False
    takeover: str | None = None
    note = ""
    with _sigterm_as_interrupt():
        try:
            if args.standby:
                lock, takeover, loaded = _wait_as_standby(loop, err)
                if takeover is not None:
                    deadline = None if args.timeout is None else time.monotonic() + args.timeout
                    loop, station, note = _config_at_takeover(loop, station, loaded, make_loop, args.config, err)
                loop.station_lock = lock
            extras: dict[str, Any] = {"PLC": lambda: _link_status(link)} if mode == "plc" else {}
            if args.mqtt or station.outputs.mqtt is not None:
                from inspector.station.outputs import attach_mqtt

                try:
                    mqtt = attach_mqtt(loop, station.outputs.mqtt, args.mqtt)
                    extras["MQTT"] = lambda: f"{mqtt.state.value} ({mqtt.stats().pending} waiting)"
                except ValueError as exc:  # a bad --mqtt url
                    msg = f"--mqtt: {exc}"
                    raise InspectorError(msg) from exc
            if station.outputs.opcua is not None:
                from inspector.station.outputs import attach_opcua

                opcua = attach_opcua(loop, station.outputs.opcua)
                extras["OPC UA"] = lambda: f"listening on {opcua.endpoint}"
                err.print(f"OPC UA server on {station.outputs.opcua.endpoint}")
            interactive = sys.stdout.isatty() and not args.plain
            view = Dashboard(loop, Console(), extras=extras) if interactive else PlainReporter(loop, sys.stdout)
            if args.results_db or station.outputs.database is not None:
                from inspector.station.outputs import attach_database

                try:
                    attach_database(loop, station.outputs.database, args.results_db)
                except ValueError as exc:  # a bad url, no log, an unreadable password file
                    msg = f"results database: {exc}"
                    raise InspectorError(msg) from exc
            with err.status(f"loading line {loop.line} ..."):
                loop.start()
            if takeover is not None:
                what = f"warm standby took over from {takeover}" + (f"; {note}" if note else "")
                loop.log_event("standby_takeover", "station", what, takeover, f"pid {os.getpid()}")
            if loop.stats().untrained:
                err.print(f"[yellow]note: {UNTRAINED_BANNER}")
            if mode == "plc":
                from inspector.plc.factory import create_plc_link

                link = create_plc_link(_plc_spec(station, args), loop)
                from inspector.station.sinks import ResultSink

                if isinstance(link, ResultSink):
                    loop.add_sink(link, name="plc")  # e.g. a register map that shows every verdict
                link.start()
            if mode == "software":
                rate = args.rate or station.trigger.rate_hz
                driver = threading.Thread(target=_software_driver, args=(loop, rate, args.frames, stop_driver),
                                          name="software-trigger", daemon=True)
                driver.start()
            view.run(lambda: loop.done() or (deadline is not None and time.monotonic() > deadline))
        except KeyboardInterrupt:
            interrupted = True
            err.print("stopping: answering queued parts and closing the log ...")
        finally:
            stop_driver.set()
            if driver is not None:
                driver.join(timeout=5)
            if link is not None:
                try:
                    link.stop()
                except Exception as exc:
                    err.print(f"[red]PLC link did not stop cleanly: {exc}")
            loop.stop()
            if lock is not None:
                lock.release()  # after the log is closed: a standby takes over from here
    stats = loop.stats()
    err.print(summary_text(stats))
    if args.frames is not None and stats.parts < args.frames and not interrupted:
        err.print(f"[red]only {stats.parts} of {args.frames} parts within --timeout {args.timeout:g} s "
                  f"(last state {stats.state.value}: {stats.detail})")
        return 1
    return 0
