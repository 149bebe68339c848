"""Converters: a TOML value -> a typed value, or _Invalid saying what was expected; the address and zone rules.

Each converter carries `.label` (the expected type, in errors, describe() and the JSON Schema) and
`.schema` (its JSON Schema fragment). Imports nothing of ours.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.timeparse import config_seconds

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Docker's rule for container and network names (daemon/names: [a-zA-Z0-9][a-zA-Z0-9_.-]+); ids are hex, so fit too.
_DOCKER_NAME_RE = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Text that becomes an InfluxDB tag (site, segment): printable, no line breaks or other control characters.
_TAG_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")


class ConfigError(Exception):
    """The config is invalid; `errors` lists every problem as "key.path: what is wrong"."""

    def __init__(self, errors: list[str] | tuple[str, ...] | str) -> None:
        self.errors: tuple[str, ...] = (errors,) if isinstance(errors, str) else tuple(errors)
        super().__init__("\n".join(self.errors))


class _Invalid(Exception):
    """A value is wrong; `sub` is the path below the key (e.g. "[0]")."""

    def __init__(self, msg: str, sub: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.sub = sub


def _show(value: Any) -> str:
    """Render a TOML value in an error message: strings quoted, booleans as TOML spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


# --- converters: value -> value, raising _Invalid; `.label` describes the expected type ---

class Conv:
    """A converter (a function of the TOML value) with the expected type's label (errors, describe()), its JSON
    Schema fragment (check-config --schema) and, for a list of tables, the tables' own section (else None)."""

    def __init__(self, fn: Callable[[Any], Any], label: str, schema: dict[str, Any] | None = None,
                 table: str | None = None) -> None:
        self.fn, self.label, self.schema, self.table = fn, label, schema or {}, table

    def __call__(self, value: Any) -> Any:   # a TOML value in, the field's value out
        return self.fn(value)


