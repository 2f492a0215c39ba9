"""The station's OPC UA server (asyncua): state, line, counters, the last result, and methods.

The address space follows the OPC UA Machine Vision companion specification (OPC 40100) as far as
it maps onto a station: a ``VisionSystem`` object with its system state, recipe management (a
recipe = a product line), result management (the last result) and the methods Trigger,
SelectRecipe, Stop (system state Halted: triggers refused) and Start. docs/plant.md lists every node.

Security: anonymous sessions are off unless ``anonymous: true`` (then read-only); users come from
``users_file`` (``user:password:role``, role ``operator`` = read, ``engineer`` = read + methods;
the password may be a ``pbkdf2_sha256$...`` hash from :func:`hash_password`). Basic256Sha256
Sign / SignAndEncrypt use the server certificate, generated self-signed on first start when
missing, so the integrator can copy it into the client's trust list; with ``trusted_clients`` only
the client certificates in that folder may open a session (:mod:`.opcua_trust`). The role check is
enforced on the request (a Call from an operator is answered BadUserAccessDenied), not in the method;
the calling user goes into the audit events of the methods.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import hashlib
import hmac
import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inspector.config.plant import OpcUaSpec
from inspector.errors import InspectorError
from inspector.plant.messages import ResultFacts
from inspector.plant.opcua_trust import ClientTrustList, TrustListError
from inspector.plc.port import (
    PartVerdict,
    StationPort,
    StationState,
    StationStateError,
    StationStatus,
    TriggerRejected,
    UnknownLineError,
)

_logger = logging.getLogger(__name__)
ROLES = ("operator", "engineer")
_PBKDF2_ROUNDS = 200_000
STATUS_PERIOD_S = 0.5
# Who sent the request being served: set by the permission check of each request (same task as the call).
_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("opcua_caller", default="")


def system_state(status: StationStatus) -> str:
    """The OPC 40100 system state: Halted (paused by Stop, or stopped), Error (FAULT), else Operational."""
    if status.halted:
        return "Halted"
    return "Error" if status.state is StationState.FAULT else "Operational"


def caller() -> str:
    """The user of the OPC UA request being served, for audit events ("anna (OPC UA)")."""
    return f"{_CALLER.get() or 'anonymous'} (OPC UA)"


class OpcUaError(InspectorError):
    """The OPC UA server cannot start (users file, certificate, endpoint in use)."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A ``pbkdf2_sha256$rounds$salt$hash`` line for the users file (keeps clear passwords off the disk)."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${_PBKDF2_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _check_password(stored: str, given: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, rounds, salt, digest = stored.split("$")
            got = hashlib.pbkdf2_hmac("sha256", given.encode(), base64.b64decode(salt), int(rounds))
            return hmac.compare_digest(got, base64.b64decode(digest))
        except ValueError:
            return False
    return hmac.compare_digest(stored.encode(), given.encode())


@dataclass(frozen=True)
class Account:
    name: str
    secret: str  # clear text or a pbkdf2_sha256 hash
    role: str


def load_users(path: Path) -> dict[str, Account]:
    """Parse the users file (``user:password:role`` per line, ``#`` comments); OpcUaError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"outputs.opcua.users_file {path}: {exc.strerror or exc}; create it with user:password:role lines"
        raise OpcUaError(msg) from exc
    users: dict[str, Account] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        secret, sep2, role = rest.rpartition(":")
        if not (sep and sep2 and name and secret) or role not in ROLES:
            msg = f"{path}:{number}: expected user:password:role with role {' or '.join(ROLES)}"
            raise OpcUaError(msg)
        users[name] = Account(name, secret, role)
    if not users:
        msg = f"outputs.opcua.users_file {path} has no users"
        raise OpcUaError(msg)
    return users


class OpcUaServer:
    """Serves ``station`` (a StationPort) on ``spec.endpoint``; feed it results with :meth:`publish_result`.

    ``status_source()`` returns the station's figures (state, line, parts, ok, ng, faults) polled every
    half second; ``resolve`` turns config paths into files.
    """

    def __init__(self, spec: OpcUaSpec, station: StationPort, name: str,
                 status_source: Callable[[], dict[str, Any]] | None = None,
                 resolve: Callable[[Path], Path] = Path) -> None:
        self.spec = spec
        self.name = name
        self._station = station
        self._status_source = status_source
        self._resolve = resolve
        self.users = load_users(resolve(spec.users_file)) if spec.users_file is not None else {}
        self.cert_file = resolve(spec.cert_file)
        self.key_file = resolve(spec.key_file)
        try:  # only these client certificates may open a session (None: any)
            self.trust = ClientTrustList(resolve(spec.trusted_clients)) if spec.trusted_clients is not None else None
        except TrustListError as exc:
            raise OpcUaError(str(exc)) from None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._nodes: dict[str, Any] = {}
        self.endpoint = spec.endpoint

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> OpcUaServer:
        """Start serving (blocks until the endpoint listens); OpcUaError when it cannot."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="opcua-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            msg = f"OPC UA server did not start within {timeout:.0f} s"
            raise OpcUaError(msg)
        if self._error is not None:
            self._thread.join(timeout=5)
            self._thread = None
            msg = f"OPC UA server on {self.spec.endpoint} could not start: {self._error}"
            raise OpcUaError(msg) from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the endpoint listens."""
        return self._thread is not None and self._loop is not None

    def __enter__(self) -> OpcUaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ feeding
    def publish_result(self, facts: ResultFacts) -> None:
        """Show ``facts`` as the last result (thread-safe, returns at once)."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the server is stopping
            asyncio.run_coroutine_threadsafe(self._write_result(facts), self._loop)

    # ------------------------------------------------------------------ the server thread
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            _logger.exception("OPC UA server failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from asyncua import Server, ua

        server = Server(user_manager=_Users(self.users, self.spec.anonymous))
        await server.init()
        server.set_endpoint(self.spec.endpoint)
        server.set_server_name(f"clip-inspector {self.name}")
        uri = f"{self.spec.namespace}:{self.name}"
        await server.set_application_uri(uri)
        await self._certificate(server, uri)
        if self.trust is not None:
            server.set_certificate_validator(self.trust.check)
        policies = {"None": ua.SecurityPolicyType.NoSecurity,
                    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
                    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt}
        server.set_security_policy([policies[p] for p in self.spec.security], permission_ruleset=_Roles())
        tokens: list[type] = [ua.UserNameIdentityToken] if self.users else []
        if self.spec.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        ns = await server.register_namespace(self.spec.namespace)
        await self._build(server, ns)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with server:
            _logger.info("OPC UA server listening on %s (security %s)", self.spec.endpoint,
                         ", ".join(self.spec.security))
            self._ready.set()
            poll = asyncio.create_task(self._poll_status())
            await self._stop.wait()
            poll.cancel()
        self._loop = None

    async def _certificate(self, server: Any, uri: str) -> None:
        if self.spec.security == ("None",):
            return
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        host = urlsplit(self.spec.endpoint).hostname or socket.gethostname()
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        if not self.key_file.is_file() or not self.cert_file.is_file():
            _logger.warning("OPC UA: generating a self-signed server certificate %s (give it to the clients to "
                            "trust)", self.cert_file)
        self.cert_file.parent.mkdir(parents=True, exist_ok=True)
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(self.key_file, self.cert_file, uri, host,
                                            [ExtendedKeyUsageOID.SERVER_AUTH],
                                            {"countryName": "DE", "organizationName": "clip-inspector",
                                             "commonName": f"inspector {self.name}"})
        with contextlib.suppress(OSError):
            os.chmod(self.key_file, 0o600)
        await server.load_certificate(str(self.cert_file))
        await server.load_private_key(str(self.key_file))

    async def _build(self, server: Any, ns: int) -> None:
        from asyncua import ua

        objects = server.get_objects_node()
        vs = await objects.add_object(ns, "VisionSystem")
        await vs.add_property(ns, "StationName", self.name)
        n = self._nodes
        state = await vs.add_object(ns, "VisionSystemState")
        n["State"] = await state.add_variable(ns, "State", "READY")
        n["SystemState"] = await state.add_variable(ns, "SystemState", "Operational")
        n["Detail"] = await state.add_variable(ns, "Detail", "")
        recipes = await vs.add_object(ns, "RecipeManagement")
        lines = list(self._station.line_names())
        n["ActiveRecipe"] = await recipes.add_variable(ns, "ActiveRecipe", self._station.status().line)
        n["Recipes"] = await recipes.add_variable(ns, "Recipes", lines, ua.VariantType.String)
        counters = await vs.add_object(ns, "Counters")
        for key in ("Parts", "OK", "NG", "Faults"):
            n[key] = await counters.add_variable(ns, key, 0, ua.VariantType.UInt64)
        results = await vs.add_object(ns, "ResultManagement")
        last = await results.add_object(ns, "LastResult")
        for key, value, vtype in (("Sequence", 0, ua.VariantType.UInt64), ("PartId", "", ua.VariantType.String),
                                  ("Verdict", "", ua.VariantType.String), ("Score", math.nan, ua.VariantType.Double),
                                  ("Threshold", math.nan, ua.VariantType.Double),
                                  ("Defect", "", ua.VariantType.String), ("Line", "", ua.VariantType.String),
                                  ("ModelVersion", "", ua.VariantType.String),
                                  ("ConfigHash", "", ua.VariantType.String),
                                  ("Time", datetime.fromtimestamp(0, UTC), ua.VariantType.DateTime)):
            n[key] = await last.add_variable(ns, key, value, vtype)
        string, double, uint = ua.VariantType.String, ua.VariantType.Double, ua.VariantType.UInt64
        await vs.add_method(ns, "Trigger", self._trigger, [_arg("PartId", string)],
                            [_arg("Verdict", string), _arg("Score", double), _arg("Defect", string),
                             _arg("Sequence", uint)])
        await vs.add_method(ns, "SelectRecipe", self._select_recipe, [_arg("Line", string)], [])
        await vs.add_method(ns, "Stop", self._stop_station, [], [])
        await vs.add_method(ns, "Start", self._start_station, [], [])

    async def _write_result(self, r: ResultFacts) -> None:
        from asyncua import ua

        n = self._nodes
        values = {"Sequence": (r.seq, ua.VariantType.UInt64), "PartId": (r.part_id, ua.VariantType.String),
                  "Verdict": (r.verdict, ua.VariantType.String), "Score": (r.score, ua.VariantType.Double),
                  "Threshold": (r.threshold, ua.VariantType.Double),
                  "Defect": (r.defect or "", ua.VariantType.String), "Line": (r.line, ua.VariantType.String),
                  "ModelVersion": (r.model_version, ua.VariantType.String),
                  "ConfigHash": (r.config_hash, ua.VariantType.String),
                  "Time": (datetime.fromtimestamp(r.time_ns / 1e9, UTC), ua.VariantType.DateTime)}
        for key, (value, vtype) in values.items():
            if key != "Sequence":
                await n[key].write_value(ua.Variant(value, vtype))
        await n["Sequence"].write_value(ua.Variant(r.seq, ua.VariantType.UInt64))  # changes last, like register 102

    async def _poll_status(self) -> None:
        while True:
            try:
                await self._show_status()
            except Exception:
                _logger.exception("OPC UA status update failed")
            await asyncio.sleep(STATUS_PERIOD_S)

    async def _show_status(self) -> None:
        from asyncua import ua

        status = self._station.status()
        facts = dict(self._status_source()) if self._status_source is not None else {}
        await self._nodes["State"].write_value(str(status.state.value))
        await self._nodes["SystemState"].write_value(system_state(status))
        await self._nodes["Detail"].write_value(status.detail)
        await self._nodes["ActiveRecipe"].write_value(status.line)
        for key, fact in (("Parts", "parts"), ("OK", "ok"), ("NG", "ng"), ("Faults", "faults")):
            if fact in facts:
                await self._nodes[key].write_value(ua.Variant(int(facts[fact]), ua.VariantType.UInt64))

    # ------------------------------------------------------------------ methods (engineer role: see _Roles)
    async def _trigger(self, parent: Any, part_id: Any) -> Any:
        from asyncua import ua

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[PartVerdict] = loop.create_future()

        def reply(verdict: PartVerdict) -> None:
            loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(verdict))

        try:
            self._station.submit_trigger(str(part_id.Value), reply)
        except TriggerRejected as exc:
            _logger.info("OPC UA trigger %s refused: %s %s", part_id.Value, exc.code, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        except ValueError:  # a part id the station cannot take (length, characters)
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        try:
            v = await asyncio.wait_for(answer, self.spec.trigger_timeout_s)
        except TimeoutError:
            return ua.StatusCode(ua.StatusCodes.BadTimeout)
        return [ua.Variant(v.verdict, ua.VariantType.String), ua.Variant(v.score, ua.VariantType.Double),
                ua.Variant(v.defect or "", ua.VariantType.String), ua.Variant(v.seq, ua.VariantType.UInt64)]

    async def _select_recipe(self, parent: Any, line: Any) -> Any:
        from asyncua import ua

        change = functools.partial(self._station.changeover, str(line.Value), caller())
        try:
            await asyncio.get_running_loop().run_in_executor(None, change)
        except UnknownLineError:
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        await self._nodes["ActiveRecipe"].write_value(str(line.Value))
        return []

    async def _stop_station(self, parent: Any) -> Any:
        """OPC 40100 Halted: the station refuses triggers (E05 on the PLC link too) until Start."""
        return await self._command("Stop", self._station.pause)

    async def _start_station(self, parent: Any) -> Any:
        return await self._command("Start", self._station.resume)

    async def _command(self, name: str, action: Callable[[str], None]) -> Any:
        from asyncua import ua

        who = caller()
        try:
            await asyncio.get_running_loop().run_in_executor(None, action, who)
        except StationStateError as exc:
            _logger.warning("OPC UA %s by %s refused: %s", name, who, exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        _logger.info("OPC UA %s by %s", name, who)
        await self._show_status()  # a read right after the call sees the new state
        return []


def _arg(name: str, vtype: Any) -> Any:
    from asyncua import ua

    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = -1
    return arg


class _Users:
    """asyncua user manager over the users file: engineer -> Admin, operator -> User, anonymous if allowed."""

    def __init__(self, users: dict[str, Account], anonymous: bool) -> None:
        self.users = users
        self.anonymous = anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.Anonymous) if self.anonymous else None
        account = self.users.get(username)
        if account is None or password is None or not _check_password(account.secret, password):
            _logger.warning("OPC UA: login refused for user %r", username)
            return None
        return User(role=UserRole.Admin if account.role == "engineer" else UserRole.User, name=username)


class _Roles:
    """Request-level permissions: anonymous and operators read, browse and subscribe; engineers also call
    methods and write. (asyncua's SimpleRoleRuleset lets every user call methods.)"""

    def __init__(self) -> None:
        from asyncua import ua
        from asyncua.crypto.permission_rules import USER_TYPES

        ids = ua.ObjectIds
        changes = {ua.NodeId(ids.CallRequest_Encoding_DefaultBinary),
                   ua.NodeId(ids.WriteRequest_Encoding_DefaultBinary)}
        self._read = {ua.NodeId(i) for i in USER_TYPES} - changes
        self._engineer = self._read | changes

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        from asyncua.crypto.permission_rules import UserRole

        if user is None:
            return True  # before the session is activated (hello, endpoints): asyncua checks the login itself
        _CALLER.set(getattr(user, "name", None) or "anonymous")  # read by the method this request calls
        allowed = self._engineer if user.role == UserRole.Admin else self._read
        return action_type_id in allowed
