"""Alert receiver: POST /webhook with Grafana or Alertmanager payloads, bearer token, size limit; GET /healthz.

Optionally over TLS (a server certificate reloaded by `reload()`, on SIGHUP) with client certificates
verified against a CA file or a hashed CA directory; failed authentications are limited per peer (429).
Served by remediations.httpserver (one event loop, bounded connections and deadlines), not a thread per client.
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from agent.secretfile import read_secret as read_token  # the one secret-file reader
from agent.tls import VERIFY, TLSSettings  # the one TLS type: the server context is TLSSettings.context()
from remediations.httpserver import HTTPServer, Limits, Request, Response
from remediations.model import RecordOutcome, RequestResult

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20
# verify_client values (Apache's SSLVerifyClient none/optional/require): is a client certificate asked for, needed?
VERIFY_CLIENT: dict[str, ssl.VerifyMode] = VERIFY
# Short names of the subject attributes grid DNs use, for the log (OpenSSL's one-line form: /DC=ch/O=.../CN=...).
_RDN_SHORT = {"countryName": "C", "stateOrProvinceName": "ST", "localityName": "L", "organizationName": "O",
              "organizationalUnitName": "OU", "commonName": "CN", "domainComponent": "DC",
              "emailAddress": "emailAddress", "userId": "UID"}


class BadRequest(Exception):
    """A payload we refuse with 400; the message says what is wrong."""


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
        reason: str | None = None   # why this alert is ignored; None: it acts
        if status != "firing":
            reason = f"status {status!r}: only firing alerts act"
        elif labels.get("remediate") == "false":
            reason = (f"alert {name!r} is labelled remediate=\"false\": it informs, it never acts "
                      "(e.g. VoboxBoxDegraded: flapping is not fixed by a restart)")
        elif not isinstance(box, str) or not box:
            reason = (f"alert {name!r} has no label `box`: not about a box (e.g. Grafana's DatasourceError or "
                      "NoData, or another rule routed to this contact point)")
        elif box not in boxes:
            reason = f"unknown box {box!r}; configured: {', '.join(sorted(boxes))}"
        elif action is not None and not isinstance(action, str):
            reason = f"label `action` must be a string, got {action!r}"
        elif (box, action) not in firing:
            firing.append((box, action))
        if reason is not None:
            ignored.append({"alert": i, "alertname": name, "box": box, "status": status, "reason": reason})
    return firing, ignored


def _json(code: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer; every error (>= 400) closes the connection."""
    return Response(code, json.dumps(body).encode(), (("Content-Type", "application/json"), *(headers or {}).items()),
                    close=code >= 400)


class _Webhook:
    """The webhook's requests (remediations.httpserver.Handler): routes, limiter, token, body, alerts."""

    def __init__(self, token: str | None, boxes: Collection[str], submit: Callable[[str, str | None], RequestResult],
                 max_bytes: int, limiter: AuthLimiter | None) -> None:
        self.token, self.boxes, self.submit, self.max_bytes, self.limiter = token, frozenset(boxes), submit, max_bytes, \
            limiter

    def error(self, status: int, message: str) -> Response:
        """The transport's own refusals (400, 413, 431), in the webhook's JSON form."""
        if status != 413:
            log.warning("webhook: %d: %s", status, message)
        return _json(status, {"error": message})

    @staticmethod
    def _peer(request: Request) -> str:
        """The peer address, with the client certificate's subject when one was presented (for the log)."""
        subject = cert_subject(request.peer_cert)
        return f"{request.peer} ({subject})" if subject else request.peer

    def _authorized(self, request: Request) -> bool:
        token = self.token
        if token is None:   # verify_client = "required" and no token file: the verified certificate is the credential
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    def head(self, request: Request) -> Response | None:
        """Answers that need no body: paths, 429 to a locked-out peer, 401, a Content-Length over the limit."""
        if request.method == "GET":
            if request.target == "/healthz":
                return _json(200, {"status": "ok"})
            return _json(404, {"error": f"no such path {request.target}; use POST /webhook or GET /healthz"})
        if request.method != "POST":
            return _json(405, {"error": f"method {request.method} not allowed; use POST /webhook or GET /healthz"},
                         {"Allow": "GET, POST"})
        if request.target != "/webhook":
            return _json(404, {"error": f"no such path {request.target}; use POST /webhook"})
        limiter = self.limiter
        wait_s = limiter.retry_after_s(request.peer) if limiter is not None else 0.0
        if wait_s > 0:
            log.debug("webhook: 429 to %s: locked out for another %.0f s", self._peer(request), wait_s)
            return _json(429, {"error": "too many failed authentications from this address; retry later"},
                         {"Retry-After": str(max(1, math.ceil(wait_s)))})
        if not self._authorized(request):
            # The peer and its certificate subject, never what it sent as a token.
            log.warning("webhook: refused request from %s: missing or wrong bearer token", self._peer(request))
            if limiter is not None and limiter.failed(request.peer):
                log.warning("webhook: %s locked out for %g s after %d failed authentications (429 until then)",
                            self._peer(request), limiter.window_s, limiter.max_failures)
            return _json(401, {"error": "missing or wrong bearer token"})
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        length = request.headers.get("content-length")
        if length is None and not chunked:
            return self.error(400, "Content-Length or chunked body required")
        # h11 refused a malformed or conflicting Content-Length already (400); this is the size check, before reading.
        n = int(length.split(",")[0]) if length is not None and not chunked else 0
        if n > self.max_bytes:
            return _json(413, {"error": f"body of {n} bytes over the limit of {self.max_bytes} bytes"})
        return None

    def handle(self, request: Request, body: bytes) -> Response:
        """POST /webhook with its body: the alerts parsed and submitted; 202 with what was queued, refused, ignored."""
        try:
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, ValueError) as exc:
                raise BadRequest(f"malformed JSON: {exc}") from None
            firing, ignored = parse_alerts(payload, self.boxes)
        except BadRequest as exc:
            log.warning("webhook: 400 from %s: %s", request.peer, exc)
            return _json(400, {"error": str(exc)})
        queued, refused = [], []
        for item in ignored:
            log.info("webhook: alert ignored: %s", item["reason"])
        for box, action in firing:
            try:
                res: RequestResult = self.submit(box, action)
            except Exception as exc:  # answer the alert, never drop it silently
                log.exception("webhook: box %s action %s: request failed", box, action)
                res = RequestResult(box, action, False, f"internal error: {type(exc).__name__}: {exc}",
                                    outcome=RecordOutcome.REFUSED)
            item = {"box": box, "action": res.action, "outcome": res.outcome}
            if res.accepted:
                queued.append(item)
            else:
                refused.append({**item, "reason": res.reason})
            log.info("webhook: box %s action %s %s", box, res.action,
                     "queued" if res.accepted else f"{res.outcome}: {res.reason}")
        return _json(202, {"queued": queued, "refused": refused, "ignored": ignored})


