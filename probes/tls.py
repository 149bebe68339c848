"""TLS (IPv4 and IPv6): a handshake per host:port, all at once; certificate days left, a warning below a threshold.

A failed connect points at l4; a handshake that fails or never completes, a
certificate that does not verify, is expired or not yet valid, at l7. A
certificate valid for fewer than `warn_days` is ok with a warning (data to show,
not a failure). Only the leaf certificate's dates are read (the chain is verified
by the handshake when `verify` is on).
"""
from __future__ import annotations

import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from probes import dialogue
from probes.exchange import Recorder
from probes.types import ProbeResult, Target, service_port, spec_as

NAME = "tls"
FAMILY = None  # both
NEEDS_RAW = False
LAYER = "l7"  # a failed handshake or certificate; a failed connect before it points at l4
DAY_S = 86400.0


def check_tls_fields(server_name: object, ca_file: object, verify: object) -> None:
    """Raise ValueError naming the TLS field that is wrong (shared by TlsSpec and HttpSpec)."""
    if server_name is not None and (not isinstance(server_name, str) or not server_name
                                    or any(c.isspace() for c in server_name)):
        raise ValueError(f"server_name must be a host name or address, got {server_name!r}")
    if not isinstance(verify, bool):
        raise ValueError(f"verify must be true or false, got {verify!r}")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not ca_file:
            raise ValueError(f"ca_file must be a path, got {ca_file!r}")
        if not os.path.isfile(ca_file):
            raise ValueError(f"ca_file {ca_file!r} is not a file")
        if not verify:
            raise ValueError("ca_file is for verify = true; with verify = false no certificate is checked")


@dataclass(frozen=True, slots=True)
class TlsSpec:
    """Handshake options: SNI/hostname to verify, CA file (None: system CAs), verify on/off, warning below (days)."""

    server_name: str | None = None
    ca_file: str | None = None
    verify: bool = True
    warn_days: float | None = None

    def check(self) -> None:
        """Raise ValueError naming the field that is wrong."""
        check_tls_fields(self.server_name, self.ca_file, self.verify)
        if self.warn_days is not None and (isinstance(self.warn_days, bool)
                                           or not isinstance(self.warn_days, (int, float)) or self.warn_days < 0):
            raise ValueError(f"warn_days must be a number of days >= 0, got {self.warn_days!r}")


class Contexts:
    """SSL client contexts of one sweep, one per (ca_file, verify); loading CAs costs milliseconds, so share them."""

    def __init__(self) -> None:
        self._made: dict[tuple[str | None, bool], ssl.SSLContext | str] = {}

    def get(self, ca_file: str | None, verify: bool) -> ssl.SSLContext | str:
        """The context, or the text of why it cannot be made (an unreadable CA file)."""
        key = (ca_file, verify)
        if key not in self._made:
            try:
                if verify:
                    ctx = ssl.create_default_context(cafile=ca_file)
                else:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._made[key] = ctx
            except (OSError, ssl.SSLError) as exc:
                self._made[key] = f"ca_file {ca_file}: {exc.strerror or exc}"
        return self._made[key]


def server_hostname(name: str | None, address: str, verify: bool) -> str | None:
    """The name to send as SNI and check the certificate against: NAME, else the address when verifying."""
    if name is not None:
        return name
    return address if verify else None  # an IP literal sends no SNI; verification then needs an IP SAN


def cert_dates(der: bytes) -> tuple[float, float]:
    """(notBefore, notAfter) of a DER certificate, epoch s."""
    from cryptography import x509  # only when a certificate is read: importing it costs a CLI start ~40 ms

    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def job_for(target: Target, contexts: Contexts) -> dialogue.Job | str:
    """The handshake a tls target asks for, or why it cannot be tried."""
    spec = spec_as(target, TlsSpec) or TlsSpec()
    ctx = contexts.get(spec.ca_file, spec.verify)
    if isinstance(ctx, str):
        return ctx
    return dialogue.Job(target.address, service_port(target), tls=ctx,
                        server_hostname=server_hostname(spec.server_name, target.address, spec.verify))


def judge_cert(der: bytes | None, now_s: float, warn_days: float | None) -> tuple[str | None, str | None, float | None,
                                                                                    float | None]:
    """(error, warning, not_after_s, days_left) for the peer certificate at NOW_S."""
    if der is None:
        return "tls: no peer certificate", None, None, None
    not_before_s, not_after_s = cert_dates(der)
    days_left = (not_after_s - now_s) / DAY_S
    if days_left < 0:
        return f"certificate expired {-days_left:.1f} days ago", None, not_after_s, days_left
    if not_before_s > now_s:
        return f"certificate not valid before {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(not_before_s))}", \
            None, not_after_s, days_left
    warning = None
    if warn_days is not None and days_left < warn_days:
        warning = f"certificate expires in {days_left:.1f} days (< {warn_days:g})"
    return None, warning, not_after_s, days_left


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Handshake with every target once, all at once; results in input order with the certificate's days left."""
    contexts = Contexts()
    jobs = [job_for(t, contexts) for t in targets]
    runnable = [j for j in jobs if isinstance(j, dialogue.Job)]
    outcomes = iter(dialogue.run(runnable, timeout_s, interface))
    results = []
    for target, job in zip(targets, jobs, strict=True):
        if isinstance(job, str):
            results.append(ProbeResult(target.address, NAME, target.port, False, None, job, None, time.time(), LAYER))
            continue
        d = next(outcomes)
        if not d.ok:
            results.append(ProbeResult(target.address, NAME, target.port, False, None, d.error, None, d.end_s,
                                       d.layer))
            continue
        spec = spec_as(target, TlsSpec) or TlsSpec()
        error, warning, not_after_s, days_left = judge_cert(d.peer_cert_der, d.end_s, spec.warn_days)
        results.append(ProbeResult(target.address, NAME, target.port, error is None,
                                   (d.end_s - d.start_s) * 1000.0 if error is None else None, error, None, d.end_s,
                                   None if error is None else LAYER, None, not_after_s, days_left, warning))
    return results


SPEC = TlsSpec
