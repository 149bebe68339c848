"""Boxes by name in the lab (issue 34): dnsmasq in the monitor namespace serves vm1.lab.example.org, the agent
(`vobox-agent --netns MONITOR run`) resolves it through `[agent] nameservers`; the host's resolv.conf is never
touched. A renumbered box is followed within one resolve interval; a name that stops resolving, a resolver
that stops answering and two A records each show beside the box, which stays probed at its last address and
is never frozen for it."""
from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import time
from typing import Any

import pytest

from lab.dns import DnsServer
from tests.agent.agent_proc import AgentProc, read_status

pytestmark = pytest.mark.lab
log = logging.getLogger(__name__)

INTERVAL_S = 1.0
RESOLVE_INTERVAL_S = 5.0      # the floor: the fastest the agent follows a name
QUERY_TIMEOUT_S = 2.0         # agent.core.resolve.QUERY_TIMEOUT_S: one unanswered query
BOX = "vm1"


@pytest.fixture(scope="module")
def named(lab, tmp_path_factory):
    """(lab, dns server, agent, vm1's LabBox): the agent probes vm1 by its name only."""
    box = lab.box(BOX)
    dns = DnsServer(lab.monitor_ns, lab.monitor_ipv4, os.path.join(lab.run_dir, f"names-{os.getpid()}"))
    dns.start({dns.fqdn(BOX): [box.ipv4, box.ipv6]})
    directory = tmp_path_factory.mktemp("names")
    cfg = directory / "agent.toml"
    cfg.write_text(f"""
[agent]
interval = {INTERVAL_S}
timeout = 0.5
jitter = 0
state_dir = "{directory / 'state'}"
nameservers = ["{lab.monitor_ipv4}"]
resolve_interval = {RESOLVE_INTERVAL_S}

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "{lab.influx_url}"
database = "names_{os.getpid()}"

[remediation]
enabled = true
cooldown = 0
verify = 1
retry_deferred = 1

[[box]]
name = "{BOX}"
kind = "vm"
hostname = "{dns.fqdn(BOX)}"
remediate = ["command"]
command = ["/bin/true", "{{box}}", "{{ipv4}}"]
""")
    agent = AgentProc(lab, str(cfg), str(directory / "agent.log"))
    try:
        agent.wait_until("vm1 resolved and up", lambda st: _name(st) == "resolved" and _up(st), 30)
        yield lab, dns, agent, box
    finally:
        agent.ensure_gone()
        dns.stop()


def _box(st: dict[str, Any]) -> dict[str, Any]:
    return (st.get("boxes") or {}).get(BOX) or {}


def _name(st: dict[str, Any]) -> str | None:
    return (_box(st).get("name") or {}).get("state")


def _up(st: dict[str, Any]) -> bool:
    return _box(st).get("state") == "up"


def _watch(agent: AgentProc, what: str, pred, timeout_s: float, states: list[str]) -> dict[str, Any]:
    """Wait for pred(status), collecting every state vm1 was shown in meanwhile."""
    def seen(st: dict[str, Any]) -> bool:
        states.append(_box(st).get("state", "?"))
        return pred(st)
    return agent.wait_until(what, seen, timeout_s)


def _settled(agent: AgentProc, cycles: int = 3) -> None:
    """Wait until vm1 was shown up in CYCLES status updates in a row (what a test before it did has passed)."""
    run: list[float] = []

    def steady(st: dict[str, Any]) -> bool:
        if not _up(st):
            run.clear()
        elif not run or st["updated_s"] != run[-1]:
            run.append(st["updated_s"])
        return len(run) >= cycles
    agent.wait_until(f"vm1 up for {cycles} cycles", steady, 30)


def _restore(dns: DnsServer, agent: AgentProc, box) -> None:
    dns.resume()
    dns.set_names({dns.fqdn(BOX): [box.ipv4, box.ipv6]})
    agent.wait_until("vm1 resolved again", lambda st: _name(st) == "resolved"
                     and _box(st).get("addresses") == [box.ipv4, box.ipv6], RESOLVE_INTERVAL_S + 4 * QUERY_TIMEOUT_S + 5)


