"""Logging set-up for every command: stderr, plain text or one JSON object per line, secrets redacted."""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from agent import redact
from agent.secretfile import SecretFileError, read_secret

# Fields a caller may attach with `extra={"box": ..., "probe": ..., "action": ...}`;
# the JSON formatter copies them out, the plain formatter appends them as key=value.
EXTRA_FIELDS = ("box", "kind", "probe", "action", "site")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339 UTC, ms), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render RECORD as a single line of JSON."""
        t = time.gmtime(record.created)
        obj = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EXTRA_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                obj[key] = value
        if record.exc_text:
            obj["exc"] = record.exc_text
        elif record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The classic one-line format, with any extra fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Render RECORD as text; extra fields go after the message."""
        text = super().format(record)
        extras = [f"{k}={getattr(record, k)}" for k in EXTRA_FIELDS if getattr(record, k, None) is not None]
        if extras:
            head, sep, tail = text.partition("\n")
            text = head + " [" + " ".join(extras) + "]" + sep + tail
        return text


class RedactFilter(logging.Filter):
    """Replaces known secret values (and credential-looking fragments) in every record's message and traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact SECRETS (values) from now on."""
        self.secrets = tuple(dict.fromkeys(self.secrets + tuple(s for s in secrets if s)))

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite RECORD in place (message formatted once, traceback pre-rendered); never drops a record."""
        try:
            record.msg = redact.text(record.getMessage(), self.secrets)
            record.args = None
        except Exception:  # noqa: BLE001 - a bad %-format stays the logging module's business
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact.text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact.text(record.stack_info, self.secrets)
        return True


# The one filter on the handler setup() installs; protect() adds the config's secrets once it is read.
REDACT = RedactFilter()


def read_secret_file(path: str) -> str:
    """The secret in a token or password file (agent.secretfile.read_secret, the one reader); "" when unreadable
    or empty (nothing to redact; the config check reports the file)."""
    try:
        return read_secret(path)
    except SecretFileError:
        return ""


def config_secrets(cfg: Any) -> tuple[str, ...]:
    """The secret values of config CFG: [influxdb] password/token and their files, the webhook token file, the
    /metrics token and basic auth password files."""
    metrics = getattr(cfg, "metrics", None)
    extra = tuple(v for v in (read_secret_file(p) for p in (getattr(metrics, "token_file", None),
                                                            getattr(metrics, "basic_auth_password_file", None)) if p)
                  if len(v) >= redact.MIN_SECRET_CHARS)
    return tuple(dict.fromkeys(redact.config_secrets(getattr(cfg, "influxdb", None), getattr(cfg, "remediation", None),
                                                     read=read_secret_file) + extra))


def protect(secrets: Iterable[str]) -> None:
    """Redact SECRETS from every log record from now on (the filter setup() installed)."""
    REDACT.add(secrets)


def parse_level(level: str | int) -> int:
    """A level name (case-insensitive) or number -> logging level; ValueError naming the valid ones."""
    if isinstance(level, int):
        return level
    name = str(level).strip().upper()
    if name.isascii() and name.isdigit():
        return int(name)
    if name not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return getattr(logging, name)


def setup(level: str | int = "INFO", json: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Send all logging to stderr (or STREAM) at LEVEL, as JSON lines when JSON is true; return the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else PlainFormatter())
    handler.addFilter(REDACT)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    return handler
