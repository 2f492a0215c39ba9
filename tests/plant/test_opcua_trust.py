"""The OPC UA client-certificate trust list against real asyncua clients: only the folder's certificates get in."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspector.config.plant import OpcUaSpec
from inspector.plant.opcua import OpcUaError, OpcUaServer
from inspector.plant.opcua_trust import describe
from inspector.plc.simstation import SimulatedStation
from tests.ports import free_port

from .test_opcua import _node

CLIENTS = ("line-scada", "laptop")


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two client key pairs (self-signed, as UaExpert or a SCADA makes them), generated once."""
    folder = tmp_path_factory.mktemp("client-pki")
    for name in CLIENTS:
        asyncio.run(setup_self_signed_certificate(folder / f"{name}.pem", folder / f"{name}.der", f"urn:test:{name}",
                                                  "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                                  {"commonName": name}))
    return folder


@pytest.fixture
def trusted(tmp_path: Path, client_pki: Path) -> Path:
    """The trust folder with the line SCADA's certificate only."""
    folder = tmp_path / "opcua-clients"
    folder.mkdir()
    shutil.copy(client_pki / "line-scada.der", folder / "line-scada.der")
    return folder


def _spec(pki: Path, users: Path, trusted: Path) -> OpcUaSpec:
    return OpcUaSpec(endpoint=f"opc.tcp://127.0.0.1:{free_port()}", users_file=users, cert_file=pki / "server.der",
                     key_file=pki / "server.pem", trusted_clients=trusted)


@pytest.fixture
def server(pki: Path, users: Path, trusted: Path) -> Iterator[OpcUaServer]:
    with SimulatedStation() as station, OpcUaServer(_spec(pki, users, trusted), station, "st1") as served:
        yield served


async def _connect(server: OpcUaServer, client_pki: Path, name: str) -> Client:
    client = Client(server.endpoint, timeout=10)
    client.set_user("anna")
    client.set_password("eng1neer")
    await client.set_security(SecurityPolicyBasic256Sha256, str(client_pki / f"{name}.der"),
                              str(client_pki / f"{name}.pem"), server_certificate=str(server.cert_file),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    await client.connect()
    return client


async def _reads_state(server: OpcUaServer, client_pki: Path, name: str) -> str:
    client = await _connect(server, client_pki, name)
    try:
        return await (await _node(client, "VisionSystemState", "State")).read_value()
    finally:
        await client.disconnect()


def test_a_trusted_client_gets_in_an_untrusted_one_is_refused_and_told_what_to_do(
        server: OpcUaServer, client_pki: Path, trusted: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert asyncio.run(_reads_state(server, client_pki, "line-scada")) == "READY"
    caplog.set_level(logging.INFO, logger="inspector.plant.opcua_trust")
    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        asyncio.run(_reads_state(server, client_pki, "laptop"))
    from asyncua.crypto.uacrypto import load_certificate

    subject, thumb = describe(asyncio.run(load_certificate(client_pki / "laptop.der")))
    (saved,) = (trusted / "rejected").iterdir()
    refusal = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusal and thumb in refusal[0] and subject in refusal[0] and "urn:test:laptop" in refusal[0]
    assert f"move {saved} into {trusted}" in refusal[0] and "no restart" in refusal[0]
    assert saved.read_bytes() == (client_pki / "laptop.der").read_bytes()
    # The integrator trusts it: the next session gets in, without restarting the station.
    shutil.move(saved, trusted / saved.name)
    assert asyncio.run(_reads_state(server, client_pki, "laptop")) == "READY"
    # And takes the trust back: the next session is refused again.
    (trusted / "line-scada.der").unlink()
    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        asyncio.run(_reads_state(server, client_pki, "line-scada"))


def test_an_empty_or_broken_trust_list_refuses_everyone(pki: Path, users: Path, trusted: Path, client_pki: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    (trusted / "line-scada.der").unlink()
    with SimulatedStation() as station, OpcUaServer(_spec(pki, users, trusted), station, "st1") as server:
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            asyncio.run(_reads_state(server, client_pki, "line-scada"))
        assert any("the trust list is empty" in r.getMessage() for r in caplog.records)
        shutil.copy(client_pki / "line-scada.der", trusted / "line-scada.der")
        (trusted / "notes.pem").write_text("not a certificate\n")
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):  # fail closed: a bad file refuses everyone
            asyncio.run(_reads_state(server, client_pki, "line-scada"))
        assert any(f"{trusted / 'notes.pem'} is not a certificate" in r.getMessage() for r in caplog.records)


def test_trust_list_settings_are_checked(pki: Path, users: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(OpcUaError, match=r"trusted_clients .*no-such-folder is not a folder: create it"):
        OpcUaServer(_spec(pki, users, missing), SimulatedStation(), "st1")
    with pytest.raises(ValueError, match="remove None from security"):
        OpcUaSpec(users_file=users, trusted_clients=tmp_path, security=["None", "SignAndEncrypt"])
