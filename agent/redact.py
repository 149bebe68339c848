"""Secret redaction, the one place for it: container environment values, credential-like keys, known secret values.

Pure: every function takes the data and the known secret values and returns a redacted copy; nothing is
read or kept here. Used by evidence bundles (docker inspect), status.json, `status --json`, the log
filter (agent.ops.logs) and `doctor` output. Keys stay, values become REDACTED.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "<redacted>"
# Shorter values are not treated as secrets in free text: replacing "ab" everywhere would shred the text.
MIN_SECRET_CHARS = 4
# A key whose name holds one of these words carries a credential (Docker, InfluxDB, HTTP, common env names).
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key",
                 "private_key", "privatekey", "credential", "authorization", "auth", "cookie")
# ...unless it names where the secret is (a path), not the secret.
_REFERENCE_SUFFIXES = ("_file", "_path", "_dir", "file", "path")
# Free text: "Authorization: Bearer X", "Token X", URL user:password@, query parameters p= / password= / token=.
_TEXT_PATTERNS = (
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',}]+"),
     lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + REDACTED),
    (re.compile(r"(?i)\b(bearer)(\s+)(?!<redacted>)[A-Za-z0-9._~+/=\-]{8,}"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)(://[^/\s:@]+:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)([?&](?:p|password|token|secret|api_key)=)[^&\s'\"]+"), r"\1" + REDACTED),
)


def is_secret_key(key: str) -> bool:
    """True when KEY (a config key, header, JSON key or environment name) names a credential value."""
    k = str(key).lower()
    if k.endswith(_REFERENCE_SUFFIXES):
        return False
    return any(w in k for w in _SECRET_WORDS)


def forms(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """The secret values as they may appear in text: raw, URL-encoded, JSON-escaped; longest first."""
    out: set[str] = set()
    for s in secrets:
        if not s or len(s) < MIN_SECRET_CHARS:
            continue
        out |= {s, quote(s, safe=""), quote_plus(s), json.dumps(s)[1:-1]}
    return tuple(sorted(out, key=len, reverse=True))


def text(value: str, secrets: Iterable[str] = ()) -> str:
    """VALUE with every known secret (any of its forms) and credential-looking fragments replaced."""
    return _text_known(value, forms(secrets))


def env(entries: Iterable[Any]) -> list[Any]:
    """Docker `Config.Env` ("KEY=value" strings): keep KEY=, replace every value."""
    out: list[Any] = []
    for e in entries:
        if isinstance(e, str):
            key, sep, _ = e.partition("=")
            out.append(f"{key}={REDACTED}" if sep else e)
        else:
            out.append(e)
    return out


def data(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A redacted copy of JSON-like OBJ: `Env` lists (all values), credential keys, known secrets in strings."""
    known = forms(secrets)
    return _data(obj, known)


def _data(obj: Any, known: tuple[str, ...]) -> Any:
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if str(k).lower() == "env" and isinstance(v, (list, tuple)):
                out[k] = env(v)
            elif isinstance(k, str) and is_secret_key(k) and v not in (None, "", [], {}) and not isinstance(
                    v, (bool, Mapping, list, tuple)):
                out[k] = REDACTED
            else:
                out[k] = _data(v, known)
        return out
    if isinstance(obj, (list, tuple)):
        return [_data(v, known) for v in obj]
    if isinstance(obj, str):
        return _text_known(obj, known)
    return obj


def _text_known(value: str, known: tuple[str, ...]) -> str:
    for form in known:
        value = value.replace(form, REDACTED)
    for pattern, repl in _TEXT_PATTERNS:
        value = pattern.sub(repl, value)
    return value


def docker_inspect(inspect: Mapping[str, Any], secrets: Iterable[str] = ()) -> Any:
    """`docker inspect` output fit for an evidence bundle: environment values, credential keys and secrets redacted."""
    return data(inspect, secrets)


def config_secrets(influx: Any = None, remediation: Any = None, read=None) -> tuple[str, ...]:
    """The secret values of a config: [influxdb] password/token (and their files), the webhook token file.

    READ(path) -> str reads a file (the caller's: this module does no I/O); unreadable files are skipped
    (the config check reports them).
    """
    values: list[str | None] = []
    files: list[str | None] = []
    if influx is not None:
        values += [getattr(influx, "password", None), getattr(influx, "token", None)]
        files += [getattr(influx, "password_file", None), getattr(influx, "token_file", None)]
    if remediation is not None:
        files.append(getattr(remediation, "webhook_token_file", None))
    for path in files:
        if path and read is not None:
            try:
                values.append(read(path).strip())
            except (OSError, UnicodeDecodeError):
                pass
    return tuple(v for v in dict.fromkeys(values) if v and len(v) >= MIN_SECRET_CHARS)
