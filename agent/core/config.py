"""Strict TOML config -> frozen dataclasses; every error names its key path, all errors are reported together.

The TOML keys are a public contract. Each dataclass field carries its TOML key,
type, unit and meaning in its metadata, so `describe()` can list every key and
the config reference can be generated from the model. Defaults live only here,
in the field definitions.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import probes
from agent.checks import CHECK_KINDS, CHECKS, Check
from agent.core.events import BoxKind
from agent.core.maintenance import WEEKDAYS, Recurring, parse_hhmm
from remediations.actions import ACTIONS, PLACEHOLDERS, template_errors
from remediations.model import RemediationPolicy, RemediationTarget
from remediations.webhook import VERIFY_CLIENT

# Remediation action names a box's `remediate` ladder may use: the remediations registry.
REMEDIATION_ACTIONS: tuple[str, ...] = tuple(ACTIONS)
# Actions that act on a Docker container, so only valid for kind = "container".
CONTAINER_ACTIONS: frozenset[str] = frozenset(name for name, a in ACTIONS.items() if a.needs_container)
# What a box is: a Docker container (the talk's macvlan VO-Box) or a VM; the tag `kind` everywhere.
BOX_KINDS: tuple[str, ...] = tuple(k.value for k in BoxKind)
INFLUX_APIS: tuple[str, ...] = ("v1", "v2")
# [remediation] webhook_verify_client values: the webhook's (Apache's SSLVerifyClient none/optional/require).
WEBHOOK_VERIFY_CLIENT: tuple[str, ...] = tuple(VERIFY_CLIENT)
# Placeholders allowed in a box's `command` argv (remediations.actions expands them).
COMMAND_PLACEHOLDERS: tuple[str, ...] = PLACEHOLDERS
# The remediation timing and limits default to remediations.model.RemediationPolicy's (one place).
_POLICY = {f.name: f.default for f in fields(RemediationPolicy)}
# Sizes in the config are MiB (2**20 bytes) everywhere, and the keys say so (`*_mib`).
MIB = 2**20

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

Conv = Callable[[Any], Any]


def _labelled(label: str) -> Callable[[Conv], Conv]:
    def deco(fn: Conv) -> Conv:
        fn.label = label  # type: ignore[attr-defined]
        return fn
    return deco


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Conv:
    parts = []
    if low is not None:
        parts.append(f"> {low:g}" if low_open else f">= {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    label = "a number" + (" " + " and ".join(parts) if parts else "")

    @_labelled(label)
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

    @_labelled(label)
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return v
    return conv


@_labelled("a boolean")
def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(f"expected true or false, got {_show(v)}")
    return v


def _text(pattern: re.Pattern[str] | None = None, what: str = "a non-empty string") -> Conv:
    @_labelled(what)
    def conv(v: Any) -> str:
        if not isinstance(v, str) or not v.strip() or (pattern is not None and not pattern.match(v)):
            raise _Invalid(f"expected {what}, got {_show(v)}")
        return v
    return conv


def _choice(options: tuple[str, ...]) -> Conv:
    label = "one of " + ", ".join(json.dumps(o) for o in options)

    @_labelled(label)
    def conv(v: Any) -> str:
        if v not in options or not isinstance(v, str):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return v
    return conv


def _address(version: int) -> Conv:
    label = f"an IPv{version} address"

    @_labelled(label)
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
        return str(addr)  # normalised: lower case, compressed
    return conv


def _url(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
        raise _Invalid(f"expected an http:// or https:// URL, got {_show(v)}")
    return v.rstrip("/")


_url.label = "an http(s) URL"  # type: ignore[attr-defined]


def _listen(v: Any) -> str:
    m = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$", v) if isinstance(v, str) else None
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise _Invalid(f'expected "host:port" (IPv6 as "[::1]:port"), got {_show(v)}')
    return v


_listen.label = '"host:port"'  # type: ignore[attr-defined]


def _list_of(item: Conv, *, min_len: int = 0, unique: bool = False) -> Conv:
    label = f"a list of {getattr(item, 'label', 'values')}"

    @_labelled(label)
    def conv(v: Any) -> tuple:
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
# Service probe kinds a [[box.probe]] may name (those that take a port and a spec: tcp, http, tls).
SERVICE_PROBE_KINDS: tuple[str, ...] = probes.SERVICE_KINDS


def _tables(what: str) -> Conv:
    """A list of tables ([[box.probe]]): kept raw here, each parsed with its own key paths in parse()."""
    label = f"[[{what}]] tables"

    @_labelled(label)
    def conv(v: Any) -> tuple:
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise _Invalid(f"expected {label}, got {_show(v)}")
        return tuple(v)
    return conv
_ACTION = _choice(REMEDIATION_ACTIONS)
_ARG = _text(what="a non-empty string")


def _key(key: str, conv: Conv, doc: str, default: Any = MISSING, *, unit: str = "",
         required: bool = False) -> Any:
    """A dataclass field bound to a TOML key, with its converter, unit and meaning."""
    meta = {"key": key, "conv": conv, "doc": doc, "unit": unit, "required": required}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


# --- the model ---

@dataclass(frozen=True, slots=True)
class AgentConfig:
    """[agent]: probe cycle timing and where the agent keeps its state."""

    interval_s: float = _key("interval", _number(0, low_open=True), "seconds between probe cycles", 10.0, unit="s")
    timeout_s: float = _key("timeout", _number(0, low_open=True), "reply timeout per probe", 1.0, unit="s")
    jitter_s: float = _key("jitter", _number(0), "random delay of each cycle start after its slot on the exact "
                           "interval grid, drawn per cycle, up to this (cycles never drift)", 0.5, unit="s")
    state_dir: str = _key("state_dir", _text(), "freeze state, spool, rejected points, evidence",
                          "/var/lib/vobox-agent")
    interface: str | None = _key("interface", _text(), "where ARP/NDP go out (default: from routing)", None)
    site: str | None = _key("site", _text(_TAG_TEXT_RE, "a non-empty string without control characters"),
                            "tag `site` on every point", None)


@dataclass(frozen=True, slots=True)
class FreezeConfig:
    """[freeze]: thresholds of the per-box freeze state machine."""

    fail_cycles: int = _key("fail_cycles", _integer(1, 1000),
                            "consecutive failing cycles before a box is frozen", 3)
    recover_cycles: int = _key("recover_cycles", _integer(1, 1000),
                               "consecutive healthy cycles before a frozen box is up again; a failing cycle "
                               "during recovery continues the same freeze (flap damping)", 2)
    confirm_interval_s: float = _key("confirm_interval", _number(0),
                                     "re-probe a box whose state is unsettled (suspect, recovering) between "
                                     "cycles, a pass starting this long after the cycle or pass before (a failing "
                                     "pass lasts agent.timeout, so with the defaults they run back to back; a cycle "
                                     "falling due meanwhile starts when the pass ends), each "
                                     "pass counting as a cycle for it: a freeze is confirmed about "
                                     "fail_cycles x max(this, timeout) after its first failing probe instead of "
                                     "fail_cycles x agent.interval; 0 = off", 1.0, unit="s")


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """[influxdb]: where points go (v1: /write with database; v2: influxdb-client with token/org/bucket)."""

    url: str = _key("url", _url, "InfluxDB base URL", "http://127.0.0.1:8086")
    api: str = _key("api", _choice(INFLUX_APIS), '"v1": InfluxDB 1.x; "v2": 2.x, 3.x, 1.8+', "v1")
    database: str = _key("database", _text(), "v1: database (created when missing)", "vobox")
    username: str | None = _key("username", _text(), "v1: user name", None)
    password: str | None = _key("password", _text(what="a string"), "v1: password (prefer password_file)", None)
    password_file: str | None = _key("password_file", _text(),
                                     "v1: file holding the password (read when the writer starts; not kept in the "
                                     "config)", None)
    token: str | None = _key("token", _text(), "v2: API token (or token_file)", None)
    token_file: str | None = _key("token_file", _text(), "v2: file holding the API token", None)
    org: str | None = _key("org", _text(), "v2: organisation", None)
    bucket: str | None = _key("bucket", _text(), "v2: bucket", None)
    gzip: bool = _key("gzip", _boolean, "v2: gzip the write requests", False)
    write_timeout_s: float = _key("write_timeout", _number(0, low_open=True),
                                  "HTTP timeout of one write or query", 5.0, unit="s")
    batch_points: int = _key("batch_points", _integer(1, 1_000_000), "points per HTTP write request", 5000)
    spool_max_mib: float = _key("spool_max_mib", _number(0, low_open=True),
                               "on-disk spool bound; oldest points are dropped (and counted) only when full",
                               100.0, unit="MiB")
    retry_min_s: float = _key("retry_min", _number(0, low_open=True),
                              "after a failed write, spool for this long before trying again (doubles on "
                              "each failure)", 1.0, unit="s")
    retry_max_s: float = _key("retry_max", _number(0, low_open=True),
                              "longest wait between two write attempts while InfluxDB is down", 30.0, unit="s")
    queue_max_points: int = _key("queue_max_points", _integer(1000, 100_000_000),
                                 "points held in memory between the probe cycle and the writer thread (and while "
                                 "the spool's disk is full); over it the oldest are dropped and counted", 200_000)
    ca_file: str | None = _key("ca_file", _text(),
                               "https: CA certificates (a PEM file, or a directory hashed with c_rehash, e.g. "
                               "/etc/grid-security/certificates) to verify InfluxDB with; default: the system CAs",
                               None)
    client_cert: str | None = _key("client_cert", _text(), "https: client certificate (PEM) shown to InfluxDB",
                                   None)
    client_key: str | None = _key("client_key", _text(),
                                  "https: private key (PEM) of client_cert, when not in the same file", None)
    insecure_skip_verify: bool = _key("insecure_skip_verify", _boolean,
                                      "https: do NOT verify InfluxDB's certificate (logged as a WARNING at every "
                                      "start; use ca_file instead)", False)


@dataclass(frozen=True, slots=True)
class RemediationConfig:
    """[remediation]: escalation ladder timing, safety limits and the alert webhook."""

    enabled: bool = _key("enabled", _boolean, "act on frozen boxes and on alerts (the webhook)", False)
    auto: bool = _key("auto", _boolean, "act on freezes the agent detects; false: only alerts (webhook) "
                      "and manual requests act", True)
    dry_run: bool = _key("dry_run", _boolean, "record what would be done, do nothing", False)
    cooldown_s: float = _key("cooldown", _number(0), "seconds between two actions on one box", _POLICY["cooldown_s"], unit="s")
    max_per_box_per_hour: int = _key("max_per_box_per_hour", _integer(0),
                                     "actions per box per hour; then stop acting on that box",
                                     _POLICY["max_per_box_per_hour"])
    max_per_hour: int = _key("max_per_hour", _integer(0), "actions per hour, all boxes together",
                               _POLICY["max_per_hour"])
    verify_s: float = _key("verify", _number(0, low_open=True),
                           "after an action, wait this long (re-probing) before escalating", _POLICY["verify_s"],
                           unit="s")
    reset_after_s: float = _key("reset_after", _number(0),
                                "a halted box (a cap was reached) is acted on again after it is up this long; the ladder "
                                "starts afresh with every freeze",
                                _POLICY["reset_after_s"], unit="s")
    stop_timeout_s: float = _key("stop_timeout", _number(0), "docker restart: stop timeout",
                                  _POLICY["stop_timeout_s"], unit="s")
    command_timeout_s: float = _key("command_timeout", _number(0, low_open=True),
                                    "timeout of a `command` action", _POLICY["command_timeout_s"], unit="s")
    exec_timeout_s: float = _key("exec_timeout", _number(0, low_open=True),
                                 "hard timeout of an `exec` action: a command still running in the container then "
                                 "is killed and the step failed", _POLICY["exec_timeout_s"], unit="s")
    retry_deferred_s: float = _key("retry_deferred", _number(0, low_open=True),
                                   "retry a deferred action (e.g. Docker unreachable) after this long",
                                   _POLICY["retry_deferred_s"], unit="s")
    webhook_listen: str | None = _key("webhook_listen", _listen, 'alert receiver "host:port"; absent = off', None)
    webhook_token_file: str | None = _key("webhook_token_file", _text(),
                                          "file holding the webhook bearer token (required with webhook_listen "
                                          'unless webhook_verify_client = "required"); re-read on SIGHUP', None)
    webhook_max_bytes: int = _key("webhook_max_bytes", _integer(1), "largest accepted webhook body (413 above)",
                                  1_048_576, unit="bytes")
    webhook_cert_file: str | None = _key("webhook_cert_file", _text(),
                                         "serve the webhook over TLS only, with this server certificate (PEM, "
                                         "chain after it); reloaded on SIGHUP; absent = plain HTTP", None)
    webhook_key_file: str | None = _key("webhook_key_file", _text(),
                                        "private key (PEM) of webhook_cert_file, when not in the same file", None)
    webhook_client_ca_file: str | None = _key("webhook_client_ca_file", _text(),
                                              "CA certificates client certificates are verified against: a PEM "
                                              "file, or a directory hashed with `openssl rehash` (e.g. "
                                              "/etc/grid-security/certificates)", None)
    webhook_verify_client: str = _key("webhook_verify_client", _choice(WEBHOOK_VERIFY_CLIENT),
                                      'client certificates: "none" (not asked), "optional" (verified when sent; '
                                      'the token still needed), "required" (the token only if '
                                      "webhook_token_file is set)", "none")
    webhook_auth_failures_max: int = _key("webhook_auth_failures_max", _integer(1),
                                          "failed authentications one peer address may make within "
                                          "webhook_auth_failures_window; then 429 with Retry-After until it ends",
                                          5)
    webhook_auth_failures_window_s: float = _key("webhook_auth_failures_window", _number(0, low_open=True),
                                                 "the fixed window of webhook_auth_failures_max, from a peer's "
                                                 "first failure", 60.0, unit="s")

    def policy(self, dry_run: bool = False) -> RemediationPolicy:
        """remediations.model.RemediationPolicy of this section (DRY_RUN forces a dry run)."""
        return RemediationPolicy(
            enabled=self.enabled, auto=self.auto, dry_run=self.dry_run or dry_run, cooldown_s=self.cooldown_s,
            max_per_box_per_hour=self.max_per_box_per_hour, max_per_hour=self.max_per_hour, verify_s=self.verify_s,
            reset_after_s=self.reset_after_s, stop_timeout_s=self.stop_timeout_s,
            command_timeout_s=self.command_timeout_s, retry_deferred_s=self.retry_deferred_s,
            exec_timeout_s=self.exec_timeout_s)

    @property
    def webhook_host(self) -> str | None:
        """Host part of webhook_listen (IPv6 without brackets)."""
        return self.webhook_listen.rsplit(":", 1)[0].strip("[]") if self.webhook_listen else None

    @property
    def webhook_port(self) -> int | None:
        """Port of webhook_listen."""
        return int(self.webhook_listen.rsplit(":", 1)[1]) if self.webhook_listen else None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus /metrics endpoint."""

    listen: str | None = _key("listen", _listen, 'serve /metrics at "host:port"; absent = off', None)

    @property
    def host(self) -> str | None:
        """Host part of listen (IPv6 without brackets)."""
        return self.listen.rsplit(":", 1)[0].strip("[]") if self.listen else None

    @property
    def port(self) -> int | None:
        """Port of listen."""
        return int(self.listen.rsplit(":", 1)[1]) if self.listen else None


