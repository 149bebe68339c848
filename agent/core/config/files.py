"""Checks of a parsed config against this machine: the files it names, and box addresses against the routes.

`load(check_files=True)` (so check-config and run) ends with them; doctor lists file_errors as its
"config files" topic. TLS files are asked through the one TLS type (agent.tls), secret files through the
one reader (agent.secretfile).
"""
from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Callable, Iterable

from agent.core.config.model import Config, RemediationConfig
from agent.secretfile import SecretFileError, read_headers, read_secret
from agent.tls import TLSSettings, client as tls_client
from probes.routing import RouteEntry, lookup, route_table

# TOML key of each agent.tls.TLSSettings field, per section.
_INFLUX_TLS_KEYS = {"cert_file": "client_cert", "key_file": "client_key", "ca_file": "ca_file"}
_WEBHOOK_TLS_KEYS = {"cert_file": "webhook_cert_file", "key_file": "webhook_key_file",
                     "ca_file": "webhook_client_ca_file"}
_METRICS_TLS_KEYS = {"cert_file": "cert_file", "key_file": "key_file", "ca_file": "client_ca_file"}


def tls_errors(tls: TLSSettings, section: str, keys: dict[str, str]) -> list[str]:
    """TLS's unusable files (TLSSettings.problems), one error a line named SECTION.<key> (KEYS: field -> key)."""
    return [f"{section}.{keys[p.field]}: {p.message}" for p in tls.problems()]


def webhook_tls_errors(rem: RemediationConfig) -> list[str]:
    """The webhook's TLS files unusable on this machine, one error a line with its key path (used by file_errors)."""
    tls = rem.tls()
    return tls_errors(tls, "remediation", _WEBHOOK_TLS_KEYS) if tls is not None else []


def _secret(path: str, key_path: str) -> list[str]:
    try:
        read_secret(path)
    except SecretFileError as exc:
        return [f"{key_path}: {exc}"]
    return []


def file_errors(cfg: Config) -> list[str]:
    """Files the config names that are missing or unusable on this machine, one error a line with its key path.

    Checked by `parse` with check_files (so by `load`: check-config and run) and listed by `doctor`, one
    failed check each: [influxdb] password_file / token_file (readable, not empty), its TLS files (ca_file,
    client_cert, client_key: agent.tls); the webhook token file and its TLS files; otlp.headers_file and
    ca_file (agent.tls); the executable of each box's `command` (an absolute path that is executable, or a name on PATH)
    when its ladder uses it.
    """
    errors: list[str] = []
    influx = cfg.influxdb
    if influx is not None and influx.api == "v1" and influx.password_file:
        errors += _secret(influx.password_file, "influxdb.password_file")
    if influx is not None and influx.api == "v2" and influx.token_file:
        errors += _secret(influx.token_file, "influxdb.token_file")
    if influx is not None and influx.url.startswith("https://") and not (influx.client_key and not influx.client_cert):
        errors += tls_errors(influx.tls(), "influxdb", _INFLUX_TLS_KEYS)
    rem = cfg.remediation
    if rem.webhook_listen and rem.webhook_token_file:
        errors += _secret(rem.webhook_token_file, "remediation.webhook_token_file")
    if cfg.otlp.endpoint and cfg.otlp.headers_file:
        try:
            read_headers(cfg.otlp.headers_file)
        except OSError as exc:
            errors.append(f"otlp.headers_file: cannot read {cfg.otlp.headers_file!r}: {exc.strerror}")
        except ValueError as exc:
            errors.append(f"otlp.headers_file: {exc}")
    if cfg.otlp.endpoint and cfg.otlp.ca_file:   # the collector's CAs: a client's ca_file, asked as InfluxDB's is
        errors += tls_errors(tls_client(ca_file=cfg.otlp.ca_file), "otlp", {"ca_file": "ca_file"})
    if rem.webhook_listen:
        errors += webhook_tls_errors(rem)
    m = cfg.metrics
    if m.listen:
        for key in ("token_file", "basic_auth_password_file"):
            if getattr(m, key):
                errors += _secret(getattr(m, key), f"metrics.{key}")
        tls = m.tls()
        if tls is not None:
            errors += tls_errors(tls, "metrics", _METRICS_TLS_KEYS)
    for i, b in enumerate(cfg.boxes):
        if not b.command or "command" not in b.remediate:
            continue
        exe = b.command[0]
        if "{" in exe:
            continue  # chosen per box at run time; expand_command checks it then
        where = f"{cfg.box_path(i)}.command[0]"
        if os.sep in exe:
            if not os.path.isfile(exe):
                errors.append(f"{where}: {exe!r} does not exist")
            elif not os.access(exe, os.X_OK):
                errors.append(f"{where}: {exe!r} is not executable")
        elif shutil.which(exe) is None:
            errors.append(f"{where}: {exe!r} not found on PATH ({os.environ.get('PATH', '')})")
    return errors


def on_link_problem(address: str, routes: Iterable[RouteEntry]) -> str | None:
    """Why ADDRESS cannot be one host on the link the ROUTES put it on, or None.

    Only on-link routes (no gateway) judge: a routed box may sit anywhere in a remote prefix. On an
    on-link IPv4 prefix of /30 or wider, the network address and the directed broadcast address
    (RFC 919, RFC 922) are not a host's; on an IPv6 prefix of /126 or wider, the all-zero interface id is
    the Subnet-Router anycast address (RFC 4291 2.6.1), answered by a router, not the box.
    """
    entry = lookup(list(routes), address)
    if entry is None or entry.gateway is not None:
        return None
    addr, net = ipaddress.ip_address(address), entry.network
    if net.version == 4 and net.prefixlen <= 30:
        if addr == net.network_address:
            return f"the network address of the on-link prefix {net} (on {entry.interface}), not a host's"
        if addr == net.broadcast_address:
            return f"the broadcast address of the on-link prefix {net} (on {entry.interface}), not a host's"
    if net.version == 6 and net.prefixlen <= 126 and addr == net.network_address:
        return (f"the Subnet-Router anycast address of the on-link prefix {net} (on {entry.interface}, "
                "RFC 4291 2.6.1): a router answers it, not the box")
    return None


def host_errors(cfg: Config, routes: Callable[[int], list[RouteEntry]] = route_table) -> list[str]:
    """Box addresses that are the network or broadcast address of their on-link prefix on this host.

    ROUTES(version) gives the route table (default: the calling thread's namespace, probes.routing);
    a table that cannot be read judges nothing (the probes will say what is wrong).
    """
    errors: list[str] = []
    tables: dict[int, list[RouteEntry]] = {}
    via = cfg.agent.interface   # probes leave through it when set: only its routes say what is on-link
    for i, b in enumerate(cfg.boxes):
        for key, version in (("ipv4", 4), ("ipv6", 6)):
            address = getattr(b, key)
            if not address:
                continue
            if version not in tables:
                try:
                    tables[version] = [r for r in routes(version) if via is None or r.interface == via]
                except OSError:
                    tables[version] = []
            problem = on_link_problem(address, tables[version])
            if problem:
                errors.append(f"{cfg.box_path(i)}.{key}: {address} is {problem}")
    return errors
