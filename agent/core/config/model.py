"""The config model: one frozen dataclass per TOML section; each section checks its own cross-key rules.

Each field carries its TOML key, converter (type), unit and meaning in its metadata (`_key`), so
`describe()` lists every key, docs/config-reference.md and the JSON Schema are generated from it. Each
section's `check(kw, raw, path, ctx)` holds the rules between its own keys, as blackbox_exporter's config
types do in UnmarshalYAML. A component's default lives in the component and is read here
(remediations.model.RemediationPolicy, agent.core.freeze/correlation/flapping settings,
agent.storage.defaults, agent.forensics.retention, agent.atomic).
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import probes
from agent.atomic import DEFAULT_STATE_DIR
from agent.checks import CHECK_KINDS, CHECKS, Check
from agent.core.config.convert import (
    _ARG,
    _DOCKER_NAME_RE,
    _NAME_RE,
    _PORT,
    _TAG_TEXT_RE,
    _address,
    _boolean,
    _choice,
    _hostname,
    _integer,
    _Invalid,
    _key,
    _labelled,
    _list_of,
    _listen,
    _nameserver,
    _number,
    _section,
    _show,
    _tables,
    _text,
    _timezone,
    _url,
    is_link_local,
)
from agent.core.correlation import CorrelationSettings
from agent.core.events import BoxKind
from agent.core.flapping import FlapSettings
from agent.core.freeze import FreezeThresholds
from agent.core.maintenance import WEEKDAYS, Recurring, parse_hhmm
from agent.core.resolve import RESOLVE_DEFAULT_S, RESOLVE_FLOOR_S
from agent.forensics import retention
from agent.storage import defaults as storage_defaults
from agent.tls import VERIFY, TLSSettings, client as tls_client, server as tls_server
from remediations.actions import ACTIONS, PLACEHOLDERS, template_errors
from remediations.model import RemediationPolicy, RemediationTarget
from remediations.webhook import DEFAULT_MAX_BYTES as WEBHOOK_DEFAULT_MAX_BYTES

# Remediation action names a box's `remediate` ladder may use: the remediations registry.
REMEDIATION_ACTIONS: tuple[str, ...] = tuple(ACTIONS)
# Actions that act on a Docker container, so only valid for kind = "container".
CONTAINER_ACTIONS: frozenset[str] = frozenset(name for name, a in ACTIONS.items() if a.needs_container)
# What a box is: a Docker container (the talk's macvlan VO-Box) or a VM; the tag `kind` everywhere
# (agent.core.events.BoxKind, the one place).
BOX_KINDS: tuple[str, ...] = tuple(k.value for k in BoxKind)
INFLUX_APIS: tuple[str, ...] = ("v1", "v2")
# [remediation] webhook_verify_client values: the one TLS type's (Apache's SSLVerifyClient none/optional/require).
WEBHOOK_VERIFY_CLIENT: tuple[str, ...] = tuple(VERIFY)
# Placeholders allowed in a box's `command` argv (remediations.actions expands them).
COMMAND_PLACEHOLDERS: tuple[str, ...] = PLACEHOLDERS


def _defaults_of(cls: Any) -> dict[str, Any]:
    """Field name -> default of a component's settings dataclass: the one place of those defaults."""
    return {f.name: f.default for f in fields(cls)}


# The components' defaults the sections read (one place each): the remediation policy, the freeze
# thresholds, correlation and flapping settings (agent/core/{freeze,correlation,flapping}.py).
_POLICY = _defaults_of(RemediationPolicy)
_FREEZE = _defaults_of(FreezeThresholds)
_CORRELATION = _defaults_of(CorrelationSettings)
_FLAPPING = _defaults_of(FlapSettings)
# Sizes in the config are MiB (2**20 bytes) everywhere, and the keys say so (`*_mib`); the storage's unit.
MIB = storage_defaults.MIB
# Service probe kinds a [[box.probe]] may name (those that take a port and a spec: tcp, http, tls).
SERVICE_PROBE_KINDS: tuple[str, ...] = probes.SERVICE_KINDS
_ACTION = _choice(REMEDIATION_ACTIONS)


@dataclass(frozen=True, slots=True)
class Context:
    """What a section's cross-key rules may read of the sections checked before it (converted values)."""

    interval_s: float = math.inf      # [agent] interval; inf when it was invalid (nothing compared to it)
    interface: str | None = None      # [agent] interface
    box_names: tuple[str, ...] = ()   # the [[box]] names
    discovery: bool = False           # [discovery] docker


