"""Alert receiver: POST /webhook with Grafana or Alertmanager payloads, bearer token, size limit; GET /healthz."""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from remediations.model import RequestResult

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20


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


def parse_alerts(payload: Any, boxes: Collection[str]) -> tuple[list[tuple[str, str | None]], list[dict]]:
    """(firing (box, action) pairs in order, ignored alerts with their reason) from a Grafana or Alertmanager payload.

    Only a payload that is not a notification at all (no `alerts` list, an alert that is not an
    object) is a BadRequest. Alerts that are not about a box (Grafana's DatasourceError/NoData,
    other rules routed to the same contact point), not firing, or about an unknown box are
    ignored with the reason; an unknown action is passed on (the engine refuses and records it).
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

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
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

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.server.token.encode())

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
        if not self._authorized():
            log.warning("webhook: refused request from %s: missing or wrong bearer token", self.client_address[0])
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    token: str
    boxes: Collection[str]
    submit: Callable[[str, str | None], RequestResult]
    max_bytes: int


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebhookReceiver:
    """The alert receiver; `submit(box, action)` is e.g. `lambda b, a: service.request(b, a, "alert")`."""

    def __init__(self, host: str, port: int, token: str, boxes: Collection[str],
                 submit: Callable[[str, str | None], RequestResult], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not token:
            raise ValueError("webhook token must not be empty")
        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, port), _Handler)
        self._server.token, self._server.boxes = token, frozenset(boxes)
        self._server.submit, self._server.max_bytes = submit, max_bytes
        self._thread: threading.Thread | None = None

    def set_boxes(self, boxes: Collection[str]) -> None:
        """Replace the box names alerts may name (discovery changes the box set)."""
        self._server.boxes = frozenset(boxes)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 picks a free one)."""
        return self._server.server_address[:2]

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()
        log.info("webhook: listening on %s:%d", *self.address)

    def stop(self) -> None:
        """Stop serving and close the socket (safe when never started)."""
        if self._thread:
            self._server.shutdown()  # waits for serve_forever, so only when it runs
            self._thread.join(5)
        self._server.server_close()
