"""A real MQTT broker (Debian's mosquitto) on a free loopback port, and a subscriber that collects."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.plant.opcua import hash_password
from tests.ports import free_port
from tests.station.conftest import text_cache_dir  # noqa: F401 - the station tests' fixture, for runs here

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Broker:
    """mosquitto with persistence (a restart keeps the subscriber's session and its queued messages)."""

    def __init__(self, folder: Path, extra: str = "") -> None:
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        # `user`: started as root, mosquitto would switch to user mosquitto and lose access to the test folder.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nuser {getpass.getuser()}\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\nmax_queued_messages 0\n"
                             f"{extra or 'allow_anonymous true'}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=(self.folder / "broker.log").open("ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        msg = f"mosquitto did not listen on {self.port}: {(self.folder / 'broker.log').read_text()}"
        raise AssertionError(msg)

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistent sessions and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (scripts/system-packages.txt; "
                    "`make system-packages` installs it)")
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(folder).start()
    yield b
    b.stop()


class Collector:
    """A persistent-session QoS 1 subscriber to ``inspector/#``: survives a broker restart without a gap."""

    def __init__(self, port: int, topic: str = "inspector/#") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, Any, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{port}",
                                  protocol=paho.MQTTv311, clean_session=False)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.topic = topic
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "collector could not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = message.payload
        with self._lock:
            self.messages.append((message.topic, payload, bool(message.retain)))

    def on(self, suffix: str) -> list[Any]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, suffix: str, count: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.on(suffix)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.on(suffix)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector(broker: Broker) -> Iterator[Collector]:
    c = Collector(broker.port)
    yield c
    c.close()


# ------------------------------------------------------------------ OPC UA: key pairs and users
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Server and client key pairs, generated once (RSA key generation takes a moment)."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder = tmp_path_factory.mktemp("pki")
    asyncio.run(setup_self_signed_certificate(folder / "client.pem", folder / "client.der", "urn:test:client",
                                              "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                              {"commonName": "test client"}))
    return folder


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    path.write_text(f"# user:password:role\nanna:{hash_password('eng1neer')}:engineer\nolaf:shift2:operator\n")
    return path
