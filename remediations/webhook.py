"""Alert receiver: POST /webhook with Grafana or Alertmanager payloads, bearer token, size limit; GET /healthz.

Optionally over TLS (a server certificate reloaded by `reload()`, on SIGHUP) with client certificates
verified against a CA file or a hashed CA directory; failed authentications are limited per peer (429).
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from remediations.model import RequestResult

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20
# verify_client values (Apache's SSLVerifyClient none/optional/require): is a client certificate asked for, needed?
VERIFY_CLIENT: dict[str, ssl.VerifyMode] = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                                            "required": ssl.CERT_REQUIRED}
HANDSHAKE_TIMEOUT_S = 10.0
# Short names of the subject attributes grid DNs use, for the log (OpenSSL's one-line form: /DC=ch/O=.../CN=...).
_RDN_SHORT = {"countryName": "C", "stateOrProvinceName": "ST", "localityName": "L", "organizationName": "O",
              "organizationalUnitName": "OU", "commonName": "CN", "domainComponent": "DC",
              "emailAddress": "emailAddress", "userId": "UID"}


class BadRequest(Exception):
    """A payload we refuse with 400; the message says what is wrong."""


class TooLarge(Exception):
    """A body over the size limit (413)."""


def read_token(path: str) -> str:
    """The bearer token from PATH (whitespace stripped); ValueError when the file is empty."""
    with open(path, encoding="utf-8") as fh:
        token = fh.read().strip()
    if not token:
        raise ValueError(f"webhook token file {path} is empty")
    return token


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The webhook's TLS files: server certificate and key (PEM), the client CAs (a PEM file or a hashed directory).

    verify_client: "none" (no client certificate asked), "optional" (verified when sent), "required".
    A CA directory is read as OpenSSL's CApath: files named <subject hash>.0 (`openssl rehash DIR`).
    """

    cert_file: str
    key_file: str | None = None
    client_ca: str | None = None
    verify_client: str = "none"

    def context(self) -> ssl.SSLContext:
        """A new server SSLContext from the files as they are now; ssl.SSLError/OSError/ValueError when unusable."""
        if self.verify_client not in VERIFY_CLIENT:
            raise ValueError(f"verify_client {self.verify_client!r}: expected one of {', '.join(VERIFY_CLIENT)}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.verify_mode = VERIFY_CLIENT[self.verify_client]
        if self.verify_client != "none":
            if not self.client_ca:
                raise ValueError(f"verify_client {self.verify_client!r} needs a client CA file or directory")
            if os.path.isdir(self.client_ca):
                ctx.load_verify_locations(capath=self.client_ca)
            else:
                ctx.load_verify_locations(cafile=self.client_ca)
        return ctx


class AuthLimiter:
    """Failed authentications per peer address in a fixed window: `max_failures` within `window_s`, then 429.

    The window starts at a peer's first failure; when it has failed max_failures times in it, every
    request from that peer is refused until the window ends. Thread-safe; `now` is time.monotonic.
    """

    def __init__(self, max_failures: int, window_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self._now = max_failures, window_s, now
        self._peers: dict[str, tuple[float, int]] = {}   # peer -> (window start, failures in it)
        self._lock = threading.Lock()

    def _current(self, peer: str, now: float) -> tuple[float, int]:
        start, count = self._peers.get(peer, (now, 0))
        return (now, 0) if now - start >= self.window_s else (start, count)

    def retry_after_s(self, peer: str) -> float:
        """Seconds until PEER may try again; 0 when it is not locked out."""
        with self._lock:
            now = self._now()
            start, count = self._current(peer, now)
            return max(0.0, start + self.window_s - now) if count >= self.max_failures else 0.0

    def failed(self, peer: str) -> bool:
        """Count a failed authentication of PEER; True when this one locks it out."""
        with self._lock:
            now = self._now()
            if len(self._peers) > 10_000:   # bounded memory: forget windows that ended
                self._peers = {p: v for p, v in self._peers.items() if now - v[0] < self.window_s}
            start, count = self._current(peer, now)
            self._peers[peer] = (start, count + 1)
            return count + 1 == self.max_failures


def cert_subject(cert: dict | None) -> str | None:
    """A peer certificate's subject (SSLSocket.getpeercert()) in OpenSSL's one-line form, /O=x/CN=y; None without."""
    if not cert or not cert.get("subject"):
        return None
    return "".join(f"/{_RDN_SHORT.get(k, k)}={v}" for rdn in cert["subject"] for k, v in rdn)


def parse_alerts(payload: Any, boxes: Collection[str]) -> tuple[list[tuple[str, str | None]], list[dict]]:
    """(firing (box, action) pairs in order, ignored alerts with their reason) from a Grafana or Alertmanager payload.

    Only a payload that is not a notification at all (no `alerts` list, an alert that is not an
    object) is a BadRequest. Alerts that are not about a box (Grafana's DatasourceError/NoData,
    other rules routed to the same contact point), not firing, labelled remediate="false", or about
    an unknown box are ignored with the reason; an unknown action is passed on (the engine refuses and records it).
    """
    if not isinstance(payload, dict):
        raise BadRequest("payload must be a JSON object with an `alerts` list")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise BadRequest("payload has no `alerts` list (expected a Grafana or Alertmanager webhook payload)")
    firing: list[tuple[str, str | None]] = []
    ignored: list[dict] = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels") or {}, dict):
            raise BadRequest(f"alerts[{i}]: expected an object with a `labels` object")
        labels = alert.get("labels") or {}
        status = alert.get("status", payload.get("status"))
        box, action = labels.get("box"), labels.get("action")
        name = labels.get("alertname")

        def ignore(reason: str) -> None:
            ignored.append({"alert": i, "alertname": name, "box": box, "status": status, "reason": reason})

        if status != "firing":
            ignore(f"status {status!r}: only firing alerts act")
        elif labels.get("remediate") == "false":
            ignore(f"alert {name!r} is labelled remediate=\"false\": it informs, it never acts "
                   "(e.g. VoboxBoxDegraded: flapping is not fixed by a restart)")
        elif not isinstance(box, str) or not box:
            ignore(f"alert {name!r} has no label `box`: not about a box (e.g. Grafana's DatasourceError or "
                   "NoData, or another rule routed to this contact point)")
        elif box not in boxes:
            ignore(f"unknown box {box!r}; configured: {', '.join(sorted(boxes))}")
        elif action is not None and not isinstance(action, str):
            ignore(f"label `action` must be a string, got {action!r}")
        elif (box, action) not in firing:
            firing.append((box, action))
    return firing, ignored


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's access log to logging
        log.debug("webhook %s: " + fmt, self.client_address[0], *args)

    def _reply(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"error": f"no such path {self.path}; use POST /webhook or GET /healthz"})

    def _peer(self) -> str:
        """The peer address, with the client certificate's subject when one was presented (for the log)."""
        subject = cert_subject(self.request.getpeercert()) if isinstance(self.request, ssl.SSLSocket) else None
        return f"{self.client_address[0]} ({subject})" if subject else self.client_address[0]

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:   # verify_client = "required" and no token file: the verified certificate is the credential
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    def _body(self) -> bytes:
        limit = self.server.max_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("malformed chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise TooLarge(f"body over {limit} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("Content-Length or chunked body required")
        try:
            n = int(length)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length!r}") from None
        if n < 0:
            raise BadRequest(f"bad Content-Length {length!r}")
        if n > limit:
            raise TooLarge(f"body of {n} bytes over the limit of {limit} bytes")
        return self.rfile.read(n)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        if self.path != "/webhook":
            self._reply(404, {"error": f"no such path {self.path}; use POST /webhook"})
            return
        limiter = self.server.limiter
        wait_s = limiter.retry_after_s(self.client_address[0]) if limiter is not None else 0.0
        if wait_s > 0:
            log.debug("webhook: 429 to %s: locked out for another %.0f s", self._peer(), wait_s)
            self._reply(429, {"error": "too many failed authentications from this address; retry later"},
                        {"Retry-After": str(max(1, math.ceil(wait_s)))})
            return
        if not self._authorized():
            # The peer and its certificate subject, never what it sent as a token.
            log.warning("webhook: refused request from %s: missing or wrong bearer token", self._peer())
            if limiter is not None and limiter.failed(self.client_address[0]):
                log.warning("webhook: %s locked out for %g s after %d failed authentications (429 until then)",
                            self._peer(), limiter.window_s, limiter.max_failures)
            self.close_connection = True
            self._reply(401, {"error": "missing or wrong bearer token"})
            return
        try:
            body = self._body()
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise BadRequest(f"malformed JSON: {exc}") from None
            firing, ignored = parse_alerts(payload, self.server.boxes)
        except TooLarge as exc:
            self._reply(413, {"error": str(exc)})
            return
        except BadRequest as exc:
            log.warning("webhook: 400 from %s: %s", self.client_address[0], exc)
            self._reply(400, {"error": str(exc)})
            return
        queued, refused = [], []
        for item in ignored:
            log.info("webhook: alert ignored: %s", item["reason"])
        for box, action in firing:
            try:
                res: RequestResult = self.server.submit(box, action)
            except Exception as exc:  # noqa: BLE001 - answer the alert, never drop it silently
                log.exception("webhook: box %s action %s: request failed", box, action)
                res = RequestResult(box, action, False, f"internal error: {type(exc).__name__}: {exc}",
                                    outcome="refused")
            item = {"box": box, "action": res.action, "outcome": res.outcome}
            if res.accepted:
                queued.append(item)
            else:
                refused.append({**item, "reason": res.reason})
            log.info("webhook: box %s action %s %s", box, res.action,
                     "queued" if res.accepted else f"{res.outcome}: {res.reason}")
        self._reply(202, {"queued": queued, "refused": refused, "ignored": ignored})


# TLS handshake failures that are a refused client certificate (counted as failed authentications).
_CERT_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_REQUIRED",
                  "NO_CERTIFICATE_RETURNED")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    token: str | None
    boxes: Collection[str]
    submit: Callable[[str, str | None], RequestResult]
    max_bytes: int
    limiter: AuthLimiter | None = None
    tls: ssl.SSLContext | None = None   # swapped whole by reload(): new connections get the new context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        ctx = self.tls
        if ctx is None:
            return sock, addr
        # No I/O here: the handshake runs in the connection's thread (finish_request), so a slow client
        # never blocks accept.
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            peer = client_address[0]
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self._handshake_failed(peer, exc)
                return
            request.settimeout(None)
        super().finish_request(request, client_address)

    def _handshake_failed(self, peer: str, exc: Exception) -> None:
        """Log a failed TLS handshake with the peer; a refused client certificate counts as a failed authentication."""
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        if not (isinstance(exc, ssl.SSLError) and any(r in str(exc) for r in _CERT_REFUSALS)):
            hint = " (a plain HTTP request: this listener is TLS only, use https://)" if why == "HTTP_REQUEST" else ""
            log.info("webhook: TLS handshake with %s failed: %s%s", peer, why, hint)
            return
        limiter = self.limiter
        if limiter is not None and limiter.retry_after_s(peer) > 0:
            log.debug("webhook: refused TLS client %s (locked out): %s", peer, why)
            return
        log.warning("webhook: refused TLS client %s: client certificate not accepted (%s)", peer, why)
        if limiter is not None and limiter.failed(peer):
            log.warning("webhook: %s locked out for %g s after %d failed authentications (429 until then)", peer,
                        limiter.window_s, limiter.max_failures)


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebhookReceiver:
    """The alert receiver; `submit(box, action)` is e.g. `lambda b, a: service.request(b, a, "alert")`.

    token: the bearer token every POST must carry; None only with tls.verify_client = "required" (the
    verified client certificate is then the credential). tls: TLSSettings, or None for plain HTTP.
    limiter: AuthLimiter for failed authentications, or None. token_file: re-read by reload().
    """

    def __init__(self, host: str, port: int, token: str | None, boxes: Collection[str],
                 submit: Callable[[str, str | None], RequestResult], max_bytes: int = DEFAULT_MAX_BYTES, *,
                 tls: TLSSettings | None = None, limiter: AuthLimiter | None = None,
                 token_file: str | None = None) -> None:
        if not token and not (tls is not None and tls.verify_client == "required"):
            raise ValueError("webhook token must not be empty (only verify_client = \"required\" may go without)")
        context = tls.context() if tls is not None else None   # unusable files fail here, before binding
        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, port), _Handler)
        self._server.token, self._server.boxes = token or None, frozenset(boxes)
        self._server.submit, self._server.max_bytes = submit, max_bytes
        self._server.limiter, self._server.tls = limiter, context
        self._tls, self._token_file = tls, token_file
        self._thread: threading.Thread | None = None

    def set_boxes(self, boxes: Collection[str]) -> None:
        """Replace the box names alerts may name (discovery changes the box set)."""
        self._server.boxes = frozenset(boxes)

    def reload(self) -> bool:
        """Load the TLS files (and the token file) again; new connections use them. False (old ones kept) on error."""
        ok = True
        if self._tls is not None:
            try:
                self._server.tls = self._tls.context()
                log.info("webhook: TLS certificate %s reloaded", self._tls.cert_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                log.error("webhook: TLS reload failed, still serving the previous certificate: %s", exc)
                ok = False
        if self._token_file:
            try:
                self._server.token = read_token(self._token_file)
            except (OSError, ValueError) as exc:
                log.error("webhook: token reload failed, the previous token still applies: %s", exc)
                ok = False
        return ok

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 picks a free one)."""
        return self._server.server_address[:2]

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()
        log.info("webhook: listening on %s:%d (%s)", *self.address,
                 "plain HTTP" if self._tls is None else "TLS only, " + (
                     "no client certificates" if self._tls.verify_client == "none"
                     else f"client certificates {self._tls.verify_client}"))

    def stop(self) -> None:
        """Stop serving and close the socket (safe when never started)."""
        if self._thread:
            self._server.shutdown()  # waits for serve_forever, so only when it runs
            self._thread.join(5)
        self._server.server_close()