def _otlp_url(v: Any) -> str:
    url = _url(v)
    return url if re.match(r"^https?://[^/]+/", url) else url + "/v1/metrics"


_otlp_url.label = "an http(s) URL"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """[otlp]: push the /metrics figures to an OpenTelemetry collector (OTLP/HTTP, protobuf)."""

    endpoint: str | None = _key("endpoint", _otlp_url,
                                "OTLP/HTTP metrics URL, e.g. \"https://collector:4318/v1/metrics\" (a URL without "
                                "a path gets /v1/metrics); absent = off; needs the `otlp` extra", None)
    interval_s: float = _key("interval", _number(0, low_open=True), "seconds between two pushes", 60.0, unit="s")
    timeout_s: float = _key("timeout", _number(0, low_open=True),
                            "HTTP timeout of one push, retries included (less than interval)", 10.0, unit="s")
    headers_file: str | None = _key("headers_file", _text(),
                                    "file of HTTP headers sent with every push, one \"Name: value\" a line (e.g. "
                                    "Authorization: Bearer ...); read at start, never logged", None)
    ca_file: str | None = _key("ca_file", _text(),
                               "https: CA certificates (PEM file or hashed directory) to verify the collector with; default: "
                               "the CA bundle of Python's requests (certifi)",
                               None)


