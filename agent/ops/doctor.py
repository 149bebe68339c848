"""Pre-flight checks for a site: privileges, Docker, InfluxDB, each box, and the macvlan host trap.

Every check returns `CheckResult`s (data, never an exception for an expected
failure) and takes its dependencies as arguments, so each failure can be
produced on purpose in a test: a socket opener, a Docker client factory, an
HTTP session, a route/link lookup.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Engine API version from which POST /networks/{id}/connect applies the MacAddress
# endpoint setting (Docker Engine API version history, v1.54); older engines
# ignore a MAC passed on connect (1.44-1.53 honour it on create only).
MAC_ON_CONNECT_API = (1, 54)
SHIM_NAME = "vobox-shim"
SETCAP_FIX = ("run as root, or grant the capability: "
              "`setcap cap_net_raw,cap_net_admin+ep $(readlink -f $(which python3))` "
              "(or, under systemd, AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN; "
              "in a container, --cap-add NET_RAW --cap-add NET_ADMIN)")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: ok=False is a failure; ok with warning=True is a warning."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    @property
    def label(self) -> str:
        """PASS, WARN or FAIL."""
        if not self.ok:
            return "FAIL"
        return "WARN" if self.warning else "PASS"


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def _warn(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, True, detail, fix, warning=True)


def _fail(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def _cfg(obj: Any, *names: str, default: Any = None) -> Any:
    """First present attribute of NAMES on OBJ (config field names carry units: interval_s)."""
    for name in names:
        if obj is not None and hasattr(obj, name):
            return getattr(obj, name)
    return default


# ---------------------------------------------------------------- privileges

def check_raw_socket(open_socket: Callable[..., socket.socket] = socket.socket) -> CheckResult:
    """Can this process open the raw sockets the ICMP and ARP probes need (CAP_NET_RAW)?"""
    name = "raw-socket privilege"
    tried = []
    for family, kind, proto, what in (
        (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw ICMP"),
        (socket.AF_PACKET, socket.SOCK_RAW, 0x0806, "packet (ARP)"),
    ):
        try:
            open_socket(family, kind, proto).close()
        except PermissionError as exc:
            return _fail(name, f"cannot open a {what} socket: {exc}", SETCAP_FIX)
        except OSError as exc:
            return _fail(name, f"cannot open a {what} socket: {exc}",
                         "the kernel refused a raw socket for a reason other than privilege; see the error")
        tried.append(what)
    return _pass(name, f"{' and '.join(tried)} sockets open")


# --------------------------------------------------------------------- docker

def default_docker_factory():
    """docker.from_env(): honours DOCKER_HOST (e.g. a socket proxy), else /var/run/docker.sock."""
    import docker

    return docker.from_env(timeout=10)


def _api_tuple(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


@dataclass(frozen=True, slots=True)
class DockerInfo:
    """What the Docker checks learned, for the checks that follow."""

    client: Any
    engine: str
    api: str


def check_docker(factory: Callable[[], Any] = default_docker_factory) -> tuple[CheckResult, DockerInfo | None]:
    """Is the Docker engine reachable, and which engine and API version is it?"""
    name = "docker engine"
    try:
        client = factory()
        version = client.version()
    except Exception as exc:  # docker.errors.DockerException, requests errors: all mean unreachable
        return _fail(name, f"Docker engine not reachable: {exc}",
                     "start dockerd, or mount the socket (-v /var/run/docker.sock:/var/run/docker.sock) "
                     "or point DOCKER_HOST at a socket proxy (tcp://HOST:2375) that allows "
                     "containers, networks, events, version and _ping"), None
    engine = str(version.get("Version", "?"))
    api = str(version.get("ApiVersion", "?"))
    return _pass(name, f"engine {engine}, API {api}"), DockerInfo(client, engine, api)


def derived_mac(ipv4: str) -> str:
    """The MAC Docker 20.10 gives a macvlan endpoint: 02:42 followed by the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ipv4).packed)