def _present(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """[agent]: probe cycle timing and where the agent keeps its state."""

    interval_s: float = _key("interval", _number(0, low_open=True), "seconds between probe cycles", 10.0, unit="s")
    timeout_s: float = _key("timeout", _number(0, low_open=True), "reply timeout per probe", 1.0, unit="s")
    jitter_s: float = _key("jitter", _number(0), "random delay of each cycle start after its slot on the exact "
                           "interval grid, drawn per cycle, up to this (cycles never drift)", 0.5, unit="s")
    state_dir: str = _key("state_dir", _text(), "freeze state, spool, rejected points, evidence",
                          DEFAULT_STATE_DIR)
    interface: str | None = _key("interface", _text(), "where ARP/NDP go out (default: from routing)", None)
    site: str | None = _key("site", _text(_TAG_TEXT_RE, "a non-empty string without control characters"),
                            "tag `site` on every point", None)
    nameservers: tuple[str, ...] = _key("nameservers", _list_of(_nameserver, min_len=1, unique=True),
                                        "DNS servers the boxes' `hostname`s are resolved with (agent.resolve); "
                                        "default: the system's resolv.conf (with run --netns NAME: "
                                        "/etc/netns/NAME/resolv.conf when it exists, as `ip netns exec` does)", ())
    resolve_interval_s: float = _key("resolve_interval", _number(RESOLVE_FLOOR_S),
                                     "seconds between two resolutions of the boxes' `hostname`s (also resolved "
                                     f"at start and before each remediation); at least {RESOLVE_FLOOR_S:g} s, "
                                     "so a fleet of names never floods the site's resolvers",
                                     RESOLVE_DEFAULT_S, unit="s")

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """timeout and jitter below interval (compared only when all three converted)."""
        if any(k in raw and f not in kw for k, f in (("interval", "interval_s"), ("timeout", "timeout_s"),
                                                     ("jitter", "jitter_s"))):
            return []   # the bad value is already reported; comparing defaults would only add noise
        a: dict[str, Any] = {f.name: f.default for f in fields(AgentConfig)} | kw
        errors = []
        if a["timeout_s"] >= a["interval_s"]:
            errors.append(f"{path}.timeout: must be less than agent.interval ({a['interval_s']:g} s), "
                          f"got {a['timeout_s']:g}")
        if a["jitter_s"] >= a["interval_s"]:
            errors.append(f"{path}.jitter: must be less than agent.interval ({a['interval_s']:g} s), "
                          f"got {a['jitter_s']:g}")
        return errors


@dataclass(frozen=True, slots=True)
class FreezeConfig:
    """[freeze]: thresholds of the per-box freeze state machine."""

    fail_cycles: int = _key("fail_cycles", _integer(1, 1000),
                            "consecutive failing cycles before a box is frozen", _FREEZE["fail_cycles"])
    recover_cycles: int = _key("recover_cycles", _integer(1, 1000),
                               "consecutive healthy cycles before a frozen box is up again; a failing cycle "
                               "during recovery continues the same freeze (flap damping)",
                               _FREEZE["recover_cycles"])
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
    """[influxdb]: where points go (v1 /write, v2 influxdb-client); absent: no InfluxDB, no spool, no point written."""

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
    batch_points: int = _key("batch_points", _integer(1, 1_000_000), "points per HTTP write request",
                             storage_defaults.DEFAULT_BATCH_POINTS)
    spool_max_mib: float = _key("spool_max_mib", _number(0, low_open=True),
                               "on-disk spool bound; oldest points are dropped (and counted) only when full",
                               storage_defaults.DEFAULT_SPOOL_MAX_BYTES / MIB, unit="MiB")
    retry_min_s: float = _key("retry_min", _number(0, low_open=True),
                              "after a failed write, spool for this long before trying again (doubles on "
                              "each failure)", storage_defaults.DEFAULT_RETRY_MIN_S, unit="s")
    retry_max_s: float = _key("retry_max", _number(0, low_open=True),
                              "longest wait between two write attempts while InfluxDB is down",
                              storage_defaults.DEFAULT_RETRY_MAX_S, unit="s")
    queue_max_points: int = _key("queue_max_points", _integer(1000, 100_000_000),
                                 "points held in memory between the probe cycle and the writer thread (and while "
                                 "the spool's disk is full); over it the oldest are dropped and counted",
                                 storage_defaults.DEFAULT_QUEUE_MAX_POINTS)
    retention_s: float | None = _key("retention", _number(0, low_open=True),
                                     "the retention period of the database/bucket: spooled points older than "
                                     "this are dropped (and counted) before sending; default: learned from "
                                     "InfluxDB (SHOW RETENTION POLICIES on v1, the buckets API on v2) when the "
                                     "credentials may read it, else none dropped", None, unit="s")
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

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """v1-only and v2-only keys, credentials that go together, TLS keys only with https (files: files.py)."""
        errors = []
        api = kw.get("api", "v1")
        v1_only = ("database", "username", "password", "password_file")
        v2_only = ("token", "token_file", "org", "bucket", "gzip")
        for key in (v2_only if api == "v1" else v1_only):
            if key in raw:
                errors.append(f"{path}.{key}: only for api = \"{'v2' if api == 'v1' else 'v1'}\" "
                              f"(api is \"{api}\")")
        has_password = "password" in raw or "password_file" in raw
        if api == "v1" and "password" in raw and "password_file" in raw:
            errors.append(f"{path}.password_file: give password or password_file, not both")
        elif api == "v1" and ("username" in raw) != has_password:
            errors.append(f"{path}.password: username and password go together"
                          if "username" in raw else f"{path}.username: username and password go together")
        tls_keys = [k for k in ("ca_file", "client_cert", "client_key", "insecure_skip_verify") if k in raw]
        url = kw.get("url", "")
        if tls_keys and url and not url.startswith("https://"):
            errors += [f"{path}.{k}: only used with an https:// url (url is {_show(url)})" for k in tls_keys]
        else:
            if kw.get("insecure_skip_verify") and kw.get("ca_file"):
                errors.append(f"{path}.insecure_skip_verify: give ca_file or insecure_skip_verify, not both")
            if kw.get("client_key") and not kw.get("client_cert"):
                errors.append(f"{path}.client_key: needs influxdb.client_cert")
        if api == "v2":
            if "token" in raw and "token_file" in raw:
                errors.append(f"{path}.token_file: give token or token_file, not both")
            elif "token" not in raw and "token_file" not in raw:
                errors.append(f"{path}.token: missing (api = \"v2\" needs token or token_file)")
            for key in ("org", "bucket"):
                if key not in raw:
                    errors.append(f"{path}.{key}: missing (required for api = \"v2\")")
        return errors

    def tls(self) -> TLSSettings:
        """The client-side TLS settings (agent.tls) InfluxDB is reached with."""
        return tls_client(self.ca_file, self.client_cert, self.client_key, self.insecure_skip_verify)


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
                                  WEBHOOK_DEFAULT_MAX_BYTES, unit="bytes")
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

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """The webhook's token or client certificates, and its TLS keys that go together (files: files.py)."""
        errors = []
        verify = kw.get("webhook_verify_client", "none")
        if kw.get("webhook_listen") and not kw.get("webhook_token_file") and verify != "required":
            errors.append(f"{path}.webhook_token_file: missing (required when webhook_listen is set, unless "
                          'webhook_verify_client = "required")')
        if not kw.get("webhook_cert_file"):
            for k in ("webhook_key_file", "webhook_client_ca_file"):
                if kw.get(k):
                    errors.append(f"{path}.{k}: needs remediation.webhook_cert_file (the webhook over TLS)")
            if verify != "none":
                errors.append(f"{path}.webhook_verify_client: {_show(verify)} needs remediation.webhook_cert_file "
                              "(client certificates need TLS)")
        elif verify != "none" and not kw.get("webhook_client_ca_file"):
            errors.append(f"{path}.webhook_client_ca_file: missing (webhook_verify_client is {_show(verify)})")
        elif verify == "none" and kw.get("webhook_client_ca_file"):
            errors.append(f'{path}.webhook_client_ca_file: unused while webhook_verify_client = "none" '
                          '(set "optional" or "required")')
        return errors

    def tls(self) -> TLSSettings | None:
        """The webhook's server-side TLS settings (agent.tls), None for plain HTTP."""
        if not self.webhook_cert_file:
            return None
        return tls_server(self.webhook_cert_file, self.webhook_key_file, self.webhook_client_ca_file,
                          self.webhook_verify_client)

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


