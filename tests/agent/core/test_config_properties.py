"""Property-based (hypothesis): whatever config check-config accepts runs.

Generated configs (names, sites, segments, Docker names, addresses as people type them and addresses of
every kind that cannot be one host's (IPv4-mapped and -compatible IPv6, unspecified, loopback, multicast,
broadcast, 0.0.0.0/8, 240.0.0.0/4, link-local without [agent] interface), ports, service probes, command
templates with placeholders and literal braces, maintenance windows with time zones the zone database
cannot load as a zone (directories, paths, over-long names)): every config that
`agent.core.config.loads` accepts plans a cycle, passes every probe's own validation, builds points
that encode as line protocol, expands its command templates, and its encoded lines are accepted by
the lab's real InfluxDB 1.6. A config that is refused names a key path.
"""
from __future__ import annotations

import ipaddress
import itertools
import json
import re
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings, strategies as st

import probes
from agent import netns
from agent.core.config import ConfigError, address_problem, loads
from agent.core.cycle import box_targets, plan_cycle
from agent.storage import points as P
from agent.storage.influx import V1Writer
from remediations.actions import expand_command
from tests.agent.storage import conftest as storage_fixtures

module_influx = storage_fixtures.module_influx  # the module-scoped InfluxDB fixture, used here too

TRICKY = st.sampled_from(list(' ,="\\\n\t#{}%/é€😀') + ["a", "b", "Z", "0", "-", "_", "."])
TEXT = st.lists(st.one_of(TRICKY, st.characters(codec="utf-8")), min_size=0, max_size=12).map("".join)
def mostly(good, bad):
    """Mostly GOOD, one time in ten BAD: enough accepted configs to check, enough refused ones too.

    (one_of would not do: hypothesis favours the simpler branch; a die whose 9 means BAD shrinks to GOOD.)
    """
    return st.integers(0, 9).flatmap(lambda roll: bad if roll == 9 else good)


GOOD_NAME = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
NAME = mostly(GOOD_NAME, TEXT)
# printable text with what trips line protocol and InfluxQL up (separators, escapes, quotes, braces, unicode)
PRINTABLE = st.lists(st.one_of(st.sampled_from(list(' ,="\\#{}%/é€😀abZ0-_.')),
                               st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))),
                     min_size=1, max_size=12).map("".join).filter(lambda t: t.strip() != "")
SITE = mostly(PRINTABLE, TEXT)
GOOD_V4 = st.ip_addresses(v=4, network="198.18.0.0/15").map(str)
GOOD_V6 = st.ip_addresses(v=6, network="2001:db8::/32").map(str)
# Addresses of the kinds no box can have (refused at load, by kind): 0.0.0.0/8, loopback, multicast, limited
# broadcast, 240.0.0.0/4, link-local without [agent] interface; and ranges that stay valid (RFC 1918, ULA).
BAD_KIND_V4 = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "127.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255",
               "240.0.0.1", "250.1.2.3", "169.254.1.1"]
BAD_KIND_V6 = ["::", "::1", "::ffff:192.0.2.1", "::ffff:7f00:1", "::192.0.2.1", "ff02::1", "ff05::1:3", "fe80::1",
               "fe80::21:1"]
IPV4 = mostly(GOOD_V4, st.sampled_from(["192.0.2.10", "198.51.100.7", "203.0.113.200", "198.18.5.9", "0192.0.2.1",
                                  "192.0.2.256", "192.0.2.10/24", " 192.0.2.10", "", "10.1.2.3", "172.16.0.9",
                                  "192.168.1.20"] + BAD_KIND_V4))
IPV6 = mostly(GOOD_V6, st.sampled_from(["2001:db8::21", "2001:DB8:1::0010", "2001:db8::21%eth1", "fe80::1%2",
                                  "2001:db8::1/64", "2001:db8:::1", "", "fd00::21", "fd12:3456::1"] + BAD_KIND_V6))
# Time zones: good ones, and names the zone database cannot load as a zone (a directory, paths, "../",
# over-long names, a file that is not a zone, a NUL).
TIMEZONE = mostly(st.sampled_from(["UTC", "Europe/Zurich", "America/Chicago", "Asia/Kolkata"]),
                  st.sampled_from(["Europe", "America/", "../etc/passwd", "/usr/share/zoneinfo/UTC", "Europe/../UTC",
                                   "x" * 300, "Europe/" + "y" * 300, "zone.tab", "tzdata.zi", "Etc/", "UTC\x00",
                                   "", "Mars/Olympus"]))
PORT = mostly(st.integers(1, 65535), st.sampled_from([0, 65536, -1]))
ARG = st.one_of(TEXT, st.sampled_from(["{box}", "{ipv4}", "{ipv6}", "{container}", "{{literal}}",
                                       '{{"vm": "{box}"}}', "{nope}", "{", "}", "{0}", "{box!r}"]))