def test_a_renumbered_box_is_followed_within_one_resolve_interval(named):
    lab, dns, agent, box = named
    _settled(agent)
    old = box.ipv4
    new = str(ipaddress.ip_network(lab.ipv4_subnet).network_address + 231)
    states: list[str] = []
    try:
        # the old address leaves later; its secondary (the new one) must not leave with it (ip-address(8))
        subprocess.run(["ip", "netns", "exec", box.netns, "sysctl", "-q", "-w",
                        f"net.ipv4.conf.{box.link}.promote_secondaries=1"], check=True)
        subprocess.run(["ip", "-n", box.netns, "addr", "add", f"{new}/24", "dev", box.link], check=True)
        dns.set_names({dns.fqdn(BOX): [new, box.ipv6]})
        changed_s = time.time()
        st = _watch(agent, "vm1 probed at its new address",
                    lambda st: _box(st).get("addresses") == [new, box.ipv6] and (_box(st).get("judged_s") or 0)
                    > changed_s, RESOLVE_INTERVAL_S + 3 * INTERVAL_S + 10, states)
        followed_s = st["boxes"][BOX]["judged_s"] - changed_s
        log.info("renumbered vm1 %s -> %s: probed at the new address %.2f s after the DNS change (resolve "
                 "interval %g s, cycle interval %g s)", old, new, followed_s, RESOLVE_INTERVAL_S, INTERVAL_S)
        print(f"\nFIGURE renumbered box followed after {followed_s:.2f} s (resolve_interval {RESOLVE_INTERVAL_S:g} s, "
              f"interval {INTERVAL_S:g} s)")
        # within one resolve interval, plus the cycle that follows it (which probes for at most its timeout)
        assert followed_s <= RESOLVE_INTERVAL_S + INTERVAL_S + 0.5 + 0.5, followed_s
        # the old address goes away: the box answers at the new one and never freezes
        subprocess.run(["ip", "-n", box.netns, "addr", "del", f"{old}/24", "dev", box.link], check=True)
        agent.wait_cycles(4)
        st = read_status(agent.state_dir) or {}
        assert _up(st) and st["boxes"][BOX]["name"]["state"] == "resolved", st["boxes"][BOX]
        assert set(states) == {"up"}, states
    finally:
        subprocess.run(["ip", "-n", box.netns, "addr", "replace", f"{old}/24", "dev", box.link], check=False)
        subprocess.run(["ip", "-n", box.netns, "addr", "del", f"{new}/24", "dev", box.link], check=False)
        _restore(dns, agent, box)
    assert "freeze opened" not in agent.log_text().lower()


def test_a_name_that_stops_resolving_keeps_its_last_address_and_is_never_frozen(named):
    lab, dns, agent, box = named
    _settled(agent)
    states: list[str] = []
    try:
        dns.set_names({})   # vm1.lab.example.org: NXDOMAIN now
        st = _watch(agent, "vm1's name nxdomain", lambda st: _name(st) == "nxdomain",
                    RESOLVE_INTERVAL_S + 3 * INTERVAL_S + 10, states)
        assert st["boxes"][BOX]["addresses"] == [box.ipv4, box.ipv6]
        assert "probed at its last address" in st["boxes"][BOX]["name"]["detail"]
        agent.wait_cycles(3)
        st = read_status(agent.state_dir) or {}
        assert _up(st) and _name(st) == "nxdomain" and set(states) == {"up"}
    finally:
        _restore(dns, agent, box)


def test_a_resolver_that_stops_answering_is_a_timeout_beside_the_box(named):
    lab, dns, agent, box = named
    _settled(agent)
    states: list[str] = []
    try:
        dns.pause()
        st = _watch(agent, "vm1's name timeout", lambda st: _name(st) == "timeout",
                    RESOLVE_INTERVAL_S + 2 * QUERY_TIMEOUT_S + 3 * INTERVAL_S + 10, states)
        assert st["boxes"][BOX]["addresses"] == [box.ipv4, box.ipv6]
        assert f"{lab.monitor_ipv4}: no answer in" in st["boxes"][BOX]["name"]["detail"]
        agent.wait_cycles(3)
        assert _up(read_status(agent.state_dir) or {}) and set(states) == {"up"}
    finally:
        _restore(dns, agent, box)


def test_two_a_records_are_their_own_state_naming_them(named):
    lab, dns, agent, box = named
    _settled(agent)
    other = str(ipaddress.ip_network(lab.ipv4_subnet).network_address + 232)
    states: list[str] = []
    try:
        dns.set_names({dns.fqdn(BOX): [box.ipv4, other, box.ipv6]})
        st = _watch(agent, "vm1's name multiple", lambda st: _name(st) == "multiple",
                    RESOLVE_INTERVAL_S + 3 * INTERVAL_S + 10, states)
        detail = st["boxes"][BOX]["name"]["detail"]
        assert f"2 A records ({', '.join(sorted([box.ipv4, other], key=ipaddress.ip_address))})" in detail
        assert st["boxes"][BOX]["addresses"] == [box.ipv4, box.ipv6]   # kept: which one is the box?
        agent.wait_cycles(2)
        assert _up(read_status(agent.state_dir) or {}) and set(states) == {"up"}
    finally:
        _restore(dns, agent, box)