def _witness_address(v: Any) -> str:
    """An IPv4 or IPv6 address (the [correlation] witness)."""
    if isinstance(v, str) and ":" in v:
        return _address(6)(v)   # its own messages: zone ids, IPv4 for IPv6
    try:
        return _address(4)(v)
    except _Invalid:
        raise _Invalid(f"expected an IPv4 or IPv6 address, got {_show(v)}") from None


_witness_address.label = "an IPv4 or IPv6 address"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """[correlation]: many boxes freezing together is a segment outage, not box freezes."""

    enabled: bool = _key("enabled", _boolean, "detect segment freezes", True)
    min_boxes: int = _key("min_boxes", _integer(2), "this many boxes freezing within `window` is a segment freeze", 3)
    min_share: float = _key("min_share", _number(0, 1, low_open=True),
                            "or this share of one segment's boxes (segment = box.segment, else the L2 domain "
                            "the agent reaches the box through: interface and on-link prefix)", 0.5)
    window_s: float = _key("window", _number(0, low_open=True), "seconds within which the freezes must start",
                           60.0, unit="s")
    hold_remediation: bool = _key("hold_remediation", _boolean,
                                  "defer automatic remediation of the boxes in an open segment freeze", True)
    witness: str | None = _key("witness", _witness_address,
                               "an address on the boxes' segment (e.g. the gateway), probed every cycle with ARP/NDP "
                               "and ping and never remediated: its answer proves the segment works, so no segment "
                               "freeze opens or lasts while it answers; absent = the boxes alone", None)


@dataclass(frozen=True, slots=True)
class FlappingConfig:
    """[flapping]: boxes failing too often for a freeze (fail_cycles in a row) are `degraded`, never remediated."""

    enabled: bool = _key("enabled", _boolean, "score flapping and loss per box; false: no box is ever degraded", True)
    window_cycles: int = _key("window_cycles", _integer(3, 1000),
                              "cycles in the window (Nagios and Icinga keep the last 21 check results)", 21)
    low_threshold_percent: float = _key("low_threshold_percent", _number(0, 100),
                                        "a flapping box stops flapping when its percent state change falls to this "
                                        "or below (Icinga 2's flapping_threshold_low)", 25.0, unit="%")
    high_threshold_percent: float = _key("high_threshold_percent", _number(0, 100),
                                         "a box starts flapping when its percent state change (weighted verdict "
                                         "changes over the window, newer ones counting more) rises above this "
                                         "(Icinga 2's flapping_threshold_high)", 30.0, unit="%")
    max_failed_share: float = _key("max_failed_share", _number(0, 1),
                                   "a box with more than this share of failed cycles in the window is degraded "
                                   "(0.25: more than a quarter)", 0.25)


@dataclass(frozen=True, slots=True)
class ForensicsConfig:
    """[forensics]: the packet flight recorder and the evidence bundle written for every freeze."""

    enabled: bool = _key("enabled", _boolean, "keep a packet ring and write an evidence bundle per freeze", True)
    ring_cycles: int | None = _key("ring_cycles", _integer(1, 1000),
                                   "probe cycles of packets kept per box (default: freeze.fail_cycles + 2)", None)
    max_bundles: int = _key("max_bundles", _integer(1), "evidence bundles kept (oldest removed first)", 200)
    max_mib: float = _key("max_mib", _number(0, low_open=True), "evidence kept on disk, all bundles together",
                          500.0, unit="MiB")


# A Docker label filter: "key=value", or "key" for any value (Docker's own `label=` filter syntax).
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*(=[^\x00-\x1f\x7f]*)?$")


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """[discovery]: container boxes found from the Docker engine and followed live (see the operator guide)."""

    docker: bool = _key("docker", _boolean, "make a container box of every container that has `label`, or that is "
                        "on one of `networks`; follow created, removed, connected and disconnected containers "
                        "from Docker events", False)
    networks: tuple[str, ...] = _key("networks", _list_of(_text(_DOCKER_NAME_RE, "a Docker network name"),
                                                          unique=True),
                                     "containers on these Docker networks qualify too (label OR network); empty: "
                                     "the label alone decides", ())
    label: str = _key("label", _text(_LABEL_RE, '"key=value" or "key"'),
                      'containers with this label qualify ("key=value", or "key" for any value)',
                      "vobox.monitor=true")
    tcp_ports: tuple[int, ...] = _key("tcp_ports", _list_of(_PORT, unique=True),
                                      "TCP ports of a discovered box (label vobox.ports overrides)", ())
    remediate: tuple[str, ...] = _key("remediate", _list_of(_ACTION, unique=True),
                                      "ladder of a discovered box (label vobox.ladder overrides)", ())
    restart_stopped: bool = _key("restart_stopped", _boolean, "restart_stopped of a discovered box (label "
                                 "vobox.restart_stopped overrides)", False)
    probes: tuple[dict, ...] = _key("probe", _tables("discovery.probe"),
                                    "service probes of every discovered box ([[discovery.probe]] tables, the keys "
                                    "of [[box.probe]])", ())


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """[[box.probe]]: a service probe (blackbox_exporter's tcp, http and tls), on every address of the box."""

    kind: str = _key("kind", _choice(SERVICE_PROBE_KINDS), "probe kind", required=True)
    port: int = _key("port", _PORT, "TCP port", required=True)
    send: str | None = _key("send", _text(what="a string"), "tcp: text sent after connecting (UTF-8)", None)
    expect: str | None = _key("expect", _text(what="a string"),
                              "tcp: regular expression the answer must match within [agent] timeout", None)
    method: str = _key("method", _text(), "http: request method", "GET")
    path: str = _key("path", _text(), "http: request path", "/")
    status: tuple[int, ...] = _key("status", _list_of(_integer(100, 599), unique=True),
                                   "http: accepted status codes (empty: any 2xx)", ())
    body: str | None = _key("body", _text(what="a string"), "http: regular expression the body must match", None)
    host: str | None = _key("host", _text(), "http: Host header (default: address:port)", None)
    tls: bool = _key("tls", _boolean, "http: HTTPS", False)
    server_name: str | None = _key("server_name", _text(), "tls, http with tls: SNI and name to verify", None)
    ca_file: str | None = _key("ca_file", _text(), "tls, http with tls: CA certificates (PEM) to verify with "
                               "(default: the system CAs)", None)
    verify: bool = _key("verify", _boolean, "tls, http with tls: verify the certificate chain and name", True)
    warn_days: float | None = _key("warn_days", _number(0), "tls: a certificate valid for fewer days is a warning "
                                   "(a `warning` point, not a failure)", None, unit="days")


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """[[box.check]]: an in-container check (kind = container boxes), run in the container's mount namespace."""

    kind: str = _key("kind", _choice(CHECK_KINDS), "path: stat of `path`; x509: days left of the certificate or "
                     "proxy in `path` (expired fails); disk: used space of `path`'s file system; exec: `argv`, "
                     "exit 0 = healthy", required=True)
    path: str | None = _key("path", _text(re.compile(r"^/"), "an absolute path"), "path, x509, disk: the path "
                            "inside the container", None)
    argv: tuple[str, ...] = _key("argv", _list_of(_ARG, min_len=1), "exec: the command, no shell", ())
    warn_days: float | None = _key("warn_days", _number(0), "x509: fewer days left is a warning", None, unit="days")
    warn_percent: float | None = _key("warn_percent", _number(0, 100), "disk: more used is a warning", None,
                                      unit="%")
    timeout_s: float | None = _key("timeout", _number(0, low_open=True), "hard timeout; a check still running is "
                                   "killed and fails as hung (default: [agent] timeout)", None, unit="s")


