"""The OPC UA server against a real asyncua client: encrypted sessions, users and roles, results, methods."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from inspector.config.plant import OpcUaSpec
from inspector.plant.messages import ResultFacts
from inspector.plant.opcua import OpcUaError, OpcUaServer, load_users
from inspector.plc.simstation import SimulatedStation
from tests.ports import free_port

NS = "urn:clip-inspector:station"


@pytest.fixture
def served(pki: Path, users: Path) -> Iterator[tuple[OpcUaServer, SimulatedStation]]:
    spec = OpcUaSpec(endpoint=f"opc.tcp://127.0.0.1:{free_port()}", users_file=users,
                     cert_file=pki / "server.der", key_file=pki / "server.pem")
    with SimulatedStation(lines=("ring", "gear"), latency_s=0.001) as station:
        server = OpcUaServer(spec, station, "st1", status_source=lambda: {"parts": 5, "ok": 4, "ng": 1, "faults": 0})
        with server:
            yield server, station


async def _session(server: OpcUaServer, pki: Path, user: str, password: str) -> Client:
    client = Client(server.endpoint, timeout=10)
    client.set_user(user)
    client.set_password(password)
    await client.set_security(SecurityPolicyBasic256Sha256, str(pki / "client.der"), str(pki / "client.pem"),
                              server_certificate=str(server.cert_file), mode=ua.MessageSecurityMode.SignAndEncrypt)
    await client.connect()
    return client


async def _node(client: Client, *path: str):  # type: ignore[no-untyped-def]
    idx = await client.get_namespace_index(NS)
    return await client.nodes.objects.get_child([f"{idx}:{p}" for p in ("VisionSystem", *path)])


def test_engineer_reads_state_and_result_and_triggers(served, pki: Path) -> None:
    server, station = served
    server.publish_result(ResultFacts("st1", 42, "P42", time.time_ns(), "ring", "NG", 0.8, 0.5, "scratch", None,
                                      "v3", "cfg9", "plc"))

    async def go() -> None:
        client = await _session(server, pki, "anna", "eng1neer")
        try:
            await asyncio.sleep(0.7)  # one status poll
            assert await (await _node(client, "VisionSystemState", "State")).read_value() == "READY"
            assert await (await _node(client, "VisionSystemState", "SystemState")).read_value() == "Operational"
            assert await (await _node(client, "Counters", "Parts")).read_value() == 5
            assert await (await _node(client, "RecipeManagement", "Recipes")).read_value() == ["ring", "gear"]
            last = ("ResultManagement", "LastResult")
            assert await (await _node(client, *last, "Sequence")).read_value() == 42
            assert await (await _node(client, *last, "PartId")).read_value() == "P42"
            assert await (await _node(client, *last, "Verdict")).read_value() == "NG"
            assert math.isclose(await (await _node(client, *last, "Score")).read_value(), 0.8)
            assert await (await _node(client, *last, "Defect")).read_value() == "scratch"
            assert await (await _node(client, *last, "ModelVersion")).read_value() == "v3"
            vs = await _node(client)
            idx = await client.get_namespace_index(NS)
            verdict, _score, _defect, seq = await vs.call_method(f"{idx}:Trigger", "P7")
            assert verdict in ("OK", "NG") and seq >= 1
            assert station.answered[-1].part_id == "P7" and station.answered[-1].verdict == verdict
            await vs.call_method(f"{idx}:SelectRecipe", "gear")
            assert station.status().line == "gear"
            with pytest.raises(ua.UaStatusCodeError):
                await vs.call_method(f"{idx}:SelectRecipe", "no-such-line")
        finally:
            await client.disconnect()

    asyncio.run(go())


def test_an_operator_reads_but_may_not_call_methods(served, pki: Path) -> None:
    server, station = served

    async def go() -> None:
        client = await _session(server, pki, "olaf", "shift2")
        try:
            assert await (await _node(client, "VisionSystemState", "State")).read_value() == "READY"
            idx = await client.get_namespace_index(NS)
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await _node(client)).call_method(f"{idx}:Trigger", "P8")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await _node(client, "RecipeManagement", "ActiveRecipe")).write_value("gear")
        finally:
            await client.disconnect()
        assert not station.answered, "the refused trigger never reached the station"

    asyncio.run(go())


def test_wrong_password_and_anonymous_and_plain_sessions_are_refused(served, pki: Path) -> None:
    server, _ = served

    async def go() -> None:
        with pytest.raises(ua.UaError):
            await _session(server, pki, "anna", "guess")
        anonymous = Client(server.endpoint, timeout=5)
        await anonymous.set_security(SecurityPolicyBasic256Sha256, str(pki / "client.der"), str(pki / "client.pem"),
                                     server_certificate=str(server.cert_file))
        with pytest.raises(ua.UaError):
            await anonymous.connect()
        plain = Client(server.endpoint, timeout=5)  # no security at all: only SignAndEncrypt is offered
        plain.set_user("anna")
        plain.set_password("eng1neer")
        with pytest.raises((ua.UaError, OSError, TimeoutError)):
            await plain.connect()

    asyncio.run(go())


def test_users_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "users.txt"
    bad.write_text("anna:pw:admin\n")
    with pytest.raises(OpcUaError, match=r"users.txt:1: expected user:password:role"):
        load_users(bad)
    with pytest.raises(OpcUaError, match="create it"):
        load_users(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="users_file"):
        OpcUaSpec()


def test_stop_halts_the_station_and_start_resumes_it_engineers_only(served, pki: Path) -> None:
    server, station = served

    async def go() -> None:
        operator = await _session(server, pki, "olaf", "shift2")
        engineer = await _session(server, pki, "anna", "eng1neer")
        try:
            idx = await engineer.get_namespace_index(NS)
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await _node(operator)).call_method(f"{idx}:Stop")
            assert not station.paused_by, "the operator's Stop never reached the station"
            vs = await _node(engineer)
            assert await vs.call_method(f"{idx}:Stop") is None  # no output arguments
            # The state nodes change with the call (no wait for the status poll).
            assert await (await _node(engineer, "VisionSystemState", "SystemState")).read_value() == "Halted"
            assert await (await _node(engineer, "VisionSystemState", "State")).read_value() == "BUSY"
            assert "anna (OPC UA)" in await (await _node(engineer, "VisionSystemState", "Detail")).read_value()
            with pytest.raises(ua.uaerrors.BadInvalidState):
                await vs.call_method(f"{idx}:Trigger", "P1")  # a halted station takes no part
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await _node(operator)).call_method(f"{idx}:Start")
            assert station.paused_by == "anna (OPC UA)"
            await vs.call_method(f"{idx}:SelectRecipe", "gear")  # a halted station may change its recipe
            await vs.call_method(f"{idx}:Start")
            assert await (await _node(engineer, "VisionSystemState", "SystemState")).read_value() == "Operational"
            verdict, *_ = await vs.call_method(f"{idx}:Trigger", "P2")
            assert verdict in ("OK", "NG")
        finally:
            await operator.disconnect()
            await engineer.disconnect()

    asyncio.run(go())
    assert [(k, w) for k, w, _ in station.events] == [("station_paused", "anna (OPC UA)"),
                                                     ("changeover", "anna (OPC UA)"),
                                                     ("station_resumed", "anna (OPC UA)")]
    assert [v.part_id for v in station.answered] == ["P2"]