def test_the_lookup_tells_nxdomain_servfail_and_timeout_apart(named):
    """agent.resolve.DnsLookup from the monitor namespace against real resolvers: the lab's dnsmasq (NOERROR,
    NXDOMAIN, and a timeout while it is stopped) and a validating one whose DNSSEC finds everything bogus
    (SERVFAIL, asked over IPv6); SERVFAIL moves on to the next nameserver as a stub resolver does."""
    from agent import netns
    from agent.core.resolve import Outcome
    from agent.resolve import DnsLookup

    lab, dns, agent, box = named
    front = DnsServer(lab.monitor_ns, lab.monitor_ipv6, os.path.join(lab.run_dir, f"names-front-{os.getpid()}"))
    front.start_servfail(lab.monitor_ipv4)
    try:
        with netns.entered(lab.monitor_ns):
            good, broken = DnsLookup([lab.monitor_ipv4], 1.0), DnsLookup([lab.monitor_ipv6], 1.0)
            assert good(dns.fqdn(BOX), 4).addresses == (box.ipv4,)
            assert good(dns.fqdn(BOX), 6).addresses == (box.ipv6,)
            assert good(dns.fqdn("nobody"), 4).outcome == Outcome.NXDOMAIN
            answer = broken(dns.fqdn(BOX), 4)
            assert (answer.outcome, answer.detail) == (Outcome.SERVFAIL, f"{lab.monitor_ipv6}: SERVFAIL")
            both = DnsLookup([lab.monitor_ipv6, lab.monitor_ipv4], 1.0)(dns.fqdn(BOX), 4)
            assert (both.outcome, both.addresses) == (Outcome.OK, (box.ipv4,))
            dns.pause()
            try:
                answer = good(dns.fqdn(BOX), 4)
            finally:
                dns.resume()
            assert (answer.outcome, answer.detail) == (Outcome.TIMEOUT, f"{lab.monitor_ipv4}: no answer in 1 s")
    finally:
        front.stop()


def test_the_report_shows_the_name_next_to_the_addresses(named):
    """The `name` points reach InfluxDB 1.6 and the report reads them back (agent.report.read.read_names)."""
    from agent.report.read import read_names
    from tests.agent.agent_proc import query

    lab, dns, agent, box = named
    _settled(agent)
    try:
        dns.set_names({})
        agent.wait_until("vm1's name nxdomain", lambda st: _name(st) == "nxdomain", RESOLVE_INTERVAL_S + 10)
    finally:
        _restore(dns, agent, box)
    database = f"names_{os.getpid()}"
    deadline = time.monotonic() + 15   # the points are written by the storage thread, in batches
    while True:
        (vm1,) = [n for n in read_names(lambda q: query(lab, q, database), "time > now() - 1h") if n.box == BOX] \
            or [None]
        if vm1 is not None and vm1.not_resolving >= 1 and vm1.last_state == "resolved" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert vm1 is not None and vm1.hostname == dns.fqdn(BOX)
    assert {box.ipv4, box.ipv6} <= set(vm1.addresses) and vm1.not_resolving >= 1 and vm1.last_state == "resolved"


def test_no_action_runs_on_a_frozen_box_while_its_name_does_not_resolve(named):
    """The box at its last address stops answering while its name is NXDOMAIN: the freeze is seen, but the action
    is deferred with the resolver's reason (the address may be stale) until the name resolves again."""
    from tests.agent.agent_proc import query

    lab, dns, agent, box = named
    _settled(agent)
    database = f"names_{os.getpid()}"
    since_ms = int(time.time() * 1000)
    try:
        dns.set_names({})
        agent.wait_until("vm1's name nxdomain", lambda st: _name(st) == "nxdomain", RESOLVE_INTERVAL_S + 10)
        lab.fault(BOX, "l3")
        agent.wait_state(BOX, "frozen", 30)
        reason = f"name {dns.fqdn(BOX)} does not resolve (nxdomain"
        deadline = time.monotonic() + 20
        while reason not in agent.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"box {BOX}: command deferred: {reason}" in agent.log_text()
        time.sleep(3)   # deferred again every retry_deferred (1 s): still nothing done
        done = [r for r in query(lab, f'SELECT * FROM "remediation" WHERE time >= {since_ms}ms', database)
                if r.get("outcome") == "done"]
        assert done == [] and f"box {BOX}: action command" not in agent.log_text()   # neither done nor failed
    finally:
        lab.clear(BOX)
        _restore(dns, agent, box)
    deferred = [r for r in query(lab, f'SELECT * FROM "remediation" WHERE time >= {since_ms}ms', database)
                if r.get("outcome") == "deferred"]
    assert deferred and all(str(r.get("reason", "")).startswith(reason) for r in deferred)
