"""Plant-network links: Modbus TCP against Modbus RTU, and the MQTT sink on / off, in one run.

One real station (the demo line, backbone swapped for a small registered architecture by default:
this measures the links, not the backbone; ``--model ViT-B-16`` keeps the demo's) with its audit log
on, driven by the PLC simulator as a real PLC would:

1. **Modbus TCP vs RTU**: both servers serve the same station at once (RTU on a pty pair, TCP on
   loopback); the simulator alternates rounds on each. Figure: trigger -> result as the PLC sees it
   (coil write to register 102 moving, incl. its polling round trips). The simulator runs in its own
   process, as a PLC would: polling flat out from the station's process would compete for its GIL.
2. **MQTT off / on (broker up) / on (broker down)**: station runs driven over Modbus TCP, the three
   modes interleaved in rounds; the sink publishes every logged part to a real mosquitto started here
   ("down": a broker address nobody listens on, so every message waits in the outbox).
   Figures: the PLC's trigger -> result latency and the station's own trigger -> verdict time.

    .venv/bin/python benchmarks/plant_latency.py                  # writes benchmarks/results/plant_latency.md
    .venv/bin/python benchmarks/plant_latency.py --parts 400 --out -
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._reliability import (  # noqa: E402
    DEMO_CONFIG,
    SMALL_MODEL,
    command_line,
    cpu_name,
    describe_model,
    percentiles,
    station_dict,
)
from inspector.config.plc import PlcSpec  # noqa: E402
from inspector.config.station import StationConfig  # noqa: E402
from inspector.plc.base import LinkState  # noqa: E402
from inspector.plc.factory import create_plc_link  # noqa: E402
from inspector.plc.ptypair import VirtualNullModem  # noqa: E402
from inspector.plc.sim import ModbusPlcSimulator  # noqa: E402
from inspector.plc.simstation import SimulatedStation  # noqa: E402
from inspector.station.loop import StationLoop  # noqa: E402

ROUNDS = 4


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999), so no client connection of
    this machine is handed the same number between this check and the server's (re)bind."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    msg = "no free port in 20000-32000"
    raise RuntimeError(msg)


def make_station(args: argparse.Namespace, folder: Path) -> tuple[StationConfig, str]:
    data = station_dict(DEMO_CONFIG, model=None if args.model == "demo" else args.model)
    data["trigger"] = {**data.get("trigger", {}), "mode": "plc", "queue_size": 8}
    data["log"] = {**data.get("log", {}), "folder": str(folder / "logs")}
    data.pop("source", None)
    return StationConfig.model_validate(data), describe_model(data)


POLL_S = 0.002  # the PLC's result poll period (a 2 ms cycle): flat-out polling would load the station's I/O loop


def _simulate(url: str, parts: int, first_id: int, poll_s: float) -> tuple[list[float], list[str]]:
    report = ModbusPlcSimulator(url, unit_id=1, deadline_ms=5000, handshake_s=10, poll_s=poll_s).run(
        parts, 1000.0, first_id)
    return report.latencies_ms, report.mismatches


_PLC: Any = None  # the PLC's own process: polling flat out in the station's process would steal its GIL


def drive(url: str, parts: int, first_id: int, poll_s: float = POLL_S) -> list[float]:
    global _PLC
    if _PLC is None:
        _PLC = multiprocessing.get_context("spawn").Pool(1)
    latencies, mismatches = _PLC.apply(_simulate, (url, parts, first_id, poll_s))
    if mismatches:
        raise SystemExit(f"{url}: {mismatches[:3]}")
    return latencies


def bench_transports(station: StationConfig | None, parts: int, folder: Path) -> dict[str, list[float]]:
    """RTU and TCP serving one station (None: a simulated one answering in 1 ms, i.e. the links' own cost,
    polled back to back); the simulator alternates rounds between them."""
    out: dict[str, list[float]] = {"rtu": [], "tcp": []}
    tcp_url = f"tcp://127.0.0.1:{free_port()}"
    poll_s = 0.0 if station is None else POLL_S
    with contextlib.ExitStack() as stack:
        modem = stack.enter_context(VirtualNullModem(folder / "station", folder / "plc"))
        if station is None:
            loop: Any = stack.enter_context(SimulatedStation(latency_s=0.001))
        else:
            loop = stack.enter_context(StationLoop(station, log_dir=folder / "logs-transport", trigger_mode="plc"))
        rtu = create_plc_link(PlcSpec(protocol="modbus", port=str(modem.a.path), plc_silence_s=0), loop)
        tcp = create_plc_link(PlcSpec(protocol="modbus-tcp", port=tcp_url, plc_silence_s=0), loop)
        with rtu, tcp:
            for link in (rtu, tcp):
                if not link.wait_for_state(LinkState.CONNECTED, timeout=10):
                    raise SystemExit(f"{link.name}: {link.detail}")
            drive(tcp_url, 20, 60000, poll_s)  # warm-up (first inspections, allocator)
            per_round = max(1, parts // ROUNDS)
            for r in range(ROUNDS):
                out["rtu"] += drive(str(modem.b.path), per_round, 1 + 2 * r * per_round, poll_s)
                out["tcp"] += drive(tcp_url, per_round, 1 + (2 * r + 1) * per_round, poll_s)
    return out


class Broker:
    def __init__(self, folder: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise SystemExit("mosquitto is not installed: apt-get install mosquitto (scripts/system-packages.txt)")
        import getpass

        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nuser {getpass.getuser()}\nallow_anonymous true\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def bench_mqtt(station: StationConfig, parts: int, folder: Path, mode: str, broker: Broker) -> dict[str, Any]:
    from inspector.config.plant import MqttSpec
    from inspector.station.outputs import attach_mqtt

    tcp_url = f"tcp://127.0.0.1:{free_port()}"
    loop = StationLoop(station, log_dir=folder / f"logs-{mode}", trigger_mode="plc")
    publisher = None
    if mode != "off":
        url = f"mqtt://127.0.0.1:{broker.port if mode == 'on' else free_port()}"  # down: nobody listens there
        publisher = attach_mqtt(loop, MqttSpec(url=url))
    verdict_ms: list[float] = []
    loop.add_observer(lambda sr: verdict_ms.append(sr.timings_ms["total"]), name="timings", queue_size=4096)
    with loop, create_plc_link(PlcSpec(protocol="modbus-tcp", port=tcp_url, plc_silence_s=0), loop) as link:
        if not link.wait_for_state(LinkState.CONNECTED, timeout=10):
            raise SystemExit(link.detail)
        drive(tcp_url, 10, 60000)  # warm-up, not counted
        skip = 10
        plc = drive(tcp_url, parts, 1)
        time.sleep(0.5)
        stats = publisher.stats() if publisher is not None else None
        sinks = {s.name: s for s in loop.stats().sinks}
    result = {"plc": plc, "verdict": verdict_ms[skip:], "mqtt": stats,
              "sink_ms": sinks["mqtt"].busy_ms_mean if "mqtt" in sinks else None}
    return result


def row(name: str, values: list[float]) -> str:
    p = percentiles(values)
    return f"| {name} | {len(values)} | {p.get('p50', 0):.2f} | {p.get('p95', 0):.2f} | {p.get('p99', 0):.2f} | " \
           f"{p.get('max', 0):.2f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=200, help="parts per measured series (default: %(default)s)")
    parser.add_argument("--model", default=SMALL_MODEL, help="backbone, or 'demo' for the demo line's own")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plant_latency.md"),
                        help="report file, or - for stdout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plant-bench-") as tmp:
        folder = Path(tmp)
        station, model = make_station(args, folder)
        (folder / "links").mkdir()
        links = bench_transports(None, args.parts, folder / "links")
        transports = bench_transports(station, args.parts, folder)
        broker = Broker(folder)
        try:
            # Rounds interleave the modes, so a background load that comes and goes hits all three alike.
            mqtt: dict[str, dict[str, Any]] = {}
            per_round = max(1, args.parts // ROUNDS)
            for r in range(ROUNDS):
                for mode in ("off", "on", "down"):
                    got = bench_mqtt(station, per_round, folder / f"round{r}", mode, broker)
                    into = mqtt.setdefault(mode, {"plc": [], "verdict": [], "sink_ms": [], "mqtt": None})
                    into["plc"] += got["plc"]
                    into["verdict"] += got["verdict"]
                    into["sink_ms"].append(got["sink_ms"])
                    into["mqtt"] = got["mqtt"]
        finally:
            broker.stop()
            if _PLC is not None:
                _PLC.terminate()
    lines = [
        "# Plant links: Modbus TCP vs RTU, MQTT sink on / off",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, Python {platform.python_version()}; "
        f"station: {model}, audit log on. Command: `{command_line()}`",
        "",
        "## Trigger -> result as the PLC sees it (ms), RTU and TCP serving one station, alternating rounds",
        "",
        "| station | link | parts | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
        row("simulated, 1 ms (the links' own cost), polled back to back | Modbus RTU (pty pair)", links["rtu"]),
        row("simulated, 1 ms (the links' own cost), polled back to back | Modbus TCP (loopback)", links["tcp"]),
        row(f"real (audit log on), polled every {POLL_S * 1000:g} ms | Modbus RTU (pty pair)", transports["rtu"]),
        row(f"real (audit log on), polled every {POLL_S * 1000:g} ms | Modbus TCP (loopback)", transports["tcp"]),
        "",
        f"## MQTT sink: per-part latency (ms), station runs over Modbus TCP, modes interleaved in {ROUNDS} rounds",
        "",
        "| MQTT | series | parts | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, label in (("off", "off"), ("on", "on, broker up"), ("down", "on, broker down")):
        r = mqtt[mode]
        lines.append(row(f"{label} | PLC trigger -> result", r["plc"]).replace("| ", "| ", 1))
        lines.append(row(f"{label} | station trigger -> verdict", r["verdict"]))
    lines.append("")
    for mode in ("on", "down"):
        s = mqtt[mode]["mqtt"]
        sink_ms = sum(mqtt[mode]["sink_ms"]) / len(mqtt[mode]["sink_ms"])
        lines.append(f"- MQTT {mode}: sink thread {sink_ms:.3f} ms per item (SQLite append), off the inspection path; "
                     f"last round: acked {s.acked}, pending on disk {s.pending}, state {s.state.value}")
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