@dataclass(frozen=True, slots=True)
class ServiceProbe:
    """A parsed [[box.probe]]: kind, port and the probe's own spec (probes.TcpSpec, HttpSpec or TlsSpec)."""

    kind: str
    port: int
    spec: Any = None


@dataclass(frozen=True, slots=True)
class BoxConfig:
    """[[box]]: one monitored VO-Box (a Docker container on macvlan, or a VM)."""

    name: str = _key("name", _text(_NAME_RE, "a name of letters, digits, _ . - (max 128)"),
                     "unique box name (tag `box`)", required=True)
    kind: str = _key("kind", _choice(BOX_KINDS), "what the box is (tag `kind`)", required=True)
    ipv4: str | None = _key("ipv4", _address(4), "probed with icmp + arp (+ tcp)", None)
    ipv6: str | None = _key("ipv6", _address(6), "probed with icmp6 + ndp (+ tcp)", None)
    tcp_ports: tuple[int, ...] = _key("tcp_ports", _list_of(_PORT, unique=True),
                                      "TCP ports that must accept a connection", ())
    container: str | None = _key("container", _text(_DOCKER_NAME_RE, "a Docker container name or id"),
                                 "kind = container: Docker name or id (required there)", None)
    network: str | None = _key("network", _text(_DOCKER_NAME_RE, "a Docker network name or id"),
                               "kind = container: its macvlan network (required there)", None)
    remediate: tuple[str, ...] = _key("remediate", _list_of(_ACTION, unique=True),
                                      "the escalation ladder, in order: " + ", ".join(REMEDIATION_ACTIONS), ())
    command: tuple[str, ...] | None = _key("command", _list_of(_ARG, min_len=1),
                                           "argv for action `command`, no shell; placeholders "
                                           + ", ".join("{%s}" % p for p in COMMAND_PLACEHOLDERS)
                                           + "; {{ and }} for a literal { and }", None)
    exec: tuple[str, ...] | None = _key("exec", _list_of(_ARG, min_len=1),
                                        "kind = container: argv for action `exec`, run inside the container "
                                        "(Docker exec), no shell; e.g. [\"/bin/sh\", \"-c\", \"service monalisa "
                                        "restart\"]; placeholders as for `command`", None)
    dry_run: bool = _key("dry_run", _boolean, "this box: record remediation, do nothing", False)
    restart_stopped: bool = _key("restart_stopped", _boolean,
                                 "kind = container: a container stopped, killed or removed by someone else is a "
                                 "failure (frozen, remediated) instead of state `stopped` (left alone)", False)
    segment: str | None = _key("segment", _text(_TAG_TEXT_RE, "a non-empty string without control characters"),
                               "correlation segment (default: the L2 domain the agent reaches the box through, interface and "
                               "on-link prefix; without a route: network, else site)", None)
    probes: tuple[ServiceProbe, ...] = _key("probe", _tables("box.probe"),
                                            "service probes ([[box.probe]] tables, see below), run on every "
                                            "address of the box", ())
    checks: tuple[Check, ...] = _key("check", _tables("box.check"),
                                     "kind = container: in-container checks ([[box.check]] tables, see below)", ())

    def segment_name(self, site: str | None = None) -> str:
        """The correlation segment: `segment`, else the Docker network, else the site, else "default"."""
        return self.segment or self.network or site or "default"

    def addresses(self) -> tuple[str, ...]:
        """The box's configured addresses (IPv4 first)."""
        return tuple(a for a in (self.ipv4, self.ipv6) if a)

    def remediation_target(self) -> RemediationTarget:
        """What remediation needs of this box (remediations.model.RemediationTarget)."""
        return RemediationTarget(box=self.name, kind=self.kind, ipv4=self.ipv4, ipv6=self.ipv6,
                                 container=self.container, network=self.network, command=tuple(self.command or ()),
                                 exec=tuple(self.exec or ()), ladder=tuple(self.remediate), dry_run=self.dry_run)


def _maintenance_boxes(v: Any) -> tuple[str, ...] | None:
    if v == "all":
        return None
    return _list_of(_text(_NAME_RE, "a box name"), min_len=1, unique=True)(v)


_maintenance_boxes.label = '"all" or a list of box names'  # type: ignore[attr-defined]


def _hhmm(v: Any) -> int:
    try:
        return parse_hhmm(v)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


_hhmm.label = 'a local time "HH:MM"'  # type: ignore[attr-defined]


def _timezone(v: Any) -> str:
    try:
        ZoneInfo(v)
    except (ValueError, TypeError, ZoneInfoNotFoundError):
        raise _Invalid(f'expected an IANA time zone name ("UTC", "Europe/Zurich"), got {_show(v)}') from None
    return v


