"""HTTP/1.1 and HTTPS (IPv4 and IPv6): one request per host:port, all at once; status codes and an optional body regex.

The request and the answer are handled by h11 (a sans-I/O HTTP/1.1 parser: the
sockets stay on our own selector, and chunked or length-delimited bodies are
parsed right). A failed connect points at l4; a failed TLS handshake, no answer,
an unparseable answer, a status not in `status` (default any 2xx) or a body that
does not match `body` at l7. https results carry the certificate's notAfter.
"""
from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probes import dialogue, tls
from probes.dialogue import Verdict
from probes.exchange import Recorder
from probes.tcp import compile_expect, excerpt
from probes.types import ProbeResult, Target, service_port, spec_as

if TYPE_CHECKING:
    import h11

NAME = "http"
FAMILY = None  # both
NEEDS_RAW = False
LAYER = "l7"  # a failed answer; a failed connect before it points at l4
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
MAX_BODY_BYTES = 1 << 20  # the body regex sees at most this much
USER_AGENT = "vobox-agent"
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]+")
_PATH = re.compile(r"/[\x21-\x7e]*")


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """One request: method, path, accepted status codes (empty: any 2xx), body regex, Host header, and TLS options."""

    method: str = "GET"
    path: str = "/"
    status: tuple[int, ...] = ()
    body: str | None = None
    host: str | None = None
    tls: bool = False
    server_name: str | None = None
    ca_file: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.status, list):  # from a config file; a tuple keeps the spec hashable
            object.__setattr__(self, "status", tuple(self.status))

    def check(self) -> None:
        """Raise ValueError naming the field that is wrong."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ValueError(f"path must start with / and hold no spaces or control characters, got {self.path!r}")
        if not isinstance(self.status, tuple) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in self.status):
            raise ValueError(f"status must be a list of HTTP status codes 100-599 (empty: any 2xx), "
                             f"got {self.status!r}")
        if self.body is not None:
            if not isinstance(self.body, str):
                raise ValueError(f"body must be a string (a regular expression), got {self.body!r}")
            compile_expect(self.body, "body")
        if self.host is not None and (not isinstance(self.host, str) or not _HOST.fullmatch(self.host)):
            raise ValueError(f"host must be a host name or address (optionally :port), got {self.host!r}")
        if not isinstance(self.tls, bool):
            raise ValueError(f"tls must be true or false, got {self.tls!r}")
        if not self.tls and (self.server_name is not None or self.ca_file is not None or self.verify is not True):
            raise ValueError("server_name, ca_file and verify are for tls = true")
        tls.check_tls_fields(self.server_name, self.ca_file, self.verify)

    def status_ok(self, code: int) -> bool:
        """Is CODE an accepted status."""
        return code in self.status if self.status else 200 <= code <= 299


def host_header(spec: HttpSpec, address: str, port: int) -> str:
    """The Host header: the spec's, else the address (bracketed for IPv6) with the port unless it is the default."""
    if spec.host is not None:
        return spec.host
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return host if port == (443 if spec.tls else 80) else f"{host}:{port}"


def host_name(host: str) -> str:
    """The name part of a Host header value ("[2001:db8::1]:8443" -> "2001:db8::1", "a.example:80" -> "a.example")."""
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class ResponseReader:
    """Parses one HTTP response with h11 and judges its status and body."""

    __slots__ = ("spec", "conn", "body_re", "body", "status_code", "received", "start")

    def __init__(self, spec: HttpSpec, conn: h11.Connection):
        self.spec, self.conn = spec, conn
        self.body_re = compile_expect(spec.body, "body") if spec.body is not None else None
        self.body, self.received, self.start = b"", 0, b""
        self.status_code: int | None = None

    def feed(self, data: bytes) -> Verdict | None:
        """Decide on the answer so far (b"": end of stream)."""
        import h11

        self.received += len(data)
        if len(self.start) < 5:  # not HTTP at all (another protocol on the port): say so now, not at the deadline
            seen, self.start = self.start + data, (self.start + data)[:5]
            if not b"HTTP/".startswith(self.start):
                return Verdict(False, f"bad response: not HTTP: {excerpt(seen)}")
        try:
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.Response):
                    self.status_code = event.status_code
                    if not self.spec.status_ok(event.status_code):
                        return Verdict(False, f"status {event.status_code}", event.status_code)
                    if self.body_re is None:
                        return Verdict(True, None, event.status_code)
                elif isinstance(event, h11.Data):
                    if len(self.body) < MAX_BODY_BYTES:
                        self.body = (self.body + bytes(event.data))[:MAX_BODY_BYTES]
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    if self.status_code is None:
                        return Verdict(False, "closed without a response")
                    return self._judge_body()
        except h11.RemoteProtocolError as exc:
            if self.received == 0:
                return Verdict(False, "closed without a response")
            return Verdict(False, f"bad response: {exc}", self.status_code)

    def _judge_body(self) -> Verdict:
        if self.body_re is not None and not self.body_re.search(self.body):
            return Verdict(False, f"body does not match: {excerpt(self.body)}", self.status_code)
        return Verdict(True, None, self.status_code)

    def at_deadline(self) -> Verdict:
        """Nothing (or not all) came in time."""
        if self.received == 0:
            return Verdict(False, "no answer (timeout)")
        if self.status_code is None:
            return Verdict(False, "incomplete response (timeout)")
        return Verdict(False, "incomplete body (timeout)", self.status_code)


def job_for(target: Target, contexts: tls.Contexts) -> dialogue.Job | str:
    """The request an http target asks for, or why it cannot be tried."""
    import h11  # here, not at the top: `vobox-agent` starts without it unless http is probed

    spec = spec_as(target, HttpSpec) or HttpSpec()
    port = service_port(target)
    conn = h11.Connection(our_role=h11.CLIENT)
    headers = [("Host", host_header(spec, target.address, port)), ("User-Agent", USER_AGENT), ("Accept", "*/*"),
               ("Connection", "close")]
    if spec.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", "0"))
    request = conn.send(h11.Request(method=spec.method, target=spec.path, headers=headers))
    request += conn.send(h11.EndOfMessage())
    job = dialogue.Job(target.address, port, request=request, reader=ResponseReader(spec, conn))
    if spec.tls:
        ctx = contexts.get(spec.ca_file, spec.verify)
        if isinstance(ctx, str):
            return ctx
        name = spec.server_name if spec.server_name is not None or spec.host is None else host_name(spec.host)
        job.tls, job.server_hostname = ctx, tls.server_hostname(name, target.address, spec.verify)
    return job


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Send every target its request once, all at once; results in input order with the status code."""
    contexts = tls.Contexts()
    jobs = [job_for(t, contexts) for t in targets]
    outcomes = iter(dialogue.run([j for j in jobs if isinstance(j, dialogue.Job)], timeout_s, interface))
    results = []
    for target, job in zip(targets, jobs, strict=True):
        if isinstance(job, str):
            results.append(ProbeResult(target.address, NAME, target.port, False, None, job, None, time.time(), LAYER))
            continue
        d = next(outcomes)
        not_after_s = days_left = None
        if d.peer_cert_der is not None:
            not_after_s = tls.cert_dates(d.peer_cert_der)[1]
            days_left = (not_after_s - d.end_s) / tls.DAY_S
        results.append(ProbeResult(target.address, NAME, target.port, d.ok,
                                   (d.end_s - d.start_s) * 1000.0 if d.ok else None, d.error, None, d.end_s, d.layer,
                                   d.status_code, not_after_s, days_left))
    return results


SPEC = HttpSpec
