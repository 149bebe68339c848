"""Durations and points in time as the command line takes them, and ages as the commands print them.

One parser for every command (`--since 24h`, `--since 1h30m`, `--until 2026-10-25T02:30:00+02:00`):
each error is a ValueError whose message names the value and the accepted forms, so a command
prints it on one line and exits 2. Values are finite and bounded, so nothing downstream
overflows (a time.gmtime, a millisecond integer, an InfluxQL duration).
"""
from __future__ import annotations

import math
import re
from datetime import datetime

UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# One part of a duration: a number and a unit; a duration is one or more parts (1h30m). "ms" is tried
# before "m" (Go's time.ParseDuration and Telegraf's config durations read "500ms" the same way).
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|[smhdw])")
_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|[smhdw]))+$")
MAX_DURATION_S = 1000 * 365.25 * 86400   # 1000 years: far more than any retention, still exact in float ms
MAX_EPOCH_S = 253402300799.0            # 9999-12-31T23:59:59Z, the last second datetime and gmtime print
DURATION_FORMS = "a number and a unit s, m, h, d or w (or ms), or several (e.g. 90m, 24h, 1h30m, 7d, 500ms)"
CONFIG_DURATION_FORMS = 'a number of seconds, or a number and a unit s, m, h, d or w (or ms) (e.g. 1.5, "500ms", "2m")'


def parse_duration_s(text: str) -> float:
    """'500ms', '90s', '15m', '24h', '1h30m', '7d', '2w' -> seconds; ValueError naming the accepted forms."""
    compact = str(text).strip()
    if not _DURATION_RE.match(compact):
        raise ValueError(f"duration {text!r}: expected {DURATION_FORMS}")
    seconds = sum(float(n) * UNIT_S[u] for n, u in _PART_RE.findall(compact))
    if not seconds <= MAX_DURATION_S:
        raise ValueError(f"duration {text!r}: longer than the limit of {MAX_DURATION_S / 86400 / 365.25:.0f} years")
    return seconds


def config_seconds(value: object) -> float:
    """A config value in seconds: a TOML number as it is, or a string with units ('1s', '500ms', '2m') -> seconds.

    Booleans and other types are refused. ValueError naming CONFIG_DURATION_FORMS; the range is the caller's.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {CONFIG_DURATION_FORMS}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected {CONFIG_DURATION_FORMS}")
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration_s(value)
        except ValueError:
            raise ValueError(f"expected {CONFIG_DURATION_FORMS}") from None
    raise ValueError(f"expected {CONFIG_DURATION_FORMS}")


def parse_time_s(text: str) -> float:
    """Epoch seconds ('1764288000.5') or ISO 8601 with a UTC offset ('2026-10-25T02:30:00+02:00', '...Z') -> epoch s.

    ValueError naming the forms when TEXT is neither, has no offset, is not finite, or is outside 1970..9999.
    """
    raw = str(text).strip()
    forms = "epoch seconds (e.g. 1764288000) or ISO 8601 with a UTC offset (e.g. 2026-10-25T02:30:00+02:00)"
    try:
        value = float(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"time {text!r}: expected {forms}") from None
        if moment.tzinfo is None:
            raise ValueError(f"time {text!r}: give a UTC offset (Z or +HH:MM), a local time is ambiguous") from None
        value = moment.timestamp()
    if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_S:
        raise ValueError(f"time {text!r}: expected {forms}, between 1970 and 9999")
    return value


def format_age(seconds: float) -> str:
    """A short age for humans: 45s, 12m, 3h05m, 2d4h (negative ages print as 0s)."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