def check_mac_on_connect(info: DockerInfo, observed: Sequence[tuple[str, str, str]] = ()) -> CheckResult:
    """Does the engine keep a container's MAC over reconnect_network? OBSERVED: (box, ipv4, mac) now."""
    name = "docker MAC on connect"
    api = _api_tuple(info.api)
    if api >= MAC_ON_CONNECT_API:
        return _pass(name, f"API {info.api} >= 1.54 honours a MAC address on network connect: "
                           "reconnect_network reconnects with the same MAC")
    derived = [box for box, ipv4, mac in observed if mac and ipv4 and mac.lower() == derived_mac(ipv4)]
    random_ = [box for box, ipv4, mac in observed if mac and ipv4 and mac.lower() != derived_mac(ipv4)]
    base = f"API {info.api} < 1.54 ignores a MAC address passed on network connect"
    if random_:
        return _warn(name, f"{base}, and the MAC of {', '.join(random_)} is not derived from its IPv4 "
                           "(a newer engine picks a random MAC): after reconnect_network the box has a new MAC; "
                           "the agent announces it (gratuitous ARP / unsolicited NA) but caches that ignore "
                           "those keep the old one until they expire",
                     "use an engine with API >= 1.54, or make sure the LAN's routers accept gratuitous ARP")
    if derived:
        return _pass(name, f"{base}, but this engine derives the MAC from the IPv4 (02:42 + address, seen on "
                           f"{', '.join(derived)}): the MAC follows the IP, so reconnecting with the same IP "
                           "gives back the same MAC")
    return _warn(name, f"{base}; no running box container to tell whether MACs follow the IP "
                       "(20.10: 02:42 + IPv4) or are random (newer engines)")


# ------------------------------------------------------------------- influxdb

def _influx_fix_url(url: str) -> str:
    return (f"check [influxdb] url = {url!r} (is InfluxDB running and reachable from here? "
            f"`curl -i {url.rstrip('/')}/ping` should answer 204)")


def check_influx(influx: Any, session: Any = None, create_database: bool = False,
                 timeout_s: float = 5.0) -> list[CheckResult]:
    """InfluxDB reachable (/ping), credentials accepted, database (v1) or bucket (v2) present."""
    import requests

    if session is None:
        session = requests.Session()
        session.trust_env = False  # like the agent's writer: no proxy from the environment
    url = str(_cfg(influx, "url", default="http://127.0.0.1:8086")).rstrip("/")
    api = _cfg(influx, "api", default="v1")
    results = []
    try:
        resp = session.get(f"{url}/ping", timeout=timeout_s)
    except requests.RequestException as exc:
        return [_fail("influxdb reachable", f"{url}/ping: {exc}", _influx_fix_url(url))]
    if resp.status_code not in (200, 204):
        return [_fail("influxdb reachable", f"{url}/ping answered HTTP {resp.status_code}", _influx_fix_url(url))]
    server = resp.headers.get("X-Influxdb-Version", "unknown version")
    results.append(_pass("influxdb reachable", f"{url} answers /ping ({server})"))
    if api == "v2":
        results += _check_influx_v2(session, url, influx, create_database, timeout_s)
    else:
        results += _check_influx_v1(session, url, influx, create_database, timeout_s)
    return results


def _v1_auth(influx: Any) -> dict:
    user = _cfg(influx, "username")
    return {"u": user, "p": _cfg(influx, "password") or ""} if user else {}