# TLS handshake failures that are a refused client certificate (counted as failed authentications).
_CERT_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_REQUIRED",
                  "NO_CERTIFICATE_RETURNED")


class WebhookReceiver:
    """The alert receiver; `submit(box, action)` is e.g. `lambda b, a: service.request(b, a, "alert")`.

    token: the bearer token every POST must carry; None only with tls.verify = "required" (the
    verified client certificate is then the credential). tls: TLSSettings, or None for plain HTTP.
    limiter: AuthLimiter for failed authentications, or None. token_file: re-read by reload().
    limits: the transport's bounds (remediations.httpserver.Limits: deadlines, connections per source and in
    all, header size); its max_body_bytes is set to max_bytes.
    """

    def __init__(self, host: str, port: int, token: str | None, boxes: Collection[str],
                 submit: Callable[[str, str | None], RequestResult], max_bytes: int = DEFAULT_MAX_BYTES, *,
                 tls: TLSSettings | None = None, limiter: AuthLimiter | None = None,
                 token_file: str | None = None, limits: Limits | None = None) -> None:
        if not token and not (tls is not None and tls.verify == "required"):
            raise ValueError("webhook token must not be empty (only verify_client = \"required\" may go without)")
        self._context = tls.context() if tls is not None else None   # unusable files fail here, before binding
        self._server = _Webhook(token or None, boxes, submit, max_bytes, limiter)
        self._http = HTTPServer(host, port, self._server, name="webhook",
                                limits=replace(limits or Limits(), max_body_bytes=max_bytes),
                                tls=(lambda: self._context) if tls is not None else None,
                                on_handshake_failed=self._handshake_failed)
        self._tls, self._token_file = tls, token_file

    def _handshake_failed(self, peer: str, exc: BaseException) -> None:
        """Log a failed TLS handshake with the peer; a refused client certificate counts as a failed authentication."""
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        if not (isinstance(exc, ssl.SSLError) and any(r in str(exc) for r in _CERT_REFUSALS)):
            hint = " (a plain HTTP request: this listener is TLS only, use https://)" if why == "HTTP_REQUEST" else ""
            log.info("webhook: TLS handshake with %s failed: %s%s", peer, why, hint)
            return
        limiter = self._server.limiter
        if limiter is not None and limiter.retry_after_s(peer) > 0:
            log.debug("webhook: refused TLS client %s (locked out): %s", peer, why)
            return
        log.warning("webhook: refused TLS client %s: client certificate not accepted (%s)", peer, why)
        if limiter is not None and limiter.failed(peer):
            log.warning("webhook: %s locked out for %g s after %d failed authentications (429 until then)", peer,
                        limiter.window_s, limiter.max_failures)

    def set_boxes(self, boxes: Collection[str]) -> None:
        """Replace the box names alerts may name (discovery changes the box set)."""
        self._server.boxes = frozenset(boxes)

    def reload(self) -> bool:
        """Load the TLS files (and the token file) again; new connections use them. False (old ones kept) on error."""
        ok = True
        if self._tls is not None:
            try:
                self._context = self._tls.context()
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
        return self._http.address

    def start(self) -> None:
        """Serve from the server's event-loop thread (remediations.httpserver)."""
        self._http.start()
        lim = self._http.limits
        log.info("webhook: listening on %s:%d (%s; at most %d connections per source, %d in all, %g s per request)",
                 *self.address, "plain HTTP" if self._tls is None else "TLS only, " + (
                     "no client certificates" if self._tls.verify == "none"
                     else f"client certificates {self._tls.verify}"),
                 lim.max_per_source, lim.max_connections, lim.request_timeout_s)

    def stop(self) -> None:
        """Stop serving and close the socket (safe when never started)."""
        self._http.stop()
