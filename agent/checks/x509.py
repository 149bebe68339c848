"""`x509`: days left of a certificate or proxy file (PEM, first certificate = the leaf); expired fails, < warn_days warns."""
from __future__ import annotations

from agent.checks.types import Check, Judged

NAME = "x509"
KEYS = ("path", "warn_days")
DAY_S = 86400.0
MAX_BYTES = 1 << 20


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
    not_before_s = cert.not_valid_before_utc.timestamp()
    days_left = (not_after_s - now_s) / DAY_S
    if days_left < 0:
        return Judged(False, f"{check.path}: certificate expired {-days_left:.1f} days ago", days_left=days_left,
                      not_after_s=not_after_s)
    if not_before_s > now_s:
        return Judged(False, f"{check.path}: certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
                      days_left=days_left, not_after_s=not_after_s)
    warning = None
    if check.warn_days is not None and days_left < check.warn_days:
        warning = f"{check.path}: certificate expires in {days_left:.1f} days (< {check.warn_days:g})"
    return Judged(True, warning=warning, days_left=days_left, not_after_s=not_after_s)