def _toml_str(s: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL (TOML refuses it raw)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


@st.composite
def configs(draw) -> str:
    lines = ["[agent]", 'state_dir = "/tmp/vobox-prop"', f"site = {_toml_str(draw(SITE))}"]
    if draw(st.integers(0, 3)) == 0:
        lines.append('interface = "eth1"')   # names the link: link-local box addresses become valid
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["container", "vm"]))
        lines += ["", "[[box]]", f"name = {_toml_str(draw(NAME))}", f'kind = "{kind}"']
        if draw(st.sampled_from([True, True, False])):
            lines.append(f"ipv4 = {_toml_str(draw(IPV4))}")
        if draw(st.booleans()):
            lines.append(f"ipv6 = {_toml_str(draw(IPV6))}")
        ports = draw(st.lists(PORT, max_size=3, unique=True))
        lines.append(f"tcp_ports = [{', '.join(map(str, ports))}]")
        if kind == "container":
            lines += [f"container = {_toml_str(draw(NAME))}", f"network = {_toml_str(draw(NAME))}"]
        if draw(st.booleans()):
            lines.append(f"segment = {_toml_str(draw(SITE))}")
        if kind == "vm" and draw(st.booleans()):
            argv = ["true"] + draw(st.lists(ARG, max_size=3))   # /bin/true exists: file checks are not the point
            lines += ['remediate = ["command"]', f"command = [{', '.join(map(_toml_str, argv))}]"]
    if draw(st.booleans()):
        lines += ["", "[[maintenance]]", 'boxes = "all"', 'start = "06:00"', "duration = 3600",
                  'reason = "intervention"', f"timezone = {_toml_str(draw(TIMEZONE))}"]
    return "\n".join(lines) + "\n"


_db = itertools.count()
_accepted = itertools.count()


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(text=configs())
def test_every_accepted_config_plans_validates_encodes_and_is_written(module_influx, text):
    try:
        cfg = loads(text)
    except ConfigError as exc:
        event("refused")
        for err in exc.errors:   # each error names where: a key path ([[box]] "b" (#1, line 5).ipv6: ...) or a section
            assert re.match(r'^(agent|box|maintenance\[\d+\]|\[\[box\]\] (?:"(?:[^"\\]|\\.)*" )?\(#\d+, line \d+\))'
                            r"(\.[a-z_0-9]+)?(\[\d+\])?[.:]", err), err
            assert "\n" not in err and "Traceback" not in err, err
        return
    event("accepted")
    next(_accepted)
    for box in cfg.boxes:   # no address of a kind that cannot be one host's got through
        for address in box.addresses():
            assert address_problem(ipaddress.ip_address(address), "host",
                                   link_local_ok=cfg.agent.interface is not None) is None, (text, address)
    for window in cfg.maintenance:   # its zone loads as a zone, and the core can place an occurrence with it
        ZoneInfo(window.timezone)
        window.recurring().occurrence(1.7e9)
    plan = plan_cycle(cfg.boxes)
    for t in plan.targets:
        probes.validate(t)                                   # what every sweep would do
    points = []
    for box in cfg.boxes:
        targets = box_targets(box)
        points.append(P.box_point(box.name, box.kind, cfg.agent.site, 1, "up", "none", 1.7e9))
        points += [P.probe_point(box.name, box.kind, cfg.agent.site, t.probe, t.address, t.port, False, None,
                                 "timeout\nline two", None, 1.7e9 + i) for i, t in enumerate(targets)]
        points.append(P.segment_freeze_point(box.segment_name(cfg.agent.site), cfg.agent.site, 1.7e9, (box.name,),
                                             "l2", False, 1.0))
        if box.command and "command" in box.remediate:
            argv = expand_command(box.remediation_target())  # what the VM hook would run: no error here
            assert len(argv) == len(box.command)
    lines = P.to_lines(points)
    db = f"cfg{next(_db)}"
    server = module_influx
    w = V1Writer(server.url, db, timeout_s=5)
    try:
        with netns.entered(server.netns):
            w.ensure_database()
            w.send("\n".join(lines).encode() + b"\n")      # SinkError (400) if InfluxDB refuses a line
            got = requests.get(f"{server.url}/query", params={"db": db, "q": 'SELECT count(*) FROM "box"'},
                               timeout=5).json()
    finally:
        with netns.entered(server.netns):
            requests.post(f"{server.url}/query", params={"q": f'DROP DATABASE "{db}"'}, timeout=5)
        w.close()
    assert got["results"][0]["series"][0]["values"][0][1] == len({b.name for b in cfg.boxes}), (text, got)


@pytest.mark.lab   # counts what the lab test above sent to a real influxd
def test_zz_enough_configs_were_accepted():
    """The property means something only if many generated configs got through validation."""
    assert next(_accepted) >= 30
