"""Station-config section of the PLC link (pydantic and the standard library only).

Example (station YAML)::

    plc:
      protocol: ascii          # or modbus (RTU), or modbus-tcp (port: tcp://HOST:PORT, Ethernet)
      port: /dev/ttyUSB0       # any pyserial URL: COM3, loop://, socket://host:port, rfc2217://...
      baudrate: 115200
      parity: N
      result_timeout_ms: 2000
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from inspector.config.base import StrictModel

_PARITY_NAMES = {"NONE": "N", "EVEN": "E", "ODD": "O", "MARK": "M", "SPACE": "S"}
MODBUS_TCP_PORT = 502  # the IANA port; `tcp://HOST` without a port means this one


def parse_tcp_port(port: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port) for the Modbus TCP server; ValueError naming the expected form."""
    hint = f"Modbus TCP listens on tcp://HOST:PORT (e.g. tcp://0.0.0.0:502), got {port!r}"
    if not port.startswith("tcp://"):
        raise ValueError(hint)
    try:
        parts = urlsplit(port)
        number = parts.port
    except ValueError as exc:  # a port outside 0..65535 or not a number
        msg = f"{hint}: {exc}"
        raise ValueError(msg) from exc
    if parts.hostname is None or parts.path not in ("", "/") or parts.query:
        raise ValueError(hint)
    return parts.hostname, MODBUS_TCP_PORT if number is None else number


class Rs485Spec(StrictModel):
    """Kernel RS-485 mode (Linux drivers that support TIOCSRS485): RTS drives the transceiver direction.

    Leave ``rs485`` unset for USB adapters with automatic direction control (the common case).
    """

    rts_level_for_tx: bool = True  # RTS level while sending
    rts_level_for_rx: bool = False  # RTS level while receiving
    delay_before_tx: float | None = Field(default=None, ge=0)  # seconds between RTS switch and first bit
    delay_before_rx: float | None = Field(default=None, ge=0)  # seconds after the last bit before RTS switches back
    loopback: bool = False  # adapter echoes what it sends (rare; for testing)


class PlcSpec(StrictModel):
    """How the station talks to the line PLC: transport, serial settings, deadlines, supervision."""

    protocol: Literal["ascii", "modbus", "modbus-tcp"] = "ascii"
    # Device path or pyserial URL: /dev/ttyUSB0, COM3, loop://, socket://host:port, rfc2217://host:port;
    # modbus-tcp: the address the station listens on, tcp://HOST:PORT (tcp://0.0.0.0:502 = every interface).
    port: str = Field(default="loop://", min_length=1)
    baudrate: int = Field(default=115200, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 1.5, 2] = 1
    rs485: Rs485Spec | None = None  # None = plain RS-232 / auto-direction RS-485 adapter
    # Refuse to share the port with another process (TIOCEXCL/flock); two writers on one line corrupt frames.
    exclusive: bool = True
    # Modbus slave address of the station (1..247); the station ignores requests for other units.
    unit_id: int = Field(default=1, ge=1, le=247)
    # ASCII `*HH` suffix: optional = verified when present; required = lines without it get E03; off = ignored.
    checksum: Literal["optional", "required", "off"] = "optional"
    # Deadline from trigger to result; past it the PLC gets NG/TIMEOUT and the late verdict is dropped.
    result_timeout_ms: int = Field(default=2000, ge=10, le=600_000)
    # Modbus heartbeat register period (register 101 counts up once per period while the station is alive).
    heartbeat_ms: int = Field(default=500, ge=20, le=60_000)
    # Report the PLC as silent after this many seconds without a byte from it; 0 = never.
    plc_silence_s: float = Field(default=10.0, ge=0)
    # Reopen backoff after the port disappears (USB unplug): starts at min, doubles up to max.
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("parity", mode="before")
    @classmethod
    def _parity_name(cls, value: object) -> object:
        if isinstance(value, str):
            upper = value.strip().upper()
            return _PARITY_NAMES.get(upper, upper)
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> PlcSpec:
        if self.reconnect_max_s < self.reconnect_min_s:
            msg = f"reconnect_max_s ({self.reconnect_max_s}) must be >= reconnect_min_s ({self.reconnect_min_s})"
            raise ValueError(msg)
        if self.protocol == "modbus-tcp":
            parse_tcp_port(self.port)
        return self

    @property
    def tcp_address(self) -> tuple[str, int]:
        """(host, port) the Modbus TCP server listens on (``protocol: modbus-tcp``)."""
        return parse_tcp_port(self.port)

    @property
    def result_timeout_s(self) -> float:
        return self.result_timeout_ms / 1000.0
