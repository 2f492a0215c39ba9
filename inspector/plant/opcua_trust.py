"""Which client certificates may open an OPC UA session: the trust folder ``outputs.opcua.trusted_clients``.

asyncua checks a client's certificate when the session is created, with a validator: here its own
:class:`~asyncua.crypto.validator.CertificateValidator` over a :class:`~asyncua.crypto.truststore.TrustStore`
of the folder's DER / PEM files (a certificate is trusted when it, or the CA that signed it, is in the
folder; it must be inside its validity dates). This module adds what an integrator needs around it:

* the folder is read again for each new session, so copying a certificate in lets that client in
  without restarting the station (and deleting it keeps the client out from its next session);
* a refused certificate is saved in ``<folder>/rejected/`` (outside the trust list: only files directly
  in the folder count), and the log names it - subject, SHA-1 thumbprint (the one UaExpert and PLC
  tools show), application URI - and says which file to move where;
* an unreadable file in the folder refuses every client (fail closed) with the file named.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError

_logger = logging.getLogger(__name__)
_ASYNCUA_TRUST_LOG = "asyncuagds.validate"  # asyncua's TrustStore logs each untrusted certificate with a traceback
CERT_SUFFIXES = (".der", ".pem")  # what asyncua's TrustStore reads


def describe(cert: Any) -> tuple[str, str]:
    """(subject, SHA-1 thumbprint in upper-case hex) of an x509 certificate."""
    from cryptography.hazmat.primitives import hashes

    return cert.subject.rfc4514_string() or "(no subject)", cert.fingerprint(hashes.SHA1()).hex().upper()


class TrustListError(InspectorError):
    """The trust folder is missing (the server does not start without it)."""


class ClientTrustList:
    """The validator asyncua calls at each CreateSession (:meth:`check`); refuses untrusted client certificates."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.rejected = self.folder / "rejected"
        if not self.folder.is_dir():
            msg = (f"outputs.opcua.trusted_clients {self.folder} is not a folder: create it (mkdir -p {self.folder}) "
                   "and copy the certificates of the OPC UA clients that may connect into it (.der or .pem)")
            raise TrustListError(msg)
        library_log = logging.getLogger(_ASYNCUA_TRUST_LOG)
        if not any(isinstance(f, _NoTraceback) for f in library_log.filters):
            library_log.addFilter(_NoTraceback())  # our own warning names the certificate and what to do

    def files(self) -> list[Path]:
        """The certificate files of the trust list (directly in the folder)."""
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in CERT_SUFFIXES)

    async def check(self, cert: Any, app: Any) -> None:
        """Raise asyncua's ServiceError (BadCertificateUntrusted, ...TimeInvalid) unless ``cert`` is trusted."""
        from asyncua import ua
        from asyncua.common.utils import ServiceError
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

        store, unusable = await self._store()
        options = CertificateValidatorOptions
        validator = CertificateValidator(options.TIME_RANGE | options.TRUSTED | options.REVOKED, store)
        try:
            if store is None:
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
            await validator.validate(cert, app)
        except ServiceError as exc:
            self._refused(cert, app, exc.code, unusable)
            raise
        subject, thumb = describe(cert)
        _logger.info("OPC UA: trusted client certificate %s (thumbprint %s)", subject, thumb)

    async def _store(self) -> tuple[Any, str]:
        """A TrustStore of the folder as it is now, or (None, why) when it cannot trust anyone."""
        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.uacrypto import load_certificate

        files = self.files()
        if not files:
            return None, "the trust list is empty"
        for path in files:  # name a bad file (TrustStore would fail on it without saying which)
            try:
                await load_certificate(path)
            except ValueError as exc:
                _logger.error("OPC UA trust list: %s is not a certificate (%s): fix or remove it; every client "
                              "certificate is refused until then", path, exc)
                return None, f"the trust list has a file that is not a certificate ({path.name})"
        store = TrustStore([self.folder], [])
        try:
            await store.load()
        except ValueError as exc:
            _logger.error("OPC UA trust list %s cannot be read (%s): every client certificate is refused", self.folder,
                          exc)
            return None, "the trust list cannot be read"
        return store, ""

    def _refused(self, cert: Any, app: Any, code: int, unusable: str) -> None:
        from asyncua import ua
        from cryptography.hazmat.primitives.serialization import Encoding

        subject, thumb = describe(cert)
        uri = getattr(app, "ApplicationUri", "") or "?"
        who = f"client {uri} (certificate {subject}, thumbprint {thumb})"
        if code == ua.StatusCodes.BadCertificateTimeInvalid:
            _logger.warning("OPC UA: refused %s: the certificate is valid only from %s to %s; give the client a "
                            "current certificate", who, cert.not_valid_before_utc, cert.not_valid_after_utc)
            return
        if code != ua.StatusCodes.BadCertificateUntrusted:
            _logger.warning("OPC UA: refused %s: %s", who, ua.StatusCode(code).name)
            return
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", _common_name(cert) or "client")[:60]
        saved = self.rejected / f"{name}-{thumb[:16]}.der"
        try:
            self.rejected.mkdir(parents=True, exist_ok=True)
            saved.write_bytes(cert.public_bytes(Encoding.DER))
        except OSError as exc:
            _logger.warning("OPC UA: could not save the refused certificate in %s: %s", self.rejected, exc)
        why = unusable or "it is not in the trust list"
        _logger.warning("OPC UA: refused %s: %s (%s). To let this client in, move %s into %s (read at each new "
                        "session, no restart needed)", who, why, self.folder, saved, self.folder)


class _NoTraceback(logging.Filter):
    """Keeps the library's one-line "Not trusted certificate used" and drops its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _common_name(cert: Any) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
