"""Topic webhook: its TLS certificate and key (readable, matching, days left), the client CAs (loadable, hashed)."""
from __future__ import annotations

import ipaddress
import os
import ssl
import time
from typing import Any

from agent import tls
from agent.ops.doctor.results import CheckResult, cfg_value, failed, passed, warned

# A certificate expiring within this many days is a warning (renew it, then `systemctl reload vobox-agent`).
WARN_DAYS = 30.0
_RELOAD = "renew it, then `systemctl reload vobox-agent` (SIGHUP: the new certificate is served without a restart)"


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_webhook(rem: Any, now_s: float | None = None) -> list[CheckResult]:
    """The webhook's TLS files when [remediation] webhook_listen is set: certificate, key, days left, client CAs."""
    listen = cfg_value(rem, "webhook_listen")
    if not listen or not cfg_value(rem, "enabled", default=False):
        return []
    cert_file = cfg_value(rem, "webhook_cert_file")
    if not cert_file:
        host = cfg_value(rem, "webhook_host")
        if _loopback(host):
            return [passed("webhook tls", f"plain HTTP on loopback ({listen}): the token stays on this host")]
        return [warned("webhook tls", f"plain HTTP on {listen}: the bearer token crosses the network in clear",
                       "set [remediation] webhook_cert_file and webhook_key_file (the host certificate), see "
                       "the operator guide, \"Webhook over TLS\"")]
    now_s = time.time() if now_s is None else now_s
    results = [_check_cert(cert_file, cfg_value(rem, "webhook_key_file"), now_s)]
    verify = cfg_value(rem, "webhook_verify_client", default="none")
    if verify != "none":
        results.append(_check_ca(cfg_value(rem, "webhook_client_ca_file"), verify, cert_file,
                                 cfg_value(rem, "webhook_key_file")))
    return results


def _check_cert(cert_file: str, key_file: str | None, now_s: float) -> CheckResult:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    name = "webhook certificate"
    key_path = key_file or cert_file
    try:
        with open(cert_file, "rb") as fh:
            cert_pem = fh.read()
        with open(key_path, "rb") as fh:
            key_pem = fh.read()
    except OSError as exc:
        return failed(name, f"cannot read {exc.filename}: {exc.strerror}",
                      "make the certificate and key readable by the agent's user (the key 0600)")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        return failed(name, f"{cert_file}: not a PEM certificate ({exc})", "point webhook_cert_file at the PEM "
                      "certificate (e.g. /etc/grid-security/hostcert.pem)")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        return failed(name, f"{key_path}: no unencrypted PEM private key ({exc})",
                      "point webhook_key_file at the certificate's key, without a passphrase "
                      "(e.g. /etc/grid-security/hostkey.pem)")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        return failed(name, f"the key {key_path} does not match the certificate {cert_file}",
                      "give the key the certificate was issued for")
    subject = cert.subject.rfc4514_string()
    days = (cert.not_valid_after_utc.timestamp() - now_s) / 86400
    if days < 0:
        return failed(name, f"{subject}: expired {-days:.0f} days ago ({cert.not_valid_after_utc:%Y-%m-%d})", _RELOAD)
    if cert.not_valid_before_utc.timestamp() > now_s:
        return failed(name, f"{subject}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                      "check the clock, or wait")
    refused = tls.server(cert_file, key_file).problems()   # the one "is it usable" (agent.tls), as the webhook loads it
    if refused:
        return failed(name, f"OpenSSL refuses {cert_file}: {refused[0].message}")
    detail = f"{subject}, key matches, {days:.0f} days left (until {cert.not_valid_after_utc:%Y-%m-%d})"
    if days < WARN_DAYS:
        return warned(name, detail, _RELOAD)
    return passed(name, detail)


def _check_ca(ca: str | None, verify: str, cert_file: str, key_file: str | None) -> CheckResult:
    name = "webhook client CAs"
    if not ca:
        return failed(name, f"webhook_verify_client = {verify!r} but no webhook_client_ca_file",
                      "set webhook_client_ca_file (a PEM file or /etc/grid-security/certificates)")
    # the one "is it usable" (agent.tls), as the webhook loads it
    problems = [p for p in tls.server(cert_file, key_file, ca, verify).problems() if p.field == "ca_file"]
    if problems:
        message = problems[0].message
        if "hashed CA names" in message:
            return failed(name, f"{message}: OpenSSL finds no CA in it",
                          f"`openssl rehash {ca}` (fetch-crl/IGTF packages keep /etc/grid-security/certificates "
                          "hashed)")
        if "not readable" in message:
            return failed(name, message, "make it readable by the agent's user")
        return failed(name, message, "point webhook_client_ca_file at the PEM file of the CAs that issue the "
                      "clients' certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if os.path.isdir(ca):
        hashed = [n for n in os.listdir(ca) if tls.HASHED_NAME.match(n)]
        broken = []   # which hashed names hold no certificate: a detail for the admin, beyond "usable"
        for n in sorted(hashed):
            try:
                ctx.load_verify_locations(cafile=os.path.join(ca, n))
            except (ssl.SSLError, OSError):
                broken.append(n)
        if len(broken) == len(hashed):
            return failed(name, f"directory {ca}: none of its {len(hashed)} hashed names holds a PEM certificate")
        detail = f"directory {ca}: {len(hashed) - len(broken)} hashed CA certificates, clients {verify}"
        if broken:
            return warned(name, detail + f"; unreadable: {', '.join(broken[:5])}", f"`openssl rehash {ca}`")
        return passed(name, detail)
    ctx.load_verify_locations(cafile=ca)
    count = ctx.cert_store_stats().get("x509_ca", 0)
    return passed(name, f"{ca}: {count} CA certificate(s), clients {verify}")