_timezone.label = "an IANA time zone name"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class MaintenanceConfig:
    """[[maintenance]]: a recurring maintenance window; its boxes are probed and stored, never frozen or remediated."""

    boxes: tuple[str, ...] | None = _key("boxes", _maintenance_boxes, 'the boxes in the window, or "all"',
                                         required=True)
    start_min: int = _key("start", _hhmm, "when each occurrence starts, local time in `timezone`", required=True)
    duration_s: float = _key("duration", _number(0, 7 * 86400, low_open=True), "how long each occurrence lasts",
                             unit="s", required=True)
    reason: str = _key("reason", _text(), "why (shown by status, stored with the points)", required=True)
    weekdays: tuple[str, ...] = _key("weekdays", _list_of(_choice(WEEKDAYS), unique=True),
                                     "the days it starts on (mon ... sun); empty: every day", ())
    timezone: str = _key("timezone", _timezone, "the time zone of `start` (daylight saving time followed)", "UTC")

    def recurring(self) -> Recurring:
        """The core's window (agent.core.maintenance.Recurring)."""
        return Recurring(self.boxes, tuple(WEEKDAYS.index(d) for d in self.weekdays), self.start_min,
                         self.duration_s, self.timezone, self.reason)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated agent configuration."""

    agent: AgentConfig
    freeze: FreezeConfig
    influxdb: InfluxConfig
    remediation: RemediationConfig
    correlation: CorrelationConfig
    forensics: ForensicsConfig
    boxes: tuple[BoxConfig, ...]
    source: str | None = None
    metrics: MetricsConfig = MetricsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    otlp: OtlpConfig = OtlpConfig()
    flapping: FlappingConfig = FlappingConfig()
    maintenance: tuple[MaintenanceConfig, ...] = ()   # [[maintenance]] recurring windows

    def box(self, name: str) -> BoxConfig:
        """The box called name; KeyError naming the valid ones otherwise."""
        for b in self.boxes:
            if b.name == name:
                return b
        raise KeyError(f"unknown box {name!r} (configured: {', '.join(b.name for b in self.boxes)})")


# The tables inside a [[box]]: describe() path prefix -> dataclass.
SUBSECTIONS: dict[str, type] = {"box[].probe[]": ProbeConfig, "box[].check[]": CheckConfig,
                                "discovery.probe[]": ProbeConfig}

# TOML section -> dataclass; "box" is the array of tables.
SECTIONS: dict[str, type] = {
    "agent": AgentConfig,
    "freeze": FreezeConfig,
    "influxdb": InfluxConfig,
    "remediation": RemediationConfig,
    "correlation": CorrelationConfig,
    "forensics": ForensicsConfig,
    "metrics": MetricsConfig,
    "discovery": DiscoveryConfig,
    "otlp": OtlpConfig,
    "flapping": FlappingConfig,
    "box": BoxConfig,
    "maintenance": MaintenanceConfig,
}
# Sections that are arrays of tables ([[box]], [[maintenance]]); describe() names their keys "box[].name".
TABLE_ARRAYS: tuple[str, ...] = ("box", "maintenance")


# --- self-description ---

@dataclass(frozen=True, slots=True)
class KeyDoc:
    """One config key: where it lives, its type, default, unit and meaning."""

    path: str            # e.g. "agent.interval", "box[].tcp_ports"
    field: str           # dataclass field, e.g. "interval_s"
    type: str            # expected value, e.g. "a number > 0"
    default: Any         # None = absent/off; MISSING shown as required
    required: bool
    unit: str
    doc: str


def describe() -> list[KeyDoc]:
    """Every config key with type, default, unit and meaning, in section and field order."""
    out = []
    for section, cls in SECTIONS.items():
        prefix = f"{section}[]" if section in TABLE_ARRAYS else section
        for f in fields(cls):
            md = f.metadata
            default = None if f.default is MISSING else f.default
            out.append(KeyDoc(f"{prefix}.{md['key']}", f.name, getattr(md["conv"], "label", "a value"),
                              list(default) if isinstance(default, tuple) else default,
                              bool(md["required"]), md["unit"], md["doc"]))
        for prefix, sub in SUBSECTIONS.items():
            if prefix.split(".")[0] != ("box[]" if section == "box" else section):
                continue
            for f in fields(sub):
                md = f.metadata
                default = None if f.default is MISSING else f.default
                out.append(KeyDoc(f"{prefix}.{md['key']}", f.name, getattr(md["conv"], "label", "a value"),
                                  list(default) if isinstance(default, tuple) else default,
                                  bool(md["required"]), md["unit"], md["doc"]))
    return out


# --- parsing ---

def _unknown(path: str, key: str, valid: list[str]) -> str:
    hint = difflib.get_close_matches(key, valid, n=1)
    did = f"did you mean {hint[0]!r}? " if hint else ""
    return f"{path}.{key}: unknown key ({did}valid: {', '.join(valid)})"


def _section(cls: type, table: Any, path: str, errors: list[str]) -> dict[str, Any] | None:
    """Convert one TOML table to constructor kwargs for cls, appending errors; None when not a table."""
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


def _placeholders(argv: tuple[str, ...], path: str, raw: dict[str, Any], errors: list[str]) -> None:
    """Each argument's template through remediations.actions.template_errors (the one expansion rule)."""
    available = ["box"] + [k for k in ("ipv4", "ipv6", "container") if k in raw]
    for i, arg in enumerate(argv):
        for problem in template_errors(arg, available):
            errors.append(f"{path}[{i}]: {problem}")


def _check_box(i: int, b: dict[str, Any], raw: dict[str, Any], errors: list[str]) -> None:
    """Cross-key checks of one box; presence is judged on the raw table so a bad value is reported once."""
    path = f"box[{i}]"
    kind = b.get("kind")
    if "ipv4" not in raw and "ipv6" not in raw:
        errors.append(f"{path}: needs ipv4 or ipv6 (or both)")
    if kind == "container":
        for key in ("container", "network"):
            if key not in raw:
                errors.append(f"{path}.{key}: missing (required for kind = \"container\")")
    elif kind == "vm":
        for key in ("container", "network"):
            if key in b:
                errors.append(f"{path}.{key}: only for kind = \"container\" (this box is a vm)")
        for j, action in enumerate(b.get("remediate", ())):
            if action in CONTAINER_ACTIONS:
                errors.append(f"{path}.remediate[{j}]: {_show(action)} only works on containers "
                              f"(this box is a vm; use \"command\")")
    if "command" in b.get("remediate", ()) and "command" not in raw:
        errors.append(f"{path}.command: missing (required because remediate lists \"command\")")
    if b.get("command") is not None:
        _placeholders(b["command"], f"{path}.command", raw, errors)
    if "exec" in b.get("remediate", ()) and "exec" not in raw:
        errors.append(f"{path}.exec: missing (required because remediate lists \"exec\")")
    if kind == "vm" and "exec" in b:
        errors.append(f"{path}.exec: only for kind = \"container\" (this box is a vm)")
    if b.get("exec") is not None:
        _placeholders(b["exec"], f"{path}.exec", raw, errors)


# Which [[box.probe]] keys each kind takes: its spec's fields (probes/<kind>.py), plus kind and port.
_PROBE_FIELD_KEYS = {f.name: f.metadata["key"] for f in fields(ProbeConfig)}


def _service_probes(tables: tuple, path: str, errors: list[str]) -> tuple[ServiceProbe, ...]:
    """[[box.probe]] tables -> ServiceProbe with the kind's spec; each error names box[i].probe[j].key."""
    out = []
    for j, raw in enumerate(tables):
        here = f"{path}[{j}]"
        n = len(errors)
        kw = _section(ProbeConfig, raw, here, errors)
        if kw is None or len(errors) > n or "kind" not in kw:
            continue
        spec_cls = probes.PROBES[kw["kind"]].SPEC
        takes = {f.name for f in fields(spec_cls)}
        spec_kw = {}
        for name, value in kw.items():
            if name in ("kind", "port"):
                continue
            if name not in takes:
                users = [k for k in SERVICE_PROBE_KINDS if name in {f.name for f in fields(probes.PROBES[k].SPEC)}]
                errors.append(f"{here}.{_PROBE_FIELD_KEYS[name]}: only for kind = "
                              f"{' or '.join(json.dumps(u) for u in users)} (this probe is {_show(kw['kind'])})")
                continue
            spec_kw[name] = value
        if len(errors) > n:
            continue
        spec = spec_cls(**spec_kw)
        try:
            spec.check()
        except ValueError as exc:
            errors.append(f"{here}: {exc}")
            continue
        out.append(ServiceProbe(kw["kind"], kw["port"], spec if spec_kw else None))
    return tuple(out)