# [metrics] site_label: a name no scrape config gives its targets, so `honor_labels: false` (Prometheus's default)
# never renames it to exported_site (issue 31); the labels our metrics use themselves and the ones Prometheus
# sets on every target are refused, as is the reserved "__" prefix (Prometheus data model, label names).
DEFAULT_SITE_LABEL = "vobox_site"
_OWN_LABELS = ("box", "kind", "probe", "layer", "state", "segment", "action", "trigger", "result", "target", "path",
               "server", "version", "python", "le", "quantile", "job", "instance")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@_labelled('a Prometheus label name ([A-Za-z_][A-Za-z0-9_]*, not "__..."), or "" for none', {"type": "string"})
def _site_label(v: Any) -> str:
    if not isinstance(v, str) or (v and (not _LABEL_NAME_RE.match(v) or v.startswith("__"))):
        raise _Invalid(f'expected a Prometheus label name ([A-Za-z_][A-Za-z0-9_]*, not "__...") or "", got {_show(v)}')
    if v in _OWN_LABELS:
        raise _Invalid(f"{_show(v)} is a label of the metrics themselves or of every Prometheus target "
                       f"({', '.join(_OWN_LABELS)}): pick another name, e.g. {_show(DEFAULT_SITE_LABEL)}")
    return v


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus /metrics endpoint."""

    listen: str | None = _key("listen", _listen, 'serve /metrics at "host:port"; absent = off', None)
    site_label: str = _key("site_label", _site_label,
                           "name of the label carrying [agent] site on every series (the default never clashes "
                           'with a target label `site` set by the scrape config); "" = no site label (put the '
                           "site on the targets in the scrape config instead)", DEFAULT_SITE_LABEL)
    cert_file: str | None = _key("cert_file", _text(),
                                 "serve /metrics over TLS only, with this server certificate (PEM, chain after it); "
                                 "reloaded on SIGHUP; absent = plain HTTP", None)
    key_file: str | None = _key("key_file", _text(), "private key (PEM) of cert_file, when not in the same file",
                                None)
    client_ca_file: str | None = _key("client_ca_file", _text(),
                                      "CA certificates scrapers' client certificates are verified against (PEM "
                                      "file or hashed directory)", None)
    verify_client: str = _key("verify_client", _choice(WEBHOOK_VERIFY_CLIENT),
                              'client certificates: "none" (not asked), "optional" (verified when sent), "required"',
                              "none")
    token_file: str | None = _key("token_file", _text(),
                                  "file holding the bearer token every scrape must send (Prometheus: "
                                  "authorization.credentials_file); re-read on SIGHUP; absent = no token", None)
    basic_auth_username: str | None = _key("basic_auth_username", _text(),
                                           "user name every scrape must send by HTTP basic auth (Prometheus: "
                                           "basic_auth), with basic_auth_password_file", None)
    basic_auth_password_file: str | None = _key("basic_auth_password_file", _text(),
                                                "file holding the basic auth password; re-read on SIGHUP", None)

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """TLS keys that go together (as the webhook's), one kind of credential, user and password together."""
        errors = []
        verify = kw.get("verify_client", "none")
        if not kw.get("cert_file"):
            for k in ("key_file", "client_ca_file"):
                if kw.get(k):
                    errors.append(f"{path}.{k}: needs metrics.cert_file (/metrics over TLS)")
            if verify != "none":
                errors.append(f"{path}.verify_client: {_show(verify)} needs metrics.cert_file (client certificates "
                              "need TLS)")
        elif verify != "none" and not kw.get("client_ca_file"):
            errors.append(f"{path}.client_ca_file: missing (verify_client is {_show(verify)})")
        elif verify == "none" and kw.get("client_ca_file"):
            errors.append(f'{path}.client_ca_file: unused while verify_client = "none" (set "optional" or '
                          '"required")')
        if kw.get("basic_auth_username") and not kw.get("basic_auth_password_file"):
            errors.append(f"{path}.basic_auth_password_file: missing (basic_auth_username is set)")
        elif kw.get("basic_auth_password_file") and not kw.get("basic_auth_username"):
            errors.append(f"{path}.basic_auth_username: missing (basic_auth_password_file is set)")
        if kw.get("token_file") and (kw.get("basic_auth_username") or kw.get("basic_auth_password_file")):
            errors.append(f"{path}.token_file: give token_file or basic_auth_*, not both (a scrape sends one "
                          "Authorization header)")
        return errors

    def tls(self) -> TLSSettings | None:
        """The /metrics server's TLS settings (agent.tls), None for plain HTTP."""
        if not self.cert_file:
            return None
        return tls_server(self.cert_file, self.key_file, self.client_ca_file, self.verify_client)

    @property
    def host(self) -> str | None:
        """Host part of listen (IPv6 without brackets)."""
        return self.listen.rsplit(":", 1)[0].strip("[]") if self.listen else None

    @property
    def port(self) -> int | None:
        """Port of listen."""
        return int(self.listen.rsplit(":", 1)[1]) if self.listen else None


@_labelled("an http(s) URL", _url.schema)
def _otlp_url(v: Any) -> str:
    url: str = _url(v)
    return url if re.match(r"^https?://[^/]+/", url) else url + "/v1/metrics"


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

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """timeout below interval; ca_file only with an https endpoint."""
        o: dict[str, Any] = {f.name: f.default for f in fields(OtlpConfig)} | kw
        errors = []
        if o["timeout_s"] >= o["interval_s"]:
            errors.append(f"{path}.timeout: must be less than otlp.interval ({o['interval_s']:g} s), "
                          f"got {o['timeout_s']:g}")
        if o["ca_file"] and o["endpoint"] and not o["endpoint"].startswith("https://"):
            errors.append(f"{path}.ca_file: only used with an https:// endpoint")
        return errors


@_labelled("an IPv4 or IPv6 address", {"type": "string"})
def _witness_address(v: Any) -> str:
    """An IPv4 or IPv6 address (the [correlation] witness), by the box addresses' rules (_address)."""
    if isinstance(v, str) and ":" in v:
        return str(_address(6)(v))   # its own messages: zone ids, IPv4 for IPv6, kinds no host has
    try:
        return str(_address(4)(v))
    except _Invalid as exc:
        if isinstance(v, str) and "of one host" in exc.msg:
            raise
        raise _Invalid(f"expected an IPv4 or IPv6 address, got {_show(v)}") from None


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """[correlation]: many boxes freezing together is a segment outage, not box freezes."""

    enabled: bool = _key("enabled", _boolean, "detect segment freezes", _CORRELATION["enabled"])
    min_boxes: int = _key("min_boxes", _integer(2), "this many boxes freezing within `window` is a segment freeze",
                          _CORRELATION["min_boxes"])
    min_share: float = _key("min_share", _number(0, 1, low_open=True),
                            "or this share of one segment's boxes (segment = box.segment, else the L2 domain "
                            "the agent reaches the box through: interface and on-link prefix)",
                            _CORRELATION["min_share"])
    window_s: float = _key("window", _number(0, low_open=True), "seconds within which the freezes must start",
                           _CORRELATION["window_s"], unit="s")
    hold_remediation: bool = _key("hold_remediation", _boolean,
                                  "defer automatic remediation of the boxes in an open segment freeze",
                                  _CORRELATION["hold_remediation"])
    witness: str | None = _key("witness", _witness_address,
                               "an address on the boxes' segment (e.g. the gateway), probed every cycle with ARP/NDP "
                               "and ping and never remediated: its answer proves the segment works, so no segment "
                               "freeze opens or lasts while it answers; absent = the boxes alone", None)


@dataclass(frozen=True, slots=True)
class FlappingConfig:
    """[flapping]: boxes failing too often for a freeze (fail_cycles in a row) are `degraded`, never remediated."""

    enabled: bool = _key("enabled", _boolean, "score flapping and loss per box; false: no box is ever degraded",
                         _FLAPPING["enabled"])
    window_cycles: int = _key("window_cycles", _integer(3, 1000),
                              "cycles in the window (Nagios and Icinga keep the last 21 check results)",
                              _FLAPPING["window_cycles"])
    low_threshold_percent: float = _key("low_threshold_percent", _number(0, 100),
                                        "a flapping box stops flapping when its percent state change falls to this "
                                        "or below (Icinga 2's flapping_threshold_low)",
                                        _FLAPPING["low_threshold_percent"], unit="%")
    high_threshold_percent: float = _key("high_threshold_percent", _number(0, 100),
                                         "a box starts flapping when its percent state change (weighted verdict "
                                         "changes over the window, newer ones counting more) rises above this "
                                         "(Icinga 2's flapping_threshold_high)",
                                         _FLAPPING["high_threshold_percent"], unit="%")
    max_failed_share: float = _key("max_failed_share", _number(0, 1),
                                   "a box with more than this share of failed cycles in the window is degraded "
                                   "(0.25: more than a quarter)", _FLAPPING["max_failed_share"])

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """low_threshold_percent at most high_threshold_percent (when both converted)."""
        keys = ("low_threshold_percent", "high_threshold_percent")
        if any(k in raw and k not in kw for k in keys):
            return []
        f: dict[str, Any] = {f.name: f.default for f in fields(FlappingConfig)} | kw
        if f["low_threshold_percent"] > f["high_threshold_percent"]:
            return [f"{path}.low_threshold_percent: must be at most flapping.high_threshold_percent "
                    f"({f['high_threshold_percent']:g}), got {f['low_threshold_percent']:g}"]
        return []


@dataclass(frozen=True, slots=True)
class ForensicsConfig:
    """[forensics]: the packet flight recorder and the evidence bundle written for every freeze."""

    enabled: bool = _key("enabled", _boolean, "keep a packet ring and write an evidence bundle per freeze", True)
    ring_cycles: int | None = _key("ring_cycles", _integer(1, 1000),
                                   "probe cycles of packets kept per box (default: freeze.fail_cycles + 2)", None)
    max_bundles: int = _key("max_bundles", _integer(1), "evidence bundles kept (oldest removed first)",
                            retention.DEFAULT_MAX_BUNDLES)
    max_mib: float = _key("max_mib", _number(0, low_open=True), "evidence kept on disk, all bundles together",
                          retention.DEFAULT_MAX_BYTES / MIB, unit="MiB")


# A Docker label filter: "key=value", or "key" for any value (Docker's own `label=` filter syntax).
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*(=[^\x00-\x1f\x7f]*)?$")


# The engine's socket: an absolute path, or unix:// / tcp:// / http(s):// followed by something.
_ENGINE_SOCKET_RE = re.compile(r"^(/[^\x00-\x1f\x7f]+|(unix|tcp|http|https)://[^\x00-\x1f\x7f]+)$")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """[engine]: which container engine (dockerd or Podman) the agent talks to (agent.engines.client)."""

    socket: str | None = _key("socket", _text(_ENGINE_SOCKET_RE, 'a socket path ("/run/podman/podman.sock") or URL '
                                             '("unix://...", "tcp://host:port")'),
                              "the engine's API socket; absent: DOCKER_HOST, CONTAINER_HOST (unix://), "
                              "/run/docker.sock, /run/podman/podman.sock, the first that is set or exists", None)


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
    probes: tuple[dict[str, Any], ...] = _key("probe", _tables("discovery.probe"),
                                    "service probes of every discovered box ([[discovery.probe]] tables, the keys "
                                    "of [[box.probe]])", ())

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """Its [[discovery.probe]] tables, checked as a box's (kept raw: `discover` applies them per box)."""
        errors: list[str] = []
        ProbeConfig.parse_tables(kw.get("probes", ()), f"{path}.probe", errors)
        return errors


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

    @staticmethod
    def parse_tables(tables: tuple[Any, ...], path: str, errors: list[str]) -> tuple[ServiceProbe, ...]:
        """[[box.probe]] tables -> ServiceProbe with the kind's spec (probes/<kind>.py); errors name path[j].key."""
        field_keys = {f.name: f.metadata["key"] for f in fields(ProbeConfig)}
        out = []
        for j, raw in enumerate(tables):
            here = f"{path}[{j}]"
            n = len(errors)
            kw = _section(ProbeConfig, raw, here, errors)
            if kw is None or len(errors) > n or "kind" not in kw:
                continue
            spec_cls = probes.PROBES[kw["kind"]].SPEC
            assert spec_cls is not None   # SERVICE_PROBE_KINDS: the kinds with a spec
            takes = {f.name for f in fields(spec_cls)}
            spec_kw = {}
            for name, value in kw.items():
                if name in ("kind", "port"):
                    continue
                if name not in takes:
                    users = [k for k, spec in ((k, probes.PROBES[k].SPEC) for k in SERVICE_PROBE_KINDS)
                             if spec is not None and name in {f.name for f in fields(spec)}]
                    errors.append(f"{here}.{field_keys[name]}: only for kind = "
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

    @staticmethod
    def parse_tables(tables: tuple[Any, ...], path: str, box_kind: str | None, interval_s: float,
                     errors: list[str]) -> tuple[Check, ...]:
        """[[box.check]] tables -> agent.checks.Check; each kind takes its KEYS (agent/checks/<kind>.py)."""
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


@dataclass(frozen=True, slots=True)
class ServiceProbe:
    """A parsed [[box.probe]]: kind, port and the probe's own spec (probes.TcpSpec, HttpSpec or TlsSpec)."""

    kind: str
    port: int
    spec: Any = None


def box_label(index: int, name: Any = None, line: int | None = None) -> str:
    """How an error names the [[box]] at INDEX (0-based): `[[box]] "vobox-ctr-1" (#14, line 212)`.

    #N counts [[box]] tables from 1, as a reader of the file does; the line is that of the table's header
    (None when the config did not come from TOML text); the name is left out when it is not a string.
    """
    who = f"{_show(name)} " if isinstance(name, str) and name else ""
    return f"[[box]] {who}(#{index + 1}" + (f", line {line})" if line else ")")


def _placeholders(argv: tuple[str, ...], path: str, raw: dict[str, Any], errors: list[str]) -> None:
    """Each argument's template through remediations.actions.template_errors (the one expansion rule)."""
    # a box by name has the addresses its name resolves to (a family it has none of fails the action, named)
    available = ["box"] + [k for k in ("ipv4", "ipv6", "container") if k in raw or (k != "container" and "hostname" in raw)]
    for i, arg in enumerate(argv):
        for problem in template_errors(arg, available):
            errors.append(f"{path}[{i}]: {problem}")


@dataclass(frozen=True, slots=True)
class BoxConfig:
    """[[box]]: one monitored VO-Box (a Docker container on macvlan, or a VM)."""

    name: str = _key("name", _text(_NAME_RE, "a name of letters, digits, _ . - (max 128)"),
                     "unique box name (tag `box`)", required=True)
    kind: str = _key("kind", _choice(BOX_KINDS), "what the box is (tag `kind`)", required=True)
    ipv4: str | None = _key("ipv4", _address(4), "probed with icmp + arp (+ tcp)", None)
    ipv6: str | None = _key("ipv6", _address(6), "probed with icmp6 + ndp (+ tcp)", None)
    hostname: str | None = _key("hostname", _hostname,
                                "the box's fully qualified DNS name (no search list), resolved off the probe path "
                                "(one A and one AAAA record; [agent] nameservers, resolve_interval); the probes "
                                "follow its addresses from the next cycle; ipv4/ipv6 next to it are the addresses "
                                "probed until it first resolves; not for discovered containers (the engine gives "
                                "their addresses)", None)
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
                                           + ", ".join("{" + p + "}" for p in COMMAND_PLACEHOLDERS)
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

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """Cross-key rules of one box; presence is judged on the raw table so a bad value is reported once.

        Also parses its [[box.probe]] and [[box.check]] tables into kw (ServiceProbe, Check).
        """
        errors: list[str] = []
        kind = kw.get("kind")
        if "ipv4" not in raw and "ipv6" not in raw and "hostname" not in raw:
            errors.append(f"{path}: needs ipv4, ipv6 or hostname")
        for fam in ("ipv4", "ipv6"):
            if kw.get(fam) and ctx.interface is None and is_link_local(kw[fam]):
                errors.append(f"{path}.{fam}: {_show(kw[fam])} is link-local: set [agent] interface to the link "
                              "it is on (probes cannot pick the link of a link-local address)")
        if kind == "container":
            for key in ("container", "network"):
                if key not in raw:
                    errors.append(f"{path}.{key}: missing (required for kind = \"container\")")
        elif kind == "vm":
            for key in ("container", "network"):
                if key in kw:
                    errors.append(f"{path}.{key}: only for kind = \"container\" (this box is a vm)")
            for j, action in enumerate(kw.get("remediate", ())):
                if action in CONTAINER_ACTIONS:
                    errors.append(f"{path}.remediate[{j}]: {_show(action)} only works on containers "
                                  f"(this box is a vm; use \"command\")")
        if "command" in kw.get("remediate", ()) and "command" not in raw:
            errors.append(f"{path}.command: missing (required because remediate lists \"command\")")
        if kw.get("command") is not None:
            _placeholders(kw["command"], f"{path}.command", raw, errors)
        if "exec" in kw.get("remediate", ()) and "exec" not in raw:
            errors.append(f"{path}.exec: missing (required because remediate lists \"exec\")")
        if kind == "vm" and "exec" in kw:
            errors.append(f"{path}.exec: only for kind = \"container\" (this box is a vm)")
        if kw.get("exec") is not None:
            _placeholders(kw["exec"], f"{path}.exec", raw, errors)
        kw["probes"] = ProbeConfig.parse_tables(kw.get("probes", ()), f"{path}.probe", errors)
        kw["checks"] = CheckConfig.parse_tables(kw.get("checks", ()), f"{path}.check", kind, ctx.interval_s, errors)
        return errors

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


_BOX_NAMES = _list_of(_text(_NAME_RE, "a box name"), min_len=1, unique=True)


@_labelled('"all" or a list of box names', {"oneOf": [{"const": "all"}, _BOX_NAMES.schema]})
def _maintenance_boxes(v: Any) -> tuple[str, ...] | None:
    if v == "all":
        return None
    names: tuple[str, ...] = _BOX_NAMES(v)
    return names


@_labelled('a local time "HH:MM"', {"type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}$"})
def _hhmm(v: Any) -> int:
    try:
        return parse_hhmm(v)
    except (ValueError, TypeError) as exc:
        raise _Invalid(str(exc)) from None


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

    @staticmethod
    def check(kw: dict[str, Any], raw: dict[str, Any], path: str, ctx: Context) -> list[str]:
        """The boxes named are [[box]] names, unless [discovery] docker is on (discovered boxes are known at run)."""
        errors = []
        names = list(ctx.box_names)
        for j, name in enumerate(kw.get("boxes") or ()):
            if name not in names and not ctx.discovery:
                hint = difflib.get_close_matches(name, names, n=1)
                did = f"did you mean {hint[0]!r}? " if hint else ""
                errors.append(f"{path}.boxes[{j}]: unknown box {_show(name)} ({did}configured: {', '.join(names)})")
        return errors

    def recurring(self) -> Recurring:
        """The core's window (agent.core.maintenance.Recurring)."""
        return Recurring(self.boxes, tuple(WEEKDAYS.index(d) for d in self.weekdays), self.start_min,
                         self.duration_s, self.timezone, self.reason)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """[audit]: the isolation audit of every container box (agent.audit: docker-bench-security 1.6.0's section 5,
    capabilities against the engine's own default set), stored and watched for privilege changes."""

    enabled: bool = _key("enabled", _boolean, "audit the container boxes at start, on each create/start event of "
                         "their containers and every `interval`, in a thread of its own (never on the probe path)",
                         True)
    interval_s: float = _key("interval", _number(0, low_open=True), "seconds between two audits of every box", 3600.0,
                             unit="s")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated agent configuration."""

    agent: AgentConfig
    freeze: FreezeConfig
    influxdb: InfluxConfig | None   # None: no [influxdb] section, no InfluxDB (stores() says which are on)
    remediation: RemediationConfig
    correlation: CorrelationConfig
    forensics: ForensicsConfig
    boxes: tuple[BoxConfig, ...]
    source: str | None = None
    metrics: MetricsConfig = MetricsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    otlp: OtlpConfig = OtlpConfig()
    flapping: FlappingConfig = FlappingConfig()
    audit: AuditConfig = AuditConfig()
    engine: EngineConfig = EngineConfig()
    maintenance: tuple[MaintenanceConfig, ...] = ()   # [[maintenance]] recurring windows
    # line of each [[box]] header in the TOML text (load.box_lines); () when parsed from a dict
    box_lines: tuple[int, ...] = field(default=(), compare=False)

    def stores(self) -> tuple[str, ...]:
        """Where the agent's figures go, one line each: InfluxDB ([influxdb]), the Prometheus scrape ([metrics]
        listen), the OTLP push ([otlp] endpoint); () when none is configured (the agent then keeps only its
        state files and status.json)."""
        out = []
        if self.influxdb is not None:
            out.append(f"influxdb {self.influxdb.api} {self.influxdb.url}")
        if self.metrics.listen:
            out.append(f"prometheus /metrics on {self.metrics.listen}")
        if self.otlp.endpoint:
            out.append(f"otlp {self.otlp.endpoint}")
        return tuple(out)

    def box_path(self, index: int) -> str:
        """How errors name the box at INDEX: box_label() with its name and header line."""
        line = self.box_lines[index] if index < len(self.box_lines) else None
        return box_label(index, self.boxes[index].name, line)

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
    "audit": AuditConfig,
    "engine": EngineConfig,
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