def _labelled(label: str, schema: dict[str, Any] | None = None, *,
              table: str | None = None) -> Callable[[Callable[[Any], Any]], Conv]:
    """The decorated function as a Conv with LABEL, SCHEMA and TABLE."""
    def deco(fn: Callable[[Any], Any]) -> Conv:
        return Conv(fn, label, schema, table)
    return deco


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Conv:
    parts = []
    if low is not None:
        parts.append(f"> {low:g}" if low_open else f">= {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    label = "a number" + (" " + " and ".join(parts) if parts else "")
    schema: dict[str, Any] = {"type": "number"}
    if low is not None:
        schema["exclusiveMinimum" if low_open else "minimum"] = low
    if high is not None:
        schema["maximum"] = high

    @_labelled(label, schema)
    def conv(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        if low is not None and (v <= low if low_open else v < low):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        if high is not None and v > high:
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return float(v)
    return conv


def _integer(low: int, high: int | None = None) -> Conv:
    label = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"
    schema: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high

    @_labelled(label, schema)
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return v
    return conv


@_labelled("a boolean", {"type": "boolean"})
def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(f"expected true or false, got {_show(v)}")
    return v


def _text(pattern: re.Pattern[str] | None = None, what: str = "a non-empty string") -> Conv:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern is not None:
        schema["pattern"] = pattern.pattern

    @_labelled(what, schema)
    def conv(v: Any) -> str:
        if not isinstance(v, str) or not v.strip() or (pattern is not None and not pattern.match(v)):
            raise _Invalid(f"expected {what}, got {_show(v)}")
        return v
    return conv


def _choice(options: tuple[str, ...]) -> Conv:
    label = "one of " + ", ".join(json.dumps(o) for o in options)

    @_labelled(label, {"type": "string", "enum": list(options)})
    def conv(v: Any) -> str:
        if v not in options or not isinstance(v, str):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return v
    return conv


# Addresses no probe, listener or client can use, by kind (not Python's is_global/is_private: documentation,
# benchmark, RFC 1918 and ULA ranges are what labs and sites use, and stay valid). The rule each comes from:
_V4_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")        # RFC 1122 3.2.1.3: never a destination
_V4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")          # RFC 1122 3.2.1.3
_V4_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")     # RFC 3927
_V4_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")         # RFC 5771
_V4_RESERVED = ipaddress.IPv4Network("240.0.0.0/4")          # RFC 1112 4 (future use); 255.255.255.255 in it
_V4_BROADCAST = ipaddress.IPv4Address("255.255.255.255")     # RFC 919 7, limited broadcast
_V6_COMPATIBLE = ipaddress.IPv6Network("::/96")              # RFC 4291 2.5.5.1 (deprecated)
_V6_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")          # RFC 4291 2.5.5.2
_V6_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")          # RFC 4291 2.5.6
_V6_MULTICAST = ipaddress.IPv6Network("ff00::/8")            # RFC 4291 2.7
# What an address is used as: "host" (a box probed on a link), "listen" (a server's bind address: the
# unspecified address and loopback are right there), "peer" (a server the agent connects to: loopback is).
ROLES = ("host", "listen", "peer")


def address_problem(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, role: str = "host",
                    link_local_ok: bool = False) -> str | None:
    """Why ADDR cannot be used as ROLE (one of ROLES), or None when it can.

    Link-local addresses are refused unless LINK_LOCAL_OK (a box's, with [agent] interface naming the link);
    a listen or peer address cannot name the link, so link-local never suits them. Sources: see the
    networks above (RFC 1122, 3927, 5771, 1112, 919, 4291).
    """
    if isinstance(addr, ipaddress.IPv6Address):
        if addr in _V6_MAPPED:
            return (f"an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2; {addr.ipv4_mapped} as a dual-stack socket "
                    f"shows it): nothing answers it on the wire; write the IPv4 address {addr.ipv4_mapped}")
        if addr.is_unspecified:
            return None if role == "listen" else "the unspecified address :: (RFC 4291 2.5.2), never a destination"
        if addr.is_loopback:
            return None if role != "host" else "the loopback address ::1 (RFC 4291 2.5.3): this host, not a box"
        if addr in _V6_COMPATIBLE:
            return (f"an IPv4-compatible IPv6 address (deprecated by RFC 4291 2.5.5.1): nothing answers it; write "
                    f"the IPv4 address {ipaddress.IPv4Address(int(addr))}")
        if addr in _V6_MULTICAST:
            return "a multicast address (ff00::/8, RFC 4291 2.7), not one host"
        if addr in _V6_LINK_LOCAL and not (link_local_ok and role == "host"):
            return ("a link-local address (fe80::/10, RFC 4291 2.5.6) without [agent] interface naming its link"
                    if role == "host" else "a link-local address (fe80::/10): no link can be named here")
        return None
    if addr == _V4_BROADCAST:
        return "the limited broadcast address (RFC 919), not one host"
    if addr in _V4_RESERVED:
        return "a reserved address (240.0.0.0/4, RFC 1112 4), not routed anywhere"
    if addr in _V4_MULTICAST:
        return "a multicast address (224.0.0.0/4, RFC 5771), not one host"
    if addr.is_unspecified:
        return None if role == "listen" else "the unspecified address 0.0.0.0 (RFC 1122 3.2.1.3), never a destination"
    if addr in _V4_THIS_NETWORK:
        return "an address of \"this network\" (0.0.0.0/8, RFC 1122 3.2.1.3), never a destination"
    if addr in _V4_LOOPBACK:
        return None if role != "host" else "a loopback address (127.0.0.0/8, RFC 1122 3.2.1.3): this host, not a box"
    if addr in _V4_LINK_LOCAL and not (link_local_ok and role == "host"):
        return ("a link-local address (169.254.0.0/16, RFC 3927) without [agent] interface naming its link"
                if role == "host" else "a link-local address (169.254.0.0/16): no link can be named here")
    return None


def is_link_local(address: str) -> bool:
    """ADDRESS (a valid IPv4 or IPv6 address) is link-local (169.254.0.0/16, fe80::/10)."""
    addr = ipaddress.ip_address(address)
    return addr in (_V4_LINK_LOCAL if addr.version == 4 else _V6_LINK_LOCAL)


def _address(version: int) -> Conv:
    """A box address of one family: no zone id, none of the kinds address_problem() refuses (but link-local,
    which the box checks against [agent] interface), normalised."""
    label = f"an IPv{version} address"

    @_labelled(label, {"type": "string", "format": f"ipv{version}"})
    def conv(v: Any) -> str:
        if not isinstance(v, str):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        if "%" in v:  # ip_address() accepts "fe80::1%eth0" (Python >= 3.9) but no probe can use it
            raise _Invalid(f"expected {label} without a zone id, got {_show(v)}: scoped addresses cannot be "
                           "probed; write the global address, and [agent] interface for the link")
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            raise _Invalid(f"expected {label}, got {_show(v)}") from None
        if addr.version != version:
            raise _Invalid(f"expected {label}, got {_show(v)} (an IPv{addr.version} address)")
        problem = address_problem(addr, "host", link_local_ok=True)
        if problem:
            raise _Invalid(f"expected {label} of one host, got {_show(v)}: {problem}")
        return str(addr)  # normalised: lower case, compressed
    return conv


def _host_problem(host: str, role: str) -> str | None:
    """For a URL's or listen address's host: why it cannot work (address_problem), None for names and good IPs."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", host):
            return f"{host} is not an IPv4 address"
        return None
    return address_problem(addr, role)


_URL_RE = re.compile(r"^https?://(?:[^/\s@]*@)?(\[[0-9A-Fa-f:.]+\]|[^/\s:@\[\]]+)(?::\d{1,5})?(?:/\S*)?$")


@_labelled("an http(s) URL", {"type": "string", "pattern": "^https?://"})
def _url(v: Any) -> str:
    m = _URL_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise _Invalid(f"expected an http:// or https:// URL, got {_show(v)}")
    problem = _host_problem(m.group(1).strip("[]"), "peer")
    if problem:
        raise _Invalid(f"expected an http:// or https:// URL of a server, got {_show(v)}: {problem}")
    url: str = v
    return url.rstrip("/")


_LISTEN_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$"


@_labelled('"host:port"', {"type": "string", "pattern": _LISTEN_PATTERN})
def _listen(v: Any) -> str:
    m = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$", v) if isinstance(v, str) else None
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise _Invalid(f'expected "host:port" (IPv6 as "[::1]:port"), got {_show(v)}')
    problem = _host_problem(m.group(1).strip("[]"), "listen")
    if problem:
        raise _Invalid(f'expected "host:port" to listen on, got {_show(v)}: {problem}')
    listen: str = v
    return listen


@_labelled("an IANA time zone name", {"type": "string"})
def _timezone(v: Any) -> str:
    """A zone the zone database loads as a zone; directories ("Europe"), paths, "../", over-long or non-TZif
    names are refused here (ZoneInfo raises OSError for some of them on CPython < 3.13, python/cpython#85702)."""
    try:
        if not isinstance(v, str) or not v:
            raise ValueError(v)
        ZoneInfo(v)
    except (ValueError, TypeError, OSError, ZoneInfoNotFoundError):
        raise _Invalid(f'expected an IANA time zone name ("UTC", "Europe/Zurich"), got {_show(v)}') from None
    return v


def _list_of(item: Conv, *, min_len: int = 0, unique: bool = False) -> Conv:
    label = f"a list of {getattr(item, 'label', 'values')}"
    schema: dict[str, Any] = {"type": "array", "items": getattr(item, "schema", {})}
    if min_len:
        schema["minItems"] = min_len
    if unique:
        schema["uniqueItems"] = True

    @_labelled(label, schema)
    def conv(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        if len(v) < min_len:
            raise _Invalid(f"expected at least {min_len} element(s), got {len(v)}")
        out = []
        for i, x in enumerate(v):
            try:
                y = item(x)
            except _Invalid as exc:
                raise _Invalid(exc.msg, f"[{i}]{exc.sub}") from None
            if unique and y in out:
                raise _Invalid(f"duplicate {_show(x)}", f"[{i}]")
            out.append(y)
        return tuple(out)
    return conv


_PORT = _integer(1, 65535)


def _tables(what: str) -> Conv:
    """A list of tables ([[box.probe]]): kept raw here, each parsed with its own key paths in parse()."""
    label = f"[[{what}]] tables"

    # table: the JSON Schema refers to the table's own section
    @_labelled(label, {"type": "array", "items": {"type": "object"}}, table=what)
    def conv(v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return tuple(v)
    return conv


_ARG = _text(what="a non-empty string")

# A string duration as the config takes it (agent.timeparse): one or more number+unit parts.
DURATION_PATTERN = r"^([0-9]+([.][0-9]+)?(ms|[smhdw]))+$"
_DURATION_EXAMPLES = '"500ms", "1s", "2m"'


def _seconds(number: Conv) -> Conv:
    """NUMBER (a `_number` converter in seconds) that also takes a duration string with units ("500ms", "2m").

    A TOML number keeps NUMBER's own errors; a string is read by agent.timeparse.config_seconds, then held to
    NUMBER's range. Every key with unit "s" takes this (see `_key`), the way Telegraf and Gatus take durations.
    """
    label = f"{number.label} (seconds, or a duration: {_DURATION_EXAMPLES})"
    schema = {"oneOf": [number.schema, {"type": "string", "pattern": DURATION_PATTERN}]}

    @_labelled(label, schema)
    def conv(v: Any) -> float:
        if not isinstance(v, str):
            return float(number(v))
        try:
            return float(number(config_seconds(v)))
        except (ValueError, _Invalid):
            raise _Invalid(f"expected {number.label} or a duration with a unit ({_DURATION_EXAMPLES}), "
                           f"got {_show(v)}") from None
    return conv


def _key(key: str, conv: Conv, doc: str, default: Any = MISSING, *, unit: str = "",
         required: bool = False) -> Any:
    """A dataclass field bound to a TOML key, with its converter, unit and meaning.

    A key in seconds (UNIT "s") also takes a duration string with units: its converter is wrapped by `_seconds`.
    """
    if unit == "s" and conv.table is None:
        conv = _seconds(conv)
    meta = {"key": key, "conv": conv, "doc": doc, "unit": unit, "required": required}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _unknown(path: str, key: str, valid: list[str]) -> str:
    hint = difflib.get_close_matches(key, valid, n=1)
    did = f"did you mean {hint[0]!r}? " if hint else ""
    return f"{path}.{key}: unknown key ({did}valid: {', '.join(valid)})"


def _section(cls: type, table: Any, path: str, errors: list[str]) -> dict[str, Any] | None:
    """Convert one TOML table to constructor kwargs for CLS (a model dataclass), appending errors.

    Strict: unknown keys are errors (with "did you mean"), required keys must be there; every problem is
    appended, one line each naming PATH.key. None when TABLE is not a table.
    """
    if not isinstance(table, dict):
        errors.append(f"{path}: expected a table, got {_show(table)}")
        return None
    kwargs: dict[str, Any] = {}
    valid = [f.metadata["key"] for f in fields(cls)]
    for key in table:
        if key not in valid:
            errors.append(_unknown(path, key, valid))
    for f in fields(cls):
        md = f.metadata
        key = md["key"]
        if key in table:
            try:
                kwargs[f.name] = md["conv"](table[key])
            except _Invalid as exc:
                errors.append(f"{path}.{key}{exc.sub}: {exc.msg}")
        elif md["required"]:
            errors.append(f"{path}.{key}: missing (required: {md['doc']})")
    return kwargs


# A DNS host name (RFC 1123 2.1 over RFC 952): dot-separated labels of letters, digits and inner hyphens,
# each 1-63 characters, at most 253 in all (RFC 1035 2.3.4), one trailing dot allowed; not all-numeric
# (RFC 1123 2.1: a name must not look like a dotted-decimal address).
_HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@_labelled("a DNS host name (RFC 1123)", {"type": "string", "minLength": 1, "maxLength": 254})
def _hostname(v: Any) -> str:
    """A box's DNS name, lower-cased without the trailing dot; an address here is refused with a pointer to
    ipv4/ipv6 (a name is resolved, an address is not)."""
    if not isinstance(v, str) or not v:
        raise _Invalid(f"expected a DNS host name (RFC 1123), got {_show(v)}")
    try:
        ipaddress.ip_address(v)
        raise _Invalid(f"expected a DNS host name, got the address {_show(v)}: write it as ipv4 or ipv6")
    except ValueError:
        pass
    name = v[:-1] if v.endswith(".") else v
    if not name.isascii():   # an internationalised name travels as its IDNA (xn--) form (RFC 5890)
        try:
            ascii_form = name.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_form = None
        raise _Invalid(f"expected a DNS host name in ASCII, got {_show(v)}"
                       + (f": write its IDNA form {_show(ascii_form)}" if ascii_form else ""))
    labels = name.split(".")
    bad = next((lab for lab in labels if not _HOSTNAME_LABEL_RE.match(lab)), None)
    if len(name) > 253 or bad is not None:
        why = (f"label {_show(bad)} is not 1-63 letters, digits or inner hyphens" if bad is not None
               else "longer than 253 characters")
        raise _Invalid(f"expected a DNS host name (RFC 1123), got {_show(v)}: {why}")
    if re.fullmatch(r"[0-9.]+", name):
        raise _Invalid(f"expected a DNS host name, got {_show(v)}: all-numeric names are not host names "
                       "(RFC 1123 2.1)")
    if len(labels) < 2:   # asked as an absolute name: resolv.conf's search list is not applied
        raise _Invalid(f"expected a fully qualified DNS name, got {_show(v)}: no search list is applied; "
                       f"write e.g. {_show(name + '.example.org')}")
    return name.lower()


def _nameserver_conv(v: Any) -> str:
    if not isinstance(v, str) or "%" in v:
        raise _Invalid(f"expected the IP address of a DNS server, got {_show(v)}")
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise _Invalid(f"expected the IP address of a DNS server (not a name: it would need a resolver "
                       f"itself), got {_show(v)}") from None
    problem = address_problem(addr, "peer")
    if problem:
        raise _Invalid(f"expected the IP address of a DNS server, got {_show(v)}: {problem}")
    return str(addr)


_nameserver = Conv(_nameserver_conv, "an IP address of a DNS server", {"type": "string"})
