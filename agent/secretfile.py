"""The one reader of secret files (tokens, passwords, header files); their content never appears in an error.

Used by the config's file checks, the InfluxDB writer (password_file, token_file), the webhook (its token
file, re-read on SIGHUP) and the OTLP pusher (headers_file). Imports nothing of ours: every room may use it.
"""
from __future__ import annotations


class SecretFileError(ValueError):
    """A secret file is unreadable, empty or malformed; the message names the file, never its content."""


def read_secret(path: str) -> str:
    """The secret in PATH, surrounding whitespace stripped (a trailing newline is usual).

    Raises SecretFileError: "cannot read 'PATH': <reason>" or "'PATH' is empty".
    """
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{path!r} is not UTF-8 text") from None
    if not value:
        raise SecretFileError(f"{path!r} is empty")
    return value


def read_headers(path: str) -> dict[str, str]:
    """HTTP headers from PATH, one "Name: value" a line (# comments, blank lines skipped).

    OSError when unreadable; ValueError naming the line (never its value: it holds a token) when malformed.
    """
    headers: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if not sep or not name or not value or any(c.isspace() for c in name):
                raise SecretFileError(f"{path}: line {n} is not 'Name: value'")
            headers[name] = value
    if not headers:
        raise SecretFileError(f"{path}: no header in it")
    return headers
