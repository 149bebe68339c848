"""The one TLS settings type: what the config validates is what builds the ssl.SSLContext (client or server side).

Used by the config (are the files usable), doctor, the webhook (server side) and the InfluxDB writer
(client side), as blackbox_exporter's one `TLSConfig` is. Imports nothing of ours: every room may use it.
"Is this TLS file usable" is asked here only: `TLSSettings.problems()` loads each file exactly as
`TLSSettings.context()` does, one step per file.
"""
from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

# Peer verification, Apache's SSLVerifyClient none/optional/require for the server side; a client verifies
# the server ("required") unless told not to ("none": insecure_skip_verify).
VERIFY: dict[str, ssl.VerifyMode] = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                                     "required": ssl.CERT_REQUIRED}
# OpenSSL's CApath finds a CA by the file name <subject hash>.<n> only (`openssl rehash DIR`, c_rehash).
HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.\d+$")
MIN_VERSION = ssl.TLSVersion.TLSv1_2   # servers refuse older; clients keep Python's default (also 1.2)


class TLSFileError(ValueError):
    """A TLS file is missing or unusable; `field` is the TLSSettings field ("cert_file", "key_file", "ca_file")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _show(path: str) -> str:
    return json.dumps(path, ensure_ascii=False)   # quoted, one line whatever the path holds


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """TLS files of one side of a connection (paths; None: not used).

    cert_file/key_file: our certificate (PEM, chain after it) and its key when not in the same file: the
    server certificate, or the client certificate shown to a server. ca_file: the CAs the peer is verified
    against, a PEM file or a directory of hashed names (/etc/grid-security/certificates). verify: one of
    VERIFY; server side: whether a client certificate is asked for ("none"), checked when sent
    ("optional") or needed ("required"); client side: "required" (default), or "none" to skip verifying the
    server (insecure_skip_verify). ca_file=None on a verifying client means the system CAs.
    """

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    verify: str = "required"
    server: bool = False

    @property
    def insecure_skip_verify(self) -> bool:
        """A client that does not verify the server's certificate."""
        return not self.server and self.verify == "none"

    @property
    def requests_verify(self) -> bool | str:
        """The `verify` argument of requests: False, True (system CAs) or the CA file/directory."""
        if self.insecure_skip_verify:
            return False
        return self.ca_file or True

    @property
    def requests_cert(self) -> tuple[str, str] | str | None:
        """The `cert` argument of requests."""
        if self.cert_file and self.key_file:
            return (self.cert_file, self.key_file)
        return self.cert_file

    def _new(self) -> ssl.SSLContext:
        if self.verify not in VERIFY:
            raise ValueError(f"verify {self.verify!r}: expected one of {', '.join(VERIFY)}")
        if self.server:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = MIN_VERSION
            ctx.verify_mode = VERIFY[self.verify]
        else:
            ctx = ssl.create_default_context()
            if self.verify == "none":
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _steps(self) -> list[tuple[str, Callable[[ssl.SSLContext], None]]]:
        """(field, load into a context) for each file in use, in the order context() loads them."""
        steps: list[tuple[str, Callable[[ssl.SSLContext], None]]] = []
        if self.server and not self.cert_file:
            raise ValueError("a TLS server needs cert_file")
        if self.cert_file:
            steps.append(("cert_file", self._load_cert))
        if self.ca_file and self.verify != "none":
            steps.append(("ca_file", self._load_ca))
        elif self.server and self.verify != "none":
            raise ValueError(f"verify {self.verify!r} needs a client CA file or directory (ca_file)")
        return steps

    def _load_cert(self, ctx: ssl.SSLContext) -> None:
        assert self.cert_file is not None
        for field, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
            if path and not os.path.isfile(path):
                raise TLSFileError(field, f"no such file: {_show(path)}")
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            key = f", {_show(self.key_file)}" if self.key_file else ""
            raise TLSFileError("cert_file", f"cannot load the certificate and key ({_show(self.cert_file)}{key}): "
                                            f"{exc}") from None

    def _load_ca(self, ctx: ssl.SSLContext) -> None:
        ca = self.ca_file
        assert ca is not None
        if not os.path.exists(ca):
            raise TLSFileError("ca_file", f"no such file or directory: {_show(ca)}")
        if os.path.isdir(ca):
            try:
                hashed = [n for n in os.listdir(ca) if HASHED_NAME.match(n)]
            except OSError as exc:
                raise TLSFileError("ca_file", f"directory {_show(ca)} is not readable: {exc.strerror}") from None
            if not hashed:
                raise TLSFileError("ca_file", f"directory {_show(ca)} has no hashed CA names (<hash>.0); run "
                                              f"`openssl rehash {ca}`")
            ctx.load_verify_locations(capath=ca)
            return
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise TLSFileError("ca_file", f"{_show(ca)} holds no usable PEM CA certificate ({exc})") from None

    def context(self) -> ssl.SSLContext:
        """A new SSLContext from the files as they are now.

        Raises TLSFileError (a ValueError naming the field) when a file is missing or unusable, ValueError
        for settings that cannot go together (a server without cert_file, verify without ca_file).
        """
        ctx = self._new()
        for _field, load in self._steps():
            load(ctx)
        return ctx

    def problems(self) -> list[TLSFileError]:
        """Every file in use that is missing or unusable (each loaded on its own, as context() loads it)."""
        out = []
        for _field, load in self._steps():
            try:
                load(self._new())
            except TLSFileError as exc:
                out.append(exc)
        return out


def cert_not_after_s(path: str) -> float:
    """notAfter (epoch seconds) of the first certificate in the PEM file PATH (a server's own certificate).

    Raises TLSFileError("cert_file", ...) when the file cannot be read or holds no PEM certificate.
    """
    from cryptography import x509  # here: importing it costs every `vobox-agent` start ~40 ms

    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
        return x509.load_pem_x509_certificate(data).not_valid_after_utc.timestamp()
    except OSError as exc:
        raise TLSFileError("cert_file", f"cannot read {_show(path)}: {exc.strerror}") from None
    except ValueError as exc:
        raise TLSFileError("cert_file", f"{_show(path)} holds no PEM certificate ({exc})") from None


def server(cert_file: str, key_file: str | None = None, client_ca: str | None = None,
           verify_client: str = "none") -> TLSSettings:
    """Server-side settings (the webhook): its certificate and key, the client CAs and verify_client (VERIFY)."""
    return TLSSettings(cert_file=cert_file, key_file=key_file, ca_file=client_ca, verify=verify_client, server=True)


def client(ca_file: str | None = None, client_cert: str | None = None, client_key: str | None = None,
           insecure_skip_verify: bool = False) -> TLSSettings:
    """Client-side settings (InfluxDB): CAs to verify the server with (None: the system CAs), client certificate."""
    return TLSSettings(cert_file=client_cert, key_file=client_key, ca_file=ca_file,
                       verify="none" if insecure_skip_verify else "required")