def _check_influx_v1(session, url, influx, create, timeout_s) -> list[CheckResult]:
    import requests

    database = _cfg(influx, "database", default="vobox")
    params = {"q": "SHOW DATABASES", **_v1_auth(influx)}
    try:
        resp = session.get(f"{url}/query", params=params, timeout=timeout_s)
    except requests.RequestException as exc:
        return [_fail("influxdb auth", f"SHOW DATABASES: {exc}", _influx_fix_url(url))]
    if resp.status_code in (401, 403):
        return [_fail("influxdb auth", f"SHOW DATABASES refused: HTTP {resp.status_code} {resp.text[:200]}",
                      "set [influxdb] username and password of a user with WRITE (and READ for status/events) "
                      f"on {database!r}")]
    if resp.status_code != 200:
        return [_fail("influxdb auth", f"SHOW DATABASES: HTTP {resp.status_code} {resp.text[:200]}")]
    out = [_pass("influxdb auth", "query accepted" + (f" as {_cfg(influx, 'username')!r}" if _v1_auth(influx) else
                                                       " (no credentials configured)"))]
    names: set[str] = set()
    for res in resp.json().get("results", []):
        for series in res.get("series", []) or []:
            names.update(row[0] for row in series.get("values", []) or [])
    if database in names:
        out.append(_pass("influxdb database", f"database {database!r} exists"))
        return out
    if not create:
        out.append(_fail("influxdb database", f"database {database!r} does not exist (have: {sorted(names)})",
                         f"run `vobox-agent doctor -c FILE --create-database`, or "
                         f"`influx -execute 'CREATE DATABASE \"{database}\"'`"))
        return out
    quoted = database.replace("\\", "\\\\").replace('"', '\\"')
    resp = session.post(f"{url}/query", params={"q": f'CREATE DATABASE "{quoted}"', **_v1_auth(influx)},
                        timeout=timeout_s)
    body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
    errors = [r["error"] for r in body.get("results", []) if "error" in r] + ([body["error"]] if "error" in body else [])
    if resp.status_code != 200 or errors:
        out.append(_fail("influxdb database", f"CREATE DATABASE {database!r} failed: HTTP {resp.status_code} "
                                              f"{errors or resp.text[:200]}",
                         "create it as an admin user"))
    else:
        out.append(_pass("influxdb database", f"database {database!r} created"))
    return out


