"""mqtts:// against a real mosquitto TLS listener: a private CA, then mutual TLS with a client certificate."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inspector.config.plant import MqttSpec
from inspector.plant import messages as msgs
from inspector.plant.mqtt import MqttError, MqttPublisher, MqttState

from .conftest import MOSQUITTO, Broker


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
           ca: bool = False, dns: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    crt, pem = folder / f"{name}.crt", folder / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("plant CA", ca_key, _name("plant CA"), ca_key, ca=True)
    out: dict[str, Path] = {}
    out["ca"], _ = _write(tmp_path, "ca", ca, ca_key)
    for name, dns in (("server", "localhost"), ("station", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        out[name], out[f"{name}_key"] = _write(tmp_path, name, _issue(name, key, ca.subject, ca_key, dns=dns), key)
    return out


def _tls_broker(tmp_path: Path, pki: dict[str, Path], require_cert: bool) -> Broker:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (scripts/system-packages.txt)")
    folder = tmp_path / "broker"
    folder.mkdir()
    extra = (f"allow_anonymous true\ncafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
             f"require_certificate {'true' if require_cert else 'false'}\n")
    return Broker(folder, extra=extra).start()


def _connected(pub: MqttPublisher, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pub.state != MqttState.CONNECTED and time.monotonic() < deadline:
        time.sleep(0.02)
    return pub.state == MqttState.CONNECTED


def test_mqtts_with_the_plant_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    broker = _tls_broker(tmp_path, pki, require_cert=False)
    try:
        spec = MqttSpec(url=f"mqtts://localhost:{broker.port}", ca_file=pki["ca"])
        with MqttPublisher(spec, "st1", tmp_path / "q.sqlite") as pub:
            assert _connected(pub), pub.detail
            pub.publish_event("test", "pytest", "over TLS")
            assert pub.wait_drained(10)
        unknown_ca = MqttSpec(url=f"mqtts://localhost:{broker.port}")  # the system CAs do not know the plant CA
        with MqttPublisher(unknown_ca, "st1", tmp_path / "q2.sqlite") as pub:
            assert not _connected(pub, 2.0)
    finally:
        broker.stop()


def test_mutual_tls_needs_the_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    broker = _tls_broker(tmp_path, pki, require_cert=True)
    try:
        url = f"mqtts://localhost:{broker.port}"
        with MqttPublisher(MqttSpec(url=url, ca_file=pki["ca"]), "st1", tmp_path / "q.sqlite") as pub:
            assert not _connected(pub, 2.0), "the broker requires a client certificate"
        spec = MqttSpec(url=url, ca_file=pki["ca"], cert_file=pki["station"], key_file=pki["station_key"])
        with MqttPublisher(spec, "st1", tmp_path / "q.sqlite") as pub:
            assert _connected(pub), pub.detail
            pub.publish_result(msgs.ResultFacts("st1", 1, "P1", time.time_ns(), "ring", "OK", 0.1, 0.5, None, None,
                                                "base", "h", "plc"))
            assert pub.wait_drained(10)
        missing = MqttSpec(url=url, ca_file=pki["ca"], cert_file=tmp_path / "nope.crt", key_file=pki["station_key"])
        with pytest.raises(MqttError, match="cert_file"):
            MqttPublisher(missing, "st1", tmp_path / "q3.sqlite").start()
    finally:
        broker.stop()
