"""Engineer PIN: scrypt hash + salt in a small JSON file (never the PIN), lockout after repeated failures.

The file lives next to the station config (``<config>.pin.json``) unless a path is given. The failure
count and the lockout time are kept in the same file, so restarting the GUI does not reset a lockout.
Qt-free, so it is unit-testable and usable from a CLI (``inspector gui --set-pin``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# scrypt cost: 2**14 * 8 * 128 B = 16 MiB and ~50 ms per try; memory-hard, so a stolen file is slow to brute-force.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_LEN = 4
MAX_LEN = 12
_FIELDS = frozenset(("salt", "hash", "n", "r", "p"))


class PinError(ValueError):
    """A PIN that cannot be set (too short, not digits) or a PIN file that cannot be read."""


@dataclass(frozen=True)
class PinCheck:
    """The outcome of one PIN attempt."""

    ok: bool
    locked_for_s: float = 0.0  # > 0: locked out, try again after this many seconds
    attempts_left: int = 0  # failures left before a lockout
    just_locked: bool = False  # this attempt triggered the lockout

    @property
    def locked(self) -> bool:
        return self.locked_for_s > 0


def default_pin_path(config_path: Path) -> Path:
    """``station_configs/demo.yaml`` -> ``station_configs/demo.yaml.pin.json``."""
    config_path = Path(config_path)
    return config_path.with_name(config_path.name + ".pin.json")


def _hash(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def check_pin_format(pin: str) -> None:
    """Raise PinError unless ``pin`` is MIN_LEN..MAX_LEN digits."""
    if not pin.isdigit() or not MIN_LEN <= len(pin) <= MAX_LEN:
        msg = f"the PIN must be {MIN_LEN} to {MAX_LEN} digits"
        raise PinError(msg)


class PinStore:
    """Verifies and sets the engineer PIN stored (hashed) in ``path``."""

    def __init__(self, path: Path, *, max_failures: int = 5, lockout_s: float = 300.0,
                 clock: Callable[[], float] = time.time, scrypt_n: int = SCRYPT_N) -> None:
        self.path = Path(path)
        self.max_failures = max(1, max_failures)
        self.lockout_s = lockout_s
        self._clock = clock
        self._n = scrypt_n

    @property
    def is_set(self) -> bool:
        return self.path.is_file()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"PIN file {self.path} cannot be read ({exc}); delete it and set a new PIN"
            raise PinError(msg) from None
        if not isinstance(data, dict) or data.get("kdf") != "scrypt" or not data.keys() >= _FIELDS:
            msg = f"PIN file {self.path} is not a scrypt PIN file; delete it and set a new PIN"
            raise PinError(msg)
        return data

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set_pin(self, pin: str) -> None:
        """Store a new PIN (hash + fresh salt); clears failures and any lockout."""
        check_pin_format(pin)
        salt = secrets.token_bytes(16)
        digest = _hash(pin, salt, self._n, SCRYPT_R, SCRYPT_P)
        self._write({"kdf": "scrypt", "n": self._n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(),
                     "hash": digest.hex(), "failures": 0, "locked_until": 0.0})

    def locked_for(self) -> float:
        """Seconds left of a lockout (0 when not locked)."""
        if not self.is_set:
            return 0.0
        now = self._clock()
        return max(0.0, self._locked_until(self._read(), now) - now)

    def _locked_until(self, data: dict, now: float) -> float:
        try:
            until = float(data.get("locked_until", 0.0))
        except (TypeError, ValueError):
            until = math.nan
        # A damaged value (text, NaN) counts as a fresh lockout, never as "not locked".
        return now + self.lockout_s if math.isnan(until) else until

    def verify(self, pin: str) -> PinCheck:
        """Check one attempt; a locked store refuses every PIN (the right one too) until the lockout ends."""
        data = self._read()
        now = self._clock()
        locked_until = self._locked_until(data, now)
        if locked_until > now:
            return PinCheck(False, locked_until - now, 0)
        if locked_until:  # a lockout that ran out starts a fresh count
            data["failures"], data["locked_until"] = 0, 0.0
        try:
            digest = _hash(pin, bytes.fromhex(data["salt"]), int(data["n"]), int(data["r"]), int(data["p"]))
            stored = bytes.fromhex(data["hash"])
            failures = int(data.get("failures", 0))
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:  # a damaged or tampered file
            msg = f"PIN file {self.path} is damaged ({exc}); delete it and set a new PIN"
            raise PinError(msg) from None
        if hmac.compare_digest(digest, stored):
            if data.get("failures") or data.get("locked_until"):
                data["failures"], data["locked_until"] = 0, 0.0
                self._write(data)
            return PinCheck(True, 0.0, self.max_failures)
        failures += 1
        if failures >= self.max_failures:
            data["failures"], data["locked_until"] = 0, now + self.lockout_s
            self._write(data)
            return PinCheck(False, self.lockout_s, 0, just_locked=True)
        data["failures"] = failures
        self._write(data)
        return PinCheck(False, 0.0, self.max_failures - failures)