def _check_influx_v2(session, url, influx, create, timeout_s) -> list[CheckResult]:
    import requests

    bucket = _cfg(influx, "bucket", default="vobox")
    org = _cfg(influx, "org")
    headers = {"Authorization": f"Token {_cfg(influx, 'token') or ''}"}
    try:
        resp = session.get(f"{url}/api/v2/buckets", params={"name": bucket, **({"org": org} if org else {})},
                           headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        return [_fail("influxdb auth", f"GET /api/v2/buckets: {exc}", _influx_fix_url(url))]
    if resp.status_code in (401, 403):
        return [_fail("influxdb auth", f"token refused: HTTP {resp.status_code} {resp.text[:200]}",
                      f"set [influxdb] token to an API token with write access to bucket {bucket!r} in org {org!r}")]
    if resp.status_code == 404 and "org" in resp.text.lower():
        return [_pass("influxdb auth", "token accepted"),
                _fail("influxdb bucket", f"organization {org!r} not found: {resp.text[:200]}",
                      "set [influxdb] org to your organization's name")]
    if resp.status_code != 200:
        return [_fail("influxdb auth", f"GET /api/v2/buckets: HTTP {resp.status_code} {resp.text[:200]}",
                      "api = \"v2\" needs InfluxDB 1.8+, 2.x or 3.x; for 1.x before 1.8 use api = \"v1\"")]
    out = [_pass("influxdb auth", "token accepted")]
    buckets = [b.get("name") for b in resp.json().get("buckets", [])]
    if bucket in buckets:
        out.append(_pass("influxdb bucket", f"bucket {bucket!r} exists"))
        return out
    if not create:
        out.append(_fail("influxdb bucket", f"bucket {bucket!r} not found in org {org!r}",
                         f"run `vobox-agent doctor -c FILE --create-database`, or "
                         f"`influx bucket create --name {bucket} --org {org}`"))
        return out
    orgs = session.get(f"{url}/api/v2/orgs", params={"org": org}, headers=headers, timeout=timeout_s)
    org_ids = [o.get("id") for o in (orgs.json().get("orgs", []) if orgs.status_code == 200 else [])]
    if not org_ids:
        out.append(_fail("influxdb bucket", f"cannot find the id of org {org!r}: HTTP {orgs.status_code}"))
        return out
    resp = session.post(f"{url}/api/v2/buckets", json={"orgID": org_ids[0], "name": bucket, "retentionRules": []},
                        headers=headers, timeout=timeout_s)
    if resp.status_code == 201:
        out.append(_pass("influxdb bucket", f"bucket {bucket!r} created"))
    else:
        out.append(_fail("influxdb bucket", f"creating bucket {bucket!r} failed: HTTP {resp.status_code} "
                                            f"{resp.text[:200]}", "the token needs write access to buckets"))
    return out


# ---------------------------------------------------------------------- boxes

def _container_boxes(boxes: Iterable[Any]) -> list[Any]:
    return [b for b in boxes if _cfg(b, "kind") == "container"]


def check_box(box: Any, client: Any) -> tuple[list[CheckResult], dict | None, dict | None]:
    """A container box: its container and network exist, network is macvlan, attached with the configured addresses."""
    import docker.errors

    bname = _cfg(box, "name")
    cname = _cfg(box, "container")
    nname = _cfg(box, "network")
    ipv4, ipv6 = _cfg(box, "ipv4"), _cfg(box, "ipv6")
    name = f"box {bname}"
    out: list[CheckResult] = []
    try:
        container = client.containers.get(cname)
    except docker.errors.NotFound:
        return [_fail(f"{name}: container", f"container {cname!r} not found",
                      f"check box {bname!r} container = {cname!r} against `docker ps -a`")], None, None
    except docker.errors.DockerException as exc:
        return [_fail(f"{name}: container", f"inspecting container {cname!r}: {exc}")], None, None
    state = container.attrs.get("State", {}).get("Status", "?")
    if state == "running":
        out.append(_pass(f"{name}: container", f"container {cname!r} is running"))
    else:
        out.append(_warn(f"{name}: container", f"container {cname!r} is {state}",
                         f"`docker start {cname}` (or `docker unpause {cname}`) if that is not intended"))
    try:
        network = client.networks.get(nname)
    except docker.errors.NotFound:
        out.append(_fail(f"{name}: network", f"network {nname!r} not found",
                         f"check box {bname!r} network = {nname!r} against `docker network ls`"))
        return out, container.attrs, None
    except docker.errors.DockerException as exc:
        out.append(_fail(f"{name}: network", f"inspecting network {nname!r}: {exc}"))
        return out, container.attrs, None
    driver = network.attrs.get("Driver")
    if driver != "macvlan":
        out.append(_warn(f"{name}: network", f"network {nname!r} uses driver {driver!r}, not macvlan",
                         "VO-Boxes normally sit on a macvlan network so they have their own IP and MAC on the LAN"))
    else:
        parent = (network.attrs.get("Options") or {}).get("parent", "?")
        out.append(_pass(f"{name}: network", f"network {nname!r} is macvlan on parent {parent}"))
    endpoint = (container.attrs.get("NetworkSettings", {}).get("Networks") or {}).get(network.name)
    if endpoint is None:
        endpoint = next((ep for ep in (container.attrs.get("NetworkSettings", {}).get("Networks") or {}).values()
                         if ep.get("NetworkID") == network.id), None)
    connect = f"docker network connect {nname} {cname}" + (f" --ip {ipv4}" if ipv4 else "") + \
              (f" --ip6 {ipv6}" if ipv6 else "")
    if endpoint is None:
        out.append(_fail(f"{name}: attached", f"container {cname!r} is not attached to network {nname!r}",
                         f"`{connect}`"))
        return out, container.attrs, network.attrs
    have4, have6 = endpoint.get("IPAddress") or None, endpoint.get("GlobalIPv6Address") or None
    wrong = []
    if ipv4 and have4 != ipv4:
        wrong.append(f"IPv4 {have4 or 'none'} (configured {ipv4})")
    if ipv6 and (have6 is None or ipaddress.ip_address(have6) != ipaddress.ip_address(ipv6)):
        wrong.append(f"IPv6 {have6 or 'none'} (configured {ipv6})")
    if wrong:
        out.append(_fail(f"{name}: attached", f"container {cname!r} on {nname!r} has " + ", ".join(wrong),
                         f"fix the config, or `docker network disconnect {nname} {cname}` then `{connect}`"))
    else:
        addrs = ", ".join(a for a in (have4, have6) if a)
        out.append(_pass(f"{name}: attached", f"container {cname!r} on {nname!r} with {addrs}, "
                                              f"MAC {endpoint.get('MacAddress') or '?'}"))
    return out, container.attrs, network.attrs


# ------------------------------------------------------------- macvlan trap

@dataclass(frozen=True, slots=True)
class Route:
    """Where the kernel of this network namespace sends packets for an address."""

    dev: str | None          # None: no route (unreachable)
    kind: str | None         # link kind of dev: "macvlan", "veth", None for a plain device
    link: str | None         # dev's parent link (macvlan, vlan), if any


class IpToolMissing(Exception):
    """iproute2's `ip` is not installed, so routes cannot be inspected."""


def _ip_json(argv: list[str]) -> list[dict]:
    try:
        proc = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise IpToolMissing("`ip` (iproute2) not found") from None
    if proc.returncode != 0:
        return []
    return json.loads(proc.stdout or "[]")


def link_exists(name: str) -> bool:
    """True when a link NAME exists in this thread's network namespace (if_nametoindex)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def route_to(address: str) -> Route:
    """`ip route get ADDRESS` and the kind of the device it goes out of, in this network namespace."""
    routes = _ip_json(["route", "get", address])
    if not routes or not routes[0].get("dev"):
        return Route(None, None, None)
    dev = routes[0]["dev"]
    links = _ip_json(["-d", "link", "show", "dev", dev])
    info = links[0] if links else {}
    return Route(dev, (info.get("linkinfo") or {}).get("info_kind"), info.get("link"))


def _subnets(network_attrs: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for cfg in (network_attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Subnet"):
            nets.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    return nets


def free_address(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, used: Iterable[str]) -> str | None:
    """The highest host address of SUBNET not in USED (container, gateway and configured addresses)."""
    taken = {ipaddress.ip_address(a.split("/")[0]) for a in used if a}
    last = subnet.broadcast_address - (1 if subnet.version == 4 else 0)
    candidate = last
    for _ in range(4096):
        if candidate not in taken and candidate != subnet.network_address:
            return str(candidate)
        candidate -= 1
        if candidate not in subnet:
            return None
    return None


def shim_commands(parent: str, network_attrs: dict, boxes: Sequence[Any], shim: str = SHIM_NAME) -> list[str]:
    """The commands that give this host a macvlan shim on PARENT with a /32 (/128) route per box."""
    used = []
    for cfg in (network_attrs.get("IPAM") or {}).get("Config") or []:
        used.append(cfg.get("Gateway"))
    for ep in (network_attrs.get("Containers") or {}).values():
        used += [ep.get("IPv4Address"), ep.get("IPv6Address")]
    for box in boxes:
        used += [_cfg(box, "ipv4"), _cfg(box, "ipv6")]
    cmds = [f"ip link add {shim} link {parent} type macvlan mode bridge"]
    routes = []
    for subnet in _subnets(network_attrs):
        addr = free_address(subnet, [u for u in used if u]) or "<a free address in " + str(subnet) + ">"
        if subnet.version == 4:
            cmds.append(f"ip addr add {addr}/32 dev {shim}")
            routes += [f"ip route add {_cfg(b, 'ipv4')}/32 dev {shim}" for b in boxes if _cfg(b, "ipv4")]
        else:
            cmds.append(f"ip -6 addr add {addr}/128 dev {shim}")
            routes += [f"ip -6 route add {_cfg(b, 'ipv6')}/128 dev {shim}" for b in boxes if _cfg(b, "ipv6")]
    cmds.append(f"ip link set {shim} up")
    return cmds + routes


def check_macvlan_trap(boxes: Sequence[Any], networks: dict[str, dict],
                       exists: Callable[[str], bool] = link_exists,
                       route: Callable[[str], Route] = route_to) -> list[CheckResult]:
    """Is the agent on the Docker host of macvlan boxes (parent link here) without a shim to reach them?

    NETWORKS maps a network name to its `docker network inspect` attrs. The
    kernel never delivers packets from a macvlan parent to its own macvlan
    children, so the host must talk to them through a macvlan "shim" on the
    same parent (bridge mode) with a host route per container.
    """
    out = []
    by_network: dict[str, list[Any]] = {}
    for box in _container_boxes(boxes):
        by_network.setdefault(_cfg(box, "network"), []).append(box)
    for nname, nboxes in by_network.items():
        attrs = networks.get(nname)
        if not attrs or attrs.get("Driver") != "macvlan":
            continue
        parent = (attrs.get("Options") or {}).get("parent")
        name = f"macvlan host trap ({nname})"
        if not parent or not exists(parent):
            out.append(_pass(name, f"parent link {parent!r} of {nname!r} is not in this network namespace: "
                                   "the agent is not on the macvlan network's own host side"))
            continue
        unreached = []
        try:
            for box in nboxes:
                for addr in (_cfg(box, "ipv4"), _cfg(box, "ipv6")):
                    if not addr:
                        continue
                    r = route(addr)
                    if not (r.kind == "macvlan" and r.link == parent):
                        unreached.append((_cfg(box, "name"), addr, r.dev))
        except IpToolMissing as exc:
            out.append(_warn(name, f"parent {parent} of {nname!r} is here (the agent is on its Docker host) but "
                                   f"routes cannot be checked: {exc}", "install iproute2 and run doctor again"))
            continue
        if not unreached:
            out.append(_pass(name, f"on the Docker host of {nname!r} (parent {parent}), and every box "
                                   "address is routed through a macvlan shim on that parent"))
            continue
        lost = ", ".join(f"{b} {a} (via {d or 'no route'})" for b, a, d in unreached)
        cmds = shim_commands(parent, attrs, nboxes)
        out.append(_fail(name, f"the agent runs on the Docker host of macvlan network {nname!r} (parent {parent} "
                               f"is here) and cannot reach its containers: {lost}",
                         "add a macvlan shim on the same parent (pick an address that is free on the LAN):\n"
                         + "\n".join("  " + c for c in cmds)
                         + "\n  (or run the agent on another host of the LAN, or in a container on "
                           f"{nname!r} itself)"))
    return out


# ------------------------------------------------------------------- driver

def run_checks(cfg: Any, *, docker_factory: Callable[[], Any] = default_docker_factory,
               session: Any = None, create_database: bool = False,
               open_socket: Callable[..., socket.socket] = socket.socket,
               exists: Callable[[str], bool] = link_exists,
               route: Callable[[str], Route] = route_to) -> list[CheckResult]:
    """All checks for config CFG, in the order an operator should fix them."""
    results = [check_raw_socket(open_socket)]
    boxes = list(_cfg(cfg, "boxes", "box", default=()) or ())
    containers = _container_boxes(boxes)
    influx = _cfg(cfg, "influxdb", "influx")
    if influx is not None:
        results += check_influx(influx, session, create_database)
    if not containers:
        results.append(_pass("docker engine", "no container boxes configured; Docker not needed"))
        return results
    result, info = check_docker(docker_factory)
    results.append(result)
    if info is None:
        return results
    networks: dict[str, dict] = {}
    observed = []
    for box in containers:
        box_results, cattrs, nattrs = check_box(box, info.client)
        results += box_results
        if nattrs is not None:
            networks[_cfg(box, "network")] = nattrs
        if cattrs is not None and cattrs.get("State", {}).get("Status") == "running":
            ep = (cattrs.get("NetworkSettings", {}).get("Networks") or {}).get(_cfg(box, "network")) or {}
            observed.append((_cfg(box, "name"), ep.get("IPAddress"), ep.get("MacAddress")))
    results.append(check_mac_on_connect(info, observed))
    results += check_macvlan_trap(containers, networks, exists, route)
    return results


def format_results(results: Sequence[CheckResult]) -> str:
    """PASS/WARN/FAIL lines, each failure or warning followed by its fix."""
    lines = []
    for r in results:
        lines.append(f"{r.label}  {r.name}: {r.detail}")
        if r.fix and r.label != "PASS":
            fix_lines = r.fix.split("\n")
            lines.append(f"      fix: {fix_lines[0]}")
            lines += [f"      {line}" for line in fix_lines[1:]]
    failed = sum(not r.ok for r in results)
    warned = sum(r.ok and r.warning for r in results)
    lines.append(f"{len(results)} checks: {len(results) - failed - warned} passed, {warned} warnings, {failed} failed")
    return "\n".join(lines)


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 0 if all(r.ok for r in results) else 1
