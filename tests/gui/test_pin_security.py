"""Engineer PIN store beyond test_units.py / test_engineer.py: the KDF is scrypt with memory-hard parameters,
the file never holds the PIN, and a damaged or tampered file never opens engineer mode or crashes the GUI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gui.pin import SCRYPT_N, SCRYPT_P, SCRYPT_R, PinError, PinStore


@pytest.fixture
def store(tmp_path: Path) -> PinStore:
    store = PinStore(tmp_path / "station.yaml.pin.json", max_failures=3, lockout_s=60, clock=lambda: 1000.0)
    store.set_pin("482916")
    return store


def test_stored_as_salted_memory_hard_scrypt(store: PinStore) -> None:
    raw = store.path.read_text()
    data = json.loads(raw)
    assert "482916" not in raw and b"482916".hex() not in raw
    assert data["kdf"] == "scrypt" and (data["n"], data["r"], data["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert 128 * data["n"] * data["r"] >= 16 * 2**20  # >= 16 MiB per guess: memory-hard
    salt = bytes.fromhex(data["salt"])
    expected = hashlib.scrypt(b"482916", salt=salt, n=data["n"], r=data["r"], p=data["p"], maxmem=2**28, dklen=32)
    assert data["hash"] == expected.hex()  # the stored value is exactly scrypt(PIN, salt)
    store.set_pin("482916")  # same PIN again: a new salt, so a new hash
    again = json.loads(store.path.read_text())
    assert again["salt"] != data["salt"] and again["hash"] != data["hash"]


def test_lockout_counts_across_store_instances(store: PinStore) -> None:
    """A GUI restart (a new PinStore) neither resets the count nor the lockout."""
    assert store.verify("000000").attempts_left == 2
    fresh = PinStore(store.path, max_failures=3, lockout_s=60, clock=lambda: 1000.0)
    assert fresh.verify("111111").attempts_left == 1
    assert PinStore(store.path, max_failures=3, lockout_s=60, clock=lambda: 1000.0).verify("222222").just_locked
    assert PinStore(store.path, max_failures=3, lockout_s=60, clock=lambda: 1030.0).verify("482916").locked


@pytest.mark.parametrize("damage", [
    lambda d: "not json at all",
    lambda d: json.dumps([1, 2, 3]),
    lambda d: json.dumps({**d, "kdf": "md5"}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "salt"}),
    lambda d: json.dumps({**d, "salt": "zz-not-hex"}),
    lambda d: json.dumps({**d, "hash": 42}),
    lambda d: json.dumps({**d, "n": 3}),  # scrypt needs a power of two
    lambda d: json.dumps({**d, "n": 2**40}),  # far beyond the memory cap
    lambda d: json.dumps({**d, "failures": "many"}),
])
def test_damaged_file_is_a_pin_error_never_a_login(store: PinStore, damage) -> None:
    data = json.loads(store.path.read_text())
    store.path.write_text(damage(data))
    with pytest.raises(PinError, match="delete it and set a new PIN") as info:
        store.verify("482916")
    assert str(store.path) in str(info.value)


@pytest.mark.parametrize("value", ["soon", float("nan"), None])  # text, NaN, null: damaged -> locked
def test_damaged_lockout_time_counts_as_locked(store: PinStore, value: object) -> None:
    data = json.loads(store.path.read_text())
    data["locked_until"] = value
    store.path.write_text(json.dumps(data))
    check = store.verify("482916")
    assert check.locked and not check.ok
    assert store.locked_for() > 0


def test_wrong_pins_never_log_in(store: PinStore) -> None:
    for pin in ("", "4829", "4829160", "482916 ", " 482916", "482917", "٤٨٢٩١٦"):
        fresh = PinStore(store.path, max_failures=100, lockout_s=60)
        assert not fresh.verify(pin).ok
