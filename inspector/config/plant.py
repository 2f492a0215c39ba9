"""Station-config section ``outputs``: the plant-network outputs (MQTT results, the OPC UA server).

Example (station YAML)::

    outputs:
      mqtt:
        url: mqtts://broker.plant.local:8883    # mqtt://HOST[:1883] or mqtts://HOST[:8883]
        username: station-07
        password_file: secrets/mqtt.pw          # first line = the password (relative to this file)
        ca_file: secrets/plant-ca.pem           # mqtts: the CA that signed the broker's certificate
        cert_file: secrets/station-07.pem       # optional client certificate (+ key_file)
        key_file: secrets/station-07.key
      opcua:
        endpoint: opc.tcp://0.0.0.0:4840
        users_file: secrets/opcua-users.txt     # "user:password:role" lines, role = operator | engineer
        security: [SignAndEncrypt]              # Basic256Sha256; add None only on an isolated network
        trusted_clients: secrets/opcua-clients  # only these client certificates (.der / .pem) may connect

Both are off when absent. Paths are relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from inspector.config.base import StrictModel
from inspector.config.database import DatabaseSpec

MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
TOPIC_RE = r"^[A-Za-z0-9_./-]+$"


def parse_mqtt_url(url: str) -> tuple[bool, str, int]:
    """``mqtt://HOST[:PORT]`` / ``mqtts://HOST[:PORT]`` -> (tls, host, port); ValueError naming the form."""
    hint = f"the MQTT broker is mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS), got {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"{hint}: {exc}"
        raise ValueError(msg) from exc
    if parts.scheme not in MQTT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(hint)
    if parts.username or parts.password:
        msg = f"{hint}: put the user in outputs.mqtt.username and the password in a password_file, not in the URL"
        raise ValueError(msg)
    return parts.scheme == "mqtts", parts.hostname, port or MQTT_PORTS[parts.scheme]


class MqttSpec(StrictModel):
    """Result publishing to an MQTT broker (one JSON message per part, QoS 1, on-disk queue while it is down)."""

    url: str  # mqtt://HOST[:1883] or mqtts://HOST[:8883]
    username: str | None = None
    password_file: Path | None = None  # first line is the password; keep it out of the YAML and the repo
    ca_file: Path | None = None  # mqtts: CA bundle for the broker's certificate (None: the system's CAs)
    cert_file: Path | None = None  # client certificate (mutual TLS), PEM
    key_file: Path | None = None  # its private key, PEM
    client_id: str | None = None  # default: inspector-<station>
    topic_prefix: str = Field(default="inspector", pattern=TOPIC_RE)  # topics: <prefix>/<station>/...
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # Messages kept on disk while the broker is unreachable; past it the oldest go (a counted gap event).
    queue_max: int = Field(default=100_000, ge=10, le=10_000_000)
    queue_file: Path | None = None  # default: <log folder>/.mqtt-queue.sqlite
    status_period_s: float = Field(default=5.0, ge=0.5, le=3600)  # retained status refresh
    inflight: int = Field(default=100, ge=1, le=10_000)  # messages handed to the client and not yet acked

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> MqttSpec:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "outputs.mqtt: cert_file and key_file go together (the client certificate and its key)"
            raise ValueError(msg)
        if self.cert_file is not None and not self.url.startswith("mqtts://"):
            msg = "outputs.mqtt: a client certificate needs TLS: use an mqtts:// url"
            raise ValueError(msg)
        if self.password_file is not None and self.username is None:
            msg = "outputs.mqtt: password_file without username"
            raise ValueError(msg)
        return self


class OpcUaSpec(StrictModel):
    """The station's OPC UA server (address space after OPC 40100 Machine Vision, see docs/plant.md)."""

    endpoint: str = Field(default="opc.tcp://0.0.0.0:4840", pattern=r"^opc\.tcp://[^/\s]+:\d+(/.*)?$")
    # "user:password:role" lines; role operator (read) or engineer (read + methods). Required unless anonymous.
    users_file: Path | None = None
    anonymous: bool = False  # read-only anonymous sessions (off: a plant network is not a trusted network)
    # Security: None (plain, only with users), Basic256Sha256 Sign / SignAndEncrypt.
    security: tuple[Literal["None", "Sign", "SignAndEncrypt"], ...] = ("SignAndEncrypt",)
    # Server certificate (DER) + key (PEM); a self-signed pair is generated on first start when missing:
    # give the .der to the clients to trust. Relative to the config file.
    cert_file: Path = Path("secrets/opcua-server.der")
    key_file: Path = Path("secrets/opcua-server.pem")
    # A folder of client certificates (.der / .pem, or the CA that signed them): only these clients may open a
    # session; a refused one is saved in <folder>/rejected/ to be moved in. None: any client certificate
    # (access by user / password and role only). Read at each new session. Relative to the config file.
    trusted_clients: Path | None = None
    trigger_timeout_s: float = Field(default=10.0, gt=0, le=600)  # the Trigger method waits this long for a verdict
    namespace: str = "urn:clip-inspector:station"

    @model_validator(mode="after")
    def _someone_may_connect(self) -> OpcUaSpec:
        if self.users_file is None and not self.anonymous:
            msg = "outputs.opcua: set users_file (user:password:role lines) or anonymous: true"
            raise ValueError(msg)
        if not self.security:
            msg = "outputs.opcua: security needs at least one of None, Sign, SignAndEncrypt"
            raise ValueError(msg)
        if self.trusted_clients is not None and "None" in self.security:
            msg = ("outputs.opcua: trusted_clients checks the certificates of signed sessions, but security None lets "
                   "a client in without one: remove None from security (or trusted_clients)")
            raise ValueError(msg)
        return self


class OutputsSpec(StrictModel):
    """Plant-network outputs of the station; each is off when absent."""

    mqtt: MqttSpec | None = None
    opcua: OpcUaSpec | None = None
    # The plant's PostgreSQL results database (docs/history.md).
    database: DatabaseSpec | None = None