def _checks(tables: tuple, path: str, box_kind: str | None, interval_s: float, errors: list[str]) -> tuple[Check, ...]:
    """[[box.check]] tables -> agent.checks.Check; each error names box[i].check[j].key."""
    out = []
    if tables and box_kind == "vm":
        errors.append(f"{path}: only for kind = \"container\" (checks run in the container's mount namespace)")
        return ()
    keys = {f.name: f.metadata["key"] for f in fields(CheckConfig)}
    for j, raw in enumerate(tables):
        here = f"{path}[{j}]"
        n = len(errors)
        kw = _section(CheckConfig, raw, here, errors)
        if kw is None or len(errors) > n or "kind" not in kw:
            continue
        takes = set(CHECKS[kw["kind"]].KEYS) | {"kind", "timeout"}
        for name in kw:
            if keys[name] not in takes:
                users = [k for k in CHECK_KINDS if keys[name] in CHECKS[k].KEYS]
                errors.append(f"{here}.{keys[name]}: only for kind = "
                              f"{' or '.join(json.dumps(u) for u in users)} (this check is {_show(kw['kind'])})")
        for key in ("path", "argv"):
            if key in takes and key not in kw:
                errors.append(f"{here}.{key}: missing (required for kind = {_show(kw['kind'])})")
        if kw.get("timeout_s") is not None and kw["timeout_s"] >= interval_s:
            errors.append(f"{here}.timeout: must be less than agent.interval ({interval_s:g} s), "
                          f"got {kw['timeout_s']:g}")
        if len(errors) == n:
            out.append(Check(**kw))
    return tuple(out)


def _read_token(path: str, key_path: str, errors: list[str]) -> str | None:
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as exc:
        errors.append(f"{key_path}: cannot read {path!r}: {exc.strerror}")
        return None
    if not token:
        errors.append(f"{key_path}: {path!r} is empty")
        return None
    return token


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
                raise ValueError(f"{path}: line {n} is not 'Name: value'")
            headers[name] = value
    if not headers:
        raise ValueError(f"{path}: no header in it")
    return headers


def _check_influx_tls(influx: dict[str, Any], raw: dict[str, Any], errors: list[str]) -> None:
    """[influxdb] TLS keys that go together, only with an https:// url (the files: file_errors)."""
    tls_keys = [k for k in ("ca_file", "client_cert", "client_key", "insecure_skip_verify") if k in raw]
    url = influx.get("url", "")
    if tls_keys and url and not url.startswith("https://"):
        for k in tls_keys:
            errors.append(f"influxdb.{k}: only used with an https:// url (url is {_show(url)})")
        return
    if influx.get("insecure_skip_verify") and influx.get("ca_file"):
        errors.append("influxdb.insecure_skip_verify: give ca_file or insecure_skip_verify, not both")
    if influx.get("client_key") and not influx.get("client_cert"):
        errors.append("influxdb.client_key: needs influxdb.client_cert")


def _influx_file_errors(influx: InfluxConfig, errors: list[str]) -> None:
    """[influxdb] files: password_file, token_file readable and not empty; CA file/dir, client cert and key load."""
    import ssl

    if influx.api == "v1" and influx.password_file:
        _read_token(influx.password_file, "influxdb.password_file", errors)
    if influx.api == "v2" and influx.token_file:
        _read_token(influx.token_file, "influxdb.token_file", errors)
    if not influx.url.startswith("https://"):
        return
    ca = influx.ca_file
    if ca:
        if not os.path.exists(ca):
            errors.append(f"influxdb.ca_file: no such file or directory: {_show(ca)}")
        elif os.path.isfile(ca):
            try:
                ssl.create_default_context().load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                errors.append(f"influxdb.ca_file: {_show(ca)} holds no usable PEM CA certificate ({exc})")
        elif not os.access(ca, os.R_OK | os.X_OK):
            errors.append(f"influxdb.ca_file: directory {_show(ca)} is not readable")
    cert, key = influx.client_cert, influx.client_key
    if key and not cert:
        return
    for k, path in (("client_cert", cert), ("client_key", key)):
        if path and not os.path.isfile(path):
            errors.append(f"influxdb.{k}: no such file: {_show(path)}")
            cert = None
    if cert:
        try:
            ssl.create_default_context().load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            errors.append(f"influxdb.client_cert: cannot load the certificate and key "
                          f"({_show(cert)}{', ' + _show(key) if key else ''}): {exc}")


def _check_webhook_tls(rem: dict[str, Any], errors: list[str]) -> None:
    """[remediation] webhook TLS keys that go together (the files themselves: file_errors)."""
    verify = rem.get("webhook_verify_client", "none")
    if not rem.get("webhook_cert_file"):
        for k in ("webhook_key_file", "webhook_client_ca_file"):
            if rem.get(k):
                errors.append(f"remediation.{k}: needs remediation.webhook_cert_file (the webhook over TLS)")
        if verify != "none":
            errors.append(f"remediation.webhook_verify_client: {_show(verify)} needs remediation.webhook_cert_file "
                          "(client certificates need TLS)")
    elif verify != "none" and not rem.get("webhook_client_ca_file"):
        errors.append(f"remediation.webhook_client_ca_file: missing (webhook_verify_client is {_show(verify)})")
    elif verify == "none" and rem.get("webhook_client_ca_file"):
        errors.append('remediation.webhook_client_ca_file: unused while webhook_verify_client = "none" '
                      '(set "optional" or "required")')


def webhook_tls_errors(rem: RemediationConfig) -> list[str]:
    """The webhook's TLS files unusable on this machine, one error a line with its key path (used by file_errors)."""
    import ssl

    errors: list[str] = []
    cert, key, ca = rem.webhook_cert_file, rem.webhook_key_file, rem.webhook_client_ca_file
    if cert:
        missing = [k for k, p in (("webhook_cert_file", cert), ("webhook_key_file", key))
                   if p and not os.path.isfile(p)]
        errors += [f"remediation.{k}: no such file: {_show(getattr(rem, k))}" for k in missing]
        if not missing:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as exc:
                errors.append(f"remediation.webhook_cert_file: cannot load the certificate and key "
                              f"({_show(cert)}{', ' + _show(key) if key else ''}): {exc}")
    if ca and rem.webhook_verify_client != "none":
        if not os.path.exists(ca):
            errors.append(f"remediation.webhook_client_ca_file: no such file or directory: {_show(ca)}")
        elif os.path.isdir(ca):
            try:
                hashed = [n for n in os.listdir(ca) if re.match(r"^[0-9a-f]{8}\.\d+$", n)]
            except OSError as exc:
                errors.append(f"remediation.webhook_client_ca_file: directory {_show(ca)} is not readable: {exc}")
            else:
                if not hashed:
                    errors.append(f"remediation.webhook_client_ca_file: directory {_show(ca)} has no hashed CA "
                                  f"names (<hash>.0); run `openssl rehash {ca}`")
        else:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                errors.append(f"remediation.webhook_client_ca_file: {_show(ca)} holds no usable PEM CA "
                              f"certificate ({exc})")
    return errors


