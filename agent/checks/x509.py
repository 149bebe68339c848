"""`x509`: days left of a certificate or proxy file (PEM, first certificate = the leaf); expired fails, < warn_days warns."""
from __future__ import annotations

from typing import TYPE_CHECKING

from agent.checks.types import Check, Judged

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

NAME = "x509"
KEYS = ("path", "warn_days")
DAY_S = 86400.0
MAX_BYTES = 1 << 20
# A proxy certificate: RFC 3820's ProxyCertInfo extension (id-pe-proxyCertInfo), or the pre-RFC one of Globus
# Toolkit 3 (draft proxies); legacy Globus proxies have neither and a last subject CN of "proxy" or
# "limited proxy" (https://www.ietf.org/rfc/rfc3820.txt section 3.8; Globus GSI's proxy types).
PROXY_CERT_INFO_OIDS = ("1.3.6.1.5.5.7.1.14", "1.3.6.1.4.1.3536.1.222")
LEGACY_PROXY_CNS = ("proxy", "limited proxy")


def is_proxy(cert: Certificate) -> bool:
    """True when CERT (a cryptography x509.Certificate) is a grid proxy certificate, by the rules above."""
    from cryptography.x509.oid import NameOID

    if any(ext.oid.dotted_string in PROXY_CERT_INFO_OIDS for ext in cert.extensions):
        return True
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return bool(cns) and str(cns[-1].value).lower() in LEGACY_PROXY_CNS


def argv(check: Check) -> list[str]:
    """cat of the file, inside the container; parsed here with `cryptography`."""
    return ["cat", "--", check.path or "/"]


def judge(check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged:
    """Parse the first PEM certificate; a proxy file's first one is the proxy, which expires first."""
    if returncode != 0:
        return Judged(False, f"cannot read {check.path} (exit {returncode})")
    from cryptography import x509  # here: importing it costs every `vobox-agent` start ~40 ms

    try:
        cert = x509.load_pem_x509_certificate(stdout[:MAX_BYTES])
    except ValueError as exc:
        return Judged(False, f"{check.path}: no PEM certificate ({exc})")
    not_after_s = cert.not_valid_after_utc.timestamp()
    proxy = is_proxy(cert)
    not_before_s = cert.not_valid_before_utc.timestamp()
    days_left = (not_after_s - now_s) / DAY_S
    if days_left < 0:
        return Judged(False, f"{check.path}: certificate expired {-days_left:.1f} days ago", days_left=days_left,
                      not_after_s=not_after_s, proxy=proxy)
    if not_before_s > now_s:
        return Judged(False, f"{check.path}: certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
                      days_left=days_left, not_after_s=not_after_s, proxy=proxy)
    warning = None
    if check.warn_days is not None and days_left < check.warn_days:
        warning = f"{check.path}: certificate expires in {days_left:.1f} days (< {check.warn_days:g})"
    return Judged(True, warning=warning, days_left=days_left, not_after_s=not_after_s, proxy=proxy)