def parse(data: dict[str, Any], source: str | None = None, check_files: bool = False) -> Config:
    """Validate a decoded TOML document; raise ConfigError listing every problem.

    CHECK_FILES: also the files it names (file_errors), once everything else is valid.
    """
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table, got {_show(data)}")
    for key in data:
        if key not in SECTIONS:
            if key == "boxes":
                errors.append("boxes: unknown section (boxes are [[box]] tables)")
            else:
                hint = difflib.get_close_matches(key, list(SECTIONS), n=1)
                did = f"did you mean [{hint[0]}]? " if hint else ""
                errors.append(f"{key}: unknown section ({did}valid: {', '.join(SECTIONS)})")
    kw: dict[str, dict[str, Any]] = {}
    for section, cls in SECTIONS.items():
        if section in TABLE_ARRAYS:
            continue
        kw[section] = _section(cls, data.get(section, {}), section, errors) or {}

    # [agent]
    agent = {f.name: f.default for f in fields(AgentConfig)} | kw["agent"]
    raw_agent = data.get("agent", {}) if isinstance(data.get("agent", {}), dict) else {}
    converted = all(k not in raw_agent or f in kw["agent"]
                    for k, f in (("interval", "interval_s"), ("timeout", "timeout_s"), ("jitter", "jitter_s")))
    if not converted:
        pass  # the bad value is already reported; comparing defaults would only add noise
    elif agent["timeout_s"] >= agent["interval_s"]:
        errors.append(f"agent.timeout: must be less than agent.interval ({agent['interval_s']:g} s), "
                      f"got {agent['timeout_s']:g}")
    if converted and agent["jitter_s"] >= agent["interval_s"]:
        errors.append(f"agent.jitter: must be less than agent.interval ({agent['interval_s']:g} s), "
                      f"got {agent['jitter_s']:g}")

    # [influxdb]
    influx = kw["influxdb"]
    api = influx.get("api", "v1")
    v1_only = ("database", "username", "password", "password_file")
    v2_only = ("token", "token_file", "org", "bucket", "gzip")
    raw_influx = data.get("influxdb", {}) if isinstance(data.get("influxdb", {}), dict) else {}
    for key in (v2_only if api == "v1" else v1_only):
        if key in raw_influx:
            errors.append(f"influxdb.{key}: only for api = \"{'v2' if api == 'v1' else 'v1'}\" "
                          f"(api is \"{api}\")")
    has_password = "password" in raw_influx or "password_file" in raw_influx
    if api == "v1" and "password" in raw_influx and "password_file" in raw_influx:
        errors.append("influxdb.password_file: give password or password_file, not both")
    elif api == "v1" and ("username" in raw_influx) != has_password:
        errors.append("influxdb.password: username and password go together"
                      if "username" in raw_influx else "influxdb.username: username and password go together")
    _check_influx_tls(influx, raw_influx, errors)   # password_file and the TLS files: file_errors
    if api == "v2":
        if "token" in raw_influx and "token_file" in raw_influx:
            errors.append("influxdb.token_file: give token or token_file, not both")
        elif "token" not in raw_influx and "token_file" not in raw_influx:
            errors.append("influxdb.token: missing (api = \"v2\" needs token or token_file)")
        elif influx.get("token_file"):
            token = _read_token(influx["token_file"], "influxdb.token_file", [])   # unreadable: file_errors says so
            if token:
                influx["token"] = token
        for key in ("org", "bucket"):
            if key not in raw_influx:
                errors.append(f"influxdb.{key}: missing (required for api = \"v2\")")

    # [flapping]
    flap = {f.name: f.default for f in fields(FlappingConfig)} | kw["flapping"]
    raw_flap = data.get("flapping", {}) if isinstance(data.get("flapping", {}), dict) else {}
    flap_converted = all(k not in raw_flap or f"{k}" in kw["flapping"]
                         for k in ("low_threshold_percent", "high_threshold_percent"))
    if flap_converted and flap["low_threshold_percent"] > flap["high_threshold_percent"]:
        errors.append(f"flapping.low_threshold_percent: must be at most flapping.high_threshold_percent "
                      f"({flap['high_threshold_percent']:g}), got {flap['low_threshold_percent']:g}")

    # [remediation]
    rem = kw["remediation"]
    if rem.get("webhook_listen") and not rem.get("webhook_token_file") \
            and rem.get("webhook_verify_client") != "required":
        errors.append("remediation.webhook_token_file: missing (required when webhook_listen is set, unless "
                      'webhook_verify_client = "required")')
    _check_webhook_tls(rem, errors)

    # [discovery]
    _service_probes(kw["discovery"].get("probes", ()), "discovery.probe", errors)   # checked; kept raw for `discover`

    # [otlp]
    otlp = {f.name: f.default for f in fields(OtlpConfig)} | kw["otlp"]
    if otlp["timeout_s"] >= otlp["interval_s"]:
        errors.append(f"otlp.timeout: must be less than otlp.interval ({otlp['interval_s']:g} s), "
                      f"got {otlp['timeout_s']:g}")
    if otlp["ca_file"] and otlp["endpoint"] and not otlp["endpoint"].startswith("https://"):
        errors.append("otlp.ca_file: only used with an https:// endpoint")

    # [[box]]
    boxes_raw = data.get("box")
    boxes_kw: list[dict[str, Any]] = []
    if boxes_raw is None and kw["discovery"].get("docker"):
        boxes_raw = []   # every box may come from discovery
    if boxes_raw is None:
        errors.append("box: no [[box]] configured (at least one is required)")
    elif not isinstance(boxes_raw, list):
        errors.append(f"box: expected [[box]] tables, got {_show(boxes_raw)}")
    else:
        names: dict[str, int] = {}
        addrs: dict[str, str] = {}
        for i, raw in enumerate(boxes_raw):
            b = _section(BoxConfig, raw, f"box[{i}]", errors)
            if b is None:
                continue
            boxes_kw.append(b)
            _check_box(i, b, raw, errors)
            b["probes"] = _service_probes(b.get("probes", ()), f"box[{i}].probe", errors)
            b["checks"] = _checks(b.get("checks", ()), f"box[{i}].check", b.get("kind"),
                                  agent["interval_s"] if converted else math.inf, errors)
            if "name" in b:
                if b["name"] in names:
                    errors.append(f"box[{i}].name: duplicate {_show(b['name'])} (also box[{names[b['name']]}])")
                names.setdefault(b["name"], i)
            for fam in ("ipv4", "ipv6"):
                if fam in b:
                    if b[fam] in addrs:
                        errors.append(f"box[{i}].{fam}: duplicate address {b[fam]} (also {addrs[b[fam]]})")
                    addrs.setdefault(b[fam], f"box[{i}].{fam}")

    maintenance = _maintenance_windows(data.get("maintenance", []), boxes_kw, bool(kw["discovery"].get("docker")),
                                       errors)

    if errors:
        raise ConfigError(errors)
    config = Config(
        agent=AgentConfig(**kw["agent"]),
        freeze=FreezeConfig(**kw["freeze"]),
        influxdb=InfluxConfig(**influx),
        remediation=RemediationConfig(**rem),
        correlation=CorrelationConfig(**kw["correlation"]),
        forensics=ForensicsConfig(**kw["forensics"]),
        metrics=MetricsConfig(**kw["metrics"]),
        discovery=DiscoveryConfig(**kw["discovery"]),
        otlp=OtlpConfig(**kw["otlp"]),
        flapping=FlappingConfig(**kw["flapping"]),
        boxes=tuple(BoxConfig(**b) for b in boxes_kw),
        source=source,
        maintenance=maintenance,
    )
    errors = runtime_errors(config)
    if not errors and check_files:
        errors = file_errors(config)
    if errors:
        raise ConfigError(errors)
    return config


def box_value(key: str, value: Any) -> Any:
    """VALUE converted as the [[box]] key KEY is in a config file (e.g. a Docker label's); ValueError says why not."""
    f = next((f for f in fields(BoxConfig) if f.metadata["key"] == key), None)
    if f is None:
        raise ValueError(f"no [[box]] key {key!r}")
    try:
        return f.metadata["conv"](value)
    except _Invalid as exc:
        raise ValueError(f"{exc.sub}: {exc.msg}" if exc.sub else exc.msg) from None


def box_from_table(raw: dict[str, Any], config: Config, path: str = "box") -> BoxConfig:
    """One [[box]] table (as TOML decodes it) validated as parse() and runtime_errors() do; ConfigError otherwise."""
    errors: list[str] = []
    b = _section(BoxConfig, raw, path, errors)
    if b is not None:
        n = len(errors)
        _check_box(0, b, raw, errors)
        errors[n:] = [e.replace("box[0]", path, 1) for e in errors[n:]]
        b["probes"] = _service_probes(b.get("probes", ()), f"{path}.probe", errors)
        b["checks"] = _checks(b.get("checks", ()), f"{path}.check", b.get("kind"), config.agent.interval_s, errors)
    if errors or b is None:
        raise ConfigError(errors)
    box = BoxConfig(**b)
    errors = [e.replace("box[0]", path, 1) for e in runtime_errors(replace(config, boxes=(box,)))]
    if errors:
        raise ConfigError(errors)
    return box


def _maintenance_windows(raw: Any, boxes_kw: list[dict[str, Any]], discovery: bool, errors: list[str]
                         ) -> tuple[MaintenanceConfig, ...]:
    """[[maintenance]] tables -> MaintenanceConfig; each error names maintenance[i].key.

    The boxes named must be [[box]] names, unless [discovery] docker is on (a discovered box is known at run only).
    """
    if not isinstance(raw, list):
        errors.append(f"maintenance: expected [[maintenance]] tables, got {_show(raw)}")
        return ()
    names = [b["name"] for b in boxes_kw if "name" in b]
    out = []
    for i, table in enumerate(raw):
        m = _section(MaintenanceConfig, table, f"maintenance[{i}]", errors)
        if m is None:
            continue
        bad = False
        for j, name in enumerate(m.get("boxes") or ()):
            if name not in names and not discovery:
                hint = difflib.get_close_matches(name, names, n=1)
                did = f"did you mean {hint[0]!r}? " if hint else ""
                errors.append(f"maintenance[{i}].boxes[{j}]: unknown box {_show(name)} ({did}configured: "
                              f"{', '.join(names)})")
                bad = True
        required = [f.name for f in fields(MaintenanceConfig) if f.metadata["required"]]
        if not bad and all(k in m for k in required):
            out.append(MaintenanceConfig(**m))
    return tuple(out)


def runtime_errors(config: Config) -> list[str]:
    """What `run` would trip over in a config that parsed: the one validation check-config and run share.

    Every box's cycle targets pass the probes' own validation (probes.validate), the points
    written for it encode as line protocol (agent.storage.points), and its command template
    expands (remediations.actions.expand_command). Each error names the box's key path.
    """
    import probes
    from agent.core.cycle import address_targets, service_targets
    from agent.storage import points as P
    from remediations.actions import ActionError, expand_command

    errors: list[str] = []
    site = config.agent.site
    for i, box in enumerate(config.boxes):
        path = f"box[{i}]"
        targets = address_targets(box)
        for t in targets:
            try:
                probes.validate(t)
            except ValueError as exc:
                key = "tcp_ports" if t.port is not None else ("ipv4" if t.address == box.ipv4 else "ipv6")
                errors.append(f"{path}.{key}: {exc}")
        for j, sp in enumerate(box.probes):
            for t in service_targets(box, sp):
                targets.append(t)
                try:
                    probes.validate(t)
                except ValueError as exc:
                    errors.append(f"{path}.probe[{j}]: {exc}")
        try:
            P.to_lines([P.box_point(box.name, box.kind, site, 1, "up", "none", 0.0),
                        *(P.probe_point(box.name, box.kind, site, t.probe, t.address, t.port, True, 0.1, None, None,
                                        0.0, layer="l7", status_code=200, cert_days_left=1.0) for t in targets),
                        *(P.probe_point(box.name, box.kind, site, "check:" + c.kind, c.target, None, True, 0.1, None,
                                        None, 0.0) for c in box.checks),
                        *(P.warning_point(box.name, box.kind, site, "check:" + c.kind, c.target, "expires", 0.0,
                                          days_left=1.0) for c in box.checks),
                        P.segment_freeze_point(box.segment_name(site), site, 0.0, (box.name,), "l2", False, 0.0)])
        except ValueError as exc:
            errors.append(f"{path}: its points cannot be written to InfluxDB: {exc}")
        for key in ("command", "exec"):
            if getattr(box, key) and key in box.remediate:
                try:
                    expand_command(box.remediation_target(), key)
                except ActionError as exc:
                    errors.append(f"{path}.{key}: {exc}")
    return errors


def loads(text: str, source: str | None = None, check_files: bool = False) -> Config:
    """Parse TOML text; syntax errors become ConfigError too (CHECK_FILES: see parse)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source or 'config'}: TOML syntax error: {exc}") from None
    return parse(data, source, check_files)


def load(path: str | os.PathLike[str], check_files: bool = True) -> Config:
    """Read and validate the TOML config file at path; CHECK_FILES: also the files it names (file_errors).

    Commands that only read what the agent stored (status, events, report, evidence) pass False:
    a hook's executable missing on the machine where an admin reads a report is not their concern.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from None
    return loads(text, path, check_files)


def file_errors(cfg: Config) -> list[str]:
    """Files the config names that are missing or unusable on this machine, one error a line with its key path.

    Checked by `parse` with check_files (so by `load`: check-config and run) and listed by `doctor`, one
    failed check each: [influxdb] password_file / token_file (readable, not empty), ca_file (a PEM file or
    a readable directory), client_cert and client_key (load together); the webhook token file, its TLS
    certificate, key and client CAs (webhook_tls_errors); the executable of each box's `command` (an
    absolute path that is executable, or a name on PATH) when its ladder uses it.
    """
    import shutil

    errors: list[str] = []
    _influx_file_errors(cfg.influxdb, errors)
    rem = cfg.remediation
    if rem.webhook_listen and rem.webhook_token_file:
        _read_token(rem.webhook_token_file, "remediation.webhook_token_file", errors)
    if cfg.otlp.endpoint and cfg.otlp.headers_file:
        try:
            read_headers(cfg.otlp.headers_file)
        except OSError as exc:
            errors.append(f"otlp.headers_file: cannot read {cfg.otlp.headers_file!r}: {exc.strerror}")
        except ValueError as exc:
            errors.append(f"otlp.headers_file: {exc}")
    if cfg.otlp.endpoint and cfg.otlp.ca_file and not os.path.exists(cfg.otlp.ca_file):
        errors.append(f"otlp.ca_file: {cfg.otlp.ca_file!r} does not exist")
    if rem.webhook_listen:
        errors += webhook_tls_errors(rem)
    for i, b in enumerate(cfg.boxes):
        if not b.command or "command" not in b.remediate:
            continue
        exe = b.command[0]
        if "{" in exe:
            continue  # chosen per box at run time; expand_command checks it then
        if os.sep in exe:
            if not os.path.isfile(exe):
                errors.append(f"box[{i}].command[0]: {exe!r} does not exist")
            elif not os.access(exe, os.X_OK):
                errors.append(f"box[{i}].command[0]: {exe!r} is not executable")
        elif shutil.which(exe) is None:
            errors.append(f"box[{i}].command[0]: {exe!r} not found on PATH ({os.environ.get('PATH', '')})")
    return errors

