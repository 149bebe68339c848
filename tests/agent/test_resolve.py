"""Boxes by name through the wiring (issue 34): the resolver's answers decide what the pipeline probes, what
status.json shows and whether remediation may act. The DNS lookup is a scripted stand-in whose requests are
checked; the real one against dnsmasq is tests/agent/test_names_lab.py."""
from __future__ import annotations

import json

import pytest

from agent import wiring
from agent.core.config import loads
from agent.core.resolve import AddressChanged, Answer, NameStateChanged, Outcome
from agent.resolve import NameResolver, box_problem
from probes import ProbeResult

NODATA = Answer(Outcome.NODATA)


class ScriptedDns:
    """lookup(name, family): the answers set per (name, family); every request is recorded."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int], Answer] = {}
        self.asked: list[tuple[str, int]] = []

    def set(self, name: str, v4: Answer, v6: Answer = NODATA) -> None:
        self.answers[(name, 4)], self.answers[(name, 6)] = v4, v6

    def __call__(self, name: str, family: int) -> Answer:
        self.asked.append((name, family))
        return self.answers[(name, family)]


def _ok(*addresses: str) -> Answer:
    return Answer(Outcome.OK, addresses)


def config(tmp_path) -> str:
    return f"""
[agent]
interval = 10
timeout = 1.0
state_dir = "{tmp_path / 'state'}"
nameservers = ["198.51.100.53"]
resolve_interval = 30

[remediation]
enabled = true

[[box]]
name = "named"
kind = "vm"
hostname = "vobox1.example.org"
remediate = ["command"]
command = ["true"]

[[box]]
name = "lost"
kind = "vm"
hostname = "vobox2.example.org"

[[box]]
name = "plain"
kind = "vm"
ipv4 = "192.0.2.3"
"""


def test_the_pipeline_probes_the_names_addresses_and_follows_a_change(tmp_path):
    dns = ScriptedDns()
    dns.set("vobox1.example.org", _ok("192.0.2.10"))
    dns.set("vobox2.example.org", Answer(Outcome.NXDOMAIN), Answer(Outcome.NXDOMAIN))
    assembly = wiring.assemble(loads(config(tmp_path)), lookup=dns, make_docker=lambda: pytest.fail("no Docker"))
    swept: list[list[str]] = []

    def sweep(targets, timeout_s, interface, recorder):
        swept.append(sorted({t.address for t in targets}))
        return [ProbeResult(t.address, t.probe, t.port, True, 1.0, None, None, 0.0) for t in targets]

    try:
        assert sorted(dns.asked) == [("vobox1.example.org", 4), ("vobox1.example.org", 6),
                                     ("vobox2.example.org", 4), ("vobox2.example.org", 6)]
        pipeline = assembly.pipeline
        pipeline.sweep = sweep
        (resolver,) = [s for s in assembly.services if isinstance(s, NameResolver)]
        resolver.announce()
        pipeline.run_cycle()
        assert swept[-1] == ["192.0.2.10", "192.0.2.3"]   # "lost" never resolved: not probed
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert status["boxes"]["named"]["addresses"] == ["192.0.2.10"]
        assert status["boxes"]["named"]["name"]["hostname"] == "vobox1.example.org"
        assert status["boxes"]["named"]["name"]["state"] == "resolved"
        assert set(status["boxes"]) == {"named", "plain"}
        assert status["unprobed"]["lost"]["state"] == "nxdomain"
        assert "not probed" in status["unprobed"]["lost"]["detail"]

        seen: list[object] = []
        assembly.bus.subscribe(AddressChanged, seen.append, name="test")
        dns.set("vobox1.example.org", _ok("192.0.2.20"))
        dns.set("vobox2.example.org", _ok("192.0.2.30"))
        resolver.resolve()
        assert [(e.box, e.old, e.new) for e in seen] == [("named", "192.0.2.10", "192.0.2.20"),
                                                        ("lost", None, "192.0.2.30")]
        pipeline.run_cycle()   # the probes follow from the next cycle
        assert swept[-1] == ["192.0.2.20", "192.0.2.3", "192.0.2.30"]

        # the name stops resolving: the box keeps its last address, is probed there, the state says why
        dns.set("vobox1.example.org", Answer(Outcome.SERVFAIL, (), "198.51.100.53: SERVFAIL"),
                Answer(Outcome.SERVFAIL, (), "198.51.100.53: SERVFAIL"))
        resolver.resolve()
        pipeline.run_cycle()
        assert swept[-1] == ["192.0.2.20", "192.0.2.3", "192.0.2.30"]
        status = json.loads((tmp_path / "state" / "status.json").read_text())
        assert status["boxes"]["named"]["name"]["state"] == "servfail"
        assert "probed at its last address 192.0.2.20" in status["boxes"]["named"]["name"]["detail"]
    finally:
        assembly.close()


def test_before_an_action_the_name_is_resolved_and_a_stale_one_defers_it():
    dns = ScriptedDns()
    dns.set("vobox1.example.org", _ok("192.0.2.10"))
    published: list[object] = []
    cfg = loads('[[box]]\nname = "named"\nkind = "vm"\nhostname = "vobox1.example.org"\n'
                '[[box]]\nname = "plain"\nkind = "vm"\nipv4 = "192.0.2.3"\n')
    resolver = NameResolver(cfg.boxes, dns, published.append, interval_s=60, problem=box_problem(None))
    resolver.resolve()
    dns.asked.clear()
    assert resolver.before_action("named") is None
    assert dns.asked == [("vobox1.example.org", 4), ("vobox1.example.org", 6)]   # asked now, before acting
    assert resolver.before_action("plain") is None and len(dns.asked) == 2     # no name: nothing asked
    dns.set("vobox1.example.org", Answer(Outcome.TIMEOUT, (), "198.51.100.53: no answer in 2 s"),
            Answer(Outcome.TIMEOUT, (), "198.51.100.53: no answer in 2 s"))
    reason = resolver.before_action("named")
    assert reason is not None and reason.startswith("name vobox1.example.org does not resolve (timeout:")
    dns.set("vobox1.example.org", _ok("192.0.2.99"))
    reason = resolver.before_action("named")
    assert reason is not None and "now resolves elsewhere (192.0.2.10 -> 192.0.2.99)" in reason
    assert [type(e) for e in published][-2:] == [AddressChanged, NameStateChanged]


def test_remediation_defers_an_action_while_the_name_does_not_resolve():
    """RemediationService asks before_action; a reason is a deferred record and nothing runs."""
    from remediations import ActionContext, RemediationService, Remediator
    from remediations.model import RemediationPolicy

    cfg = loads('[[box]]\nname = "named"\nkind = "vm"\nhostname = "vobox1.example.org"\n'
                'remediate = ["command"]\ncommand = ["/bin/false"]\n')
    policy = RemediationPolicy(enabled=True, cooldown_s=0)
    records: list[object] = []
    ran: list[str] = []
    service = RemediationService(Remediator(policy, [cfg.boxes[0].remediation_target()], reprobe=lambda b: True),
                                 ActionContext(docker_factory=lambda: pytest.fail("no Docker"), policy=policy),
                                 records.append, tick_s=0.01,
                                 before_action=lambda box: ran.append(box) or "name vobox1.example.org does not "
                                                                              "resolve (nxdomain: ...)")
    service.freeze_opened("named", "l3", 1.0)
    (plan,) = service.remediator.tick(2.0)
    service._execute(plan)
    service._flush()
    assert ran == ["named"]
    outcomes = [(getattr(r, "outcome", None), getattr(r, "reason", None)) for r in records]
    assert ("deferred", "name vobox1.example.org does not resolve (nxdomain: ...)") in outcomes


def test_the_namespace_resolv_conf_is_used_with_netns(tmp_path):
    """`run --netns NAME` reads NAME's resolv.conf as `ip netns exec` would, else the host's; its nameservers
    are what DnsLookup asks; a resolv.conf without one is a one-line error naming the file."""
    from agent.resolve import ResolverConfigError, nameservers_of, resolv_conf

    etc = tmp_path / "netns"
    (etc / "mon").mkdir(parents=True)
    (etc / "mon" / "resolv.conf").write_text("search lab.example.org\nnameserver 198.51.100.53\n"
                                             "nameserver 2001:db8::53\noptions timeout:1\n")
    host = tmp_path / "resolv.conf"
    host.write_text("# nothing\n")
    assert resolv_conf("mon", str(etc), str(host)) == str(etc / "mon" / "resolv.conf")
    assert resolv_conf("other", str(etc), str(host)) == str(host)
    assert resolv_conf(None, str(etc), str(host)) == str(host)
    assert nameservers_of(str(etc / "mon" / "resolv.conf")) == ("198.51.100.53", "2001:db8::53")
    with pytest.raises(ResolverConfigError) as exc:
        nameservers_of(str(host))
    assert str(exc.value) == (f"{host}: no nameserver to resolve the boxes' hostnames with "
                              "(NoResolverConfiguration); set [agent] nameservers")


def test_a_config_without_a_nameserver_is_a_setup_error(tmp_path, monkeypatch):
    from agent import resolve

    empty = tmp_path / "resolv.conf"
    empty.write_text("")
    monkeypatch.setattr(resolve, "RESOLV_CONF", str(empty))
    monkeypatch.setattr(resolve, "resolv_conf", lambda netns=None: str(empty))
    cfg = loads(f'[agent]\nstate_dir = "{tmp_path}"\n[[box]]\nname = "n"\nkind = "vm"\nhostname = "a.example.org"\n')
    with pytest.raises(wiring.SetupError) as exc:
        wiring.build_resolver(cfg, lambda ev: None)
    assert str(exc.value).startswith(f"agent.nameservers: {empty}: no nameserver")


def test_status_and_events_show_the_name_beside_the_address(tmp_path):
    from agent.commands.events import describe
    from agent.status import format_status, read_status_file
    from agent.storage.read import EventRow

    now = 1_800_000_000.0
    data = {"version": 1, "updated_s": now, "interval_s": 10, "boxes": {
        "named": {"kind": "vm", "state": "up", "layer": "none", "since_s": now - 60, "addresses": ["192.0.2.20"],
                  "name": {"hostname": "vobox1.example.org", "state": "resolved", "detail": "192.0.2.20",
                           "since_s": now - 60}},
        "stale": {"kind": "vm", "state": "up", "layer": "none", "since_s": now - 60, "addresses": ["192.0.2.21"],
                  "name": {"hostname": "vobox3.example.org", "state": "servfail",
                           "detail": "A: servfail (198.51.100.53: SERVFAIL)", "since_s": now - 5}}},
        "unprobed": {"lost": {"hostname": "vobox2.example.org", "state": "nxdomain",
                              "detail": "the name does not exist (NXDOMAIN); not probed", "since_s": now}}}
    path = tmp_path / "status.json"
    path.write_text(json.dumps(data))
    snap, why = read_status_file(str(path), now, boot="x", boottime_now_s=0.0)
    assert why is None and snap is not None
    text = format_status(snap, now)
    assert "name vobox1.example.org -> 192.0.2.20" in text
    assert "name vobox3.example.org SERVFAIL (A: servfail (198.51.100.53: SERVFAIL)); probed at 192.0.2.21" in text
    assert ("lost             NOT PROBED: name vobox2.example.org NXDOMAIN (the name does not exist (NXDOMAIN); "
            "not probed)") in text
    moved = EventRow(now, "name", "named", {"box": "named", "hostname": "vobox1.example.org", "event": "address"},
                     {"family": 4, "old": "192.0.2.10", "new": "192.0.2.20"})
    assert describe(moved) == "name vobox1.example.org: IPv4 address 192.0.2.10 -> 192.0.2.20"
    state = EventRow(now, "name", "named", {"box": "named", "hostname": "vobox1.example.org", "event": "state"},
                     {"state": "timeout", "detail": "A: timeout", "ipv4": "192.0.2.20", "ipv6": ""})
    assert describe(state) == "name vobox1.example.org timeout (192.0.2.20) - A: timeout"


def test_the_report_text_has_the_names_line():
    from agent.report import build_report
    from agent.report.stats import FleetObservation, NameHistory
    from agent.report.text import render_text

    obs = FleetObservation(0, 3_600_000, 10.0, None, (), (), (), 3600, names=(
        NameHistory("named", "vobox1.example.org", ("192.0.2.10", "192.0.2.20"), 1, 2, "resolved"),
        NameHistory("lost", "vobox2.example.org", (), 0, 1, "nxdomain")))
    text = render_text(build_report(obs))
    assert ("names: named = vobox1.example.org -> 192.0.2.10 192.0.2.20, resolved elsewhere 1x, stopped resolving "
            "2x; lost = vobox2.example.org -> never resolved, stopped resolving 1x, now nxdomain") in text


def test_a_pass_asks_its_questions_in_parallel():
    """100 names against a resolver that never answers: one pass lasts a few query timeouts, not 200."""
    import threading
    import time

    delay_s = 0.2
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow(name: str, family: int) -> Answer:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(delay_s)
        with lock:
            in_flight[0] -= 1
        return Answer(Outcome.TIMEOUT, (), "198.51.100.53: no answer")

    text = "".join(f'[[box]]\nname = "b{i}"\nkind = "vm"\nhostname = "b{i}.example.org"\n' for i in range(100))
    resolver = NameResolver(loads(text).boxes, slow, lambda ev: None, interval_s=60, problem=box_problem(None))
    started = time.monotonic()
    events = resolver.resolve()
    took_s = time.monotonic() - started
    assert len(events) == 100 and all(isinstance(e, NameStateChanged) and e.state == "timeout" for e in events)
    assert most[0] == 32
    assert took_s < 200 * delay_s / 4, took_s   # ceil(200 / 32) = 7 rounds of 0.2 s, against 40 s one by one


def test_a_manual_remediation_resolves_the_box_first(tmp_path):
    cfg = loads(config(tmp_path))
    dns = ScriptedDns()
    dns.set("vobox1.example.org", _ok("192.0.2.10"))
    dns.set("vobox2.example.org", Answer(Outcome.NXDOMAIN), Answer(Outcome.NXDOMAIN))
    resolved, waits = wiring.resolve_boxes(cfg, ["named"], lookup=dns)
    assert dns.asked == [("vobox1.example.org", 4), ("vobox1.example.org", 6)]   # only the box acted on
    assert resolved.box("named").ipv4 == "192.0.2.10" and waits == {}
    assert resolved.box("named").remediation_target().ipv4 == "192.0.2.10"
    _, waits = wiring.resolve_boxes(cfg, ["lost"], lookup=dns)
    assert waits["lost"].startswith("name vobox2.example.org does not resolve (nxdomain:")
    dns.set("vobox1.example.org", Answer(Outcome.OK, ("192.0.2.10", "192.0.2.11")))
    _, waits = wiring.resolve_boxes(cfg, ["named"], lookup=dns)
    assert waits["named"].startswith("name vobox1.example.org gives no usable address (multiple: 2 A records")


def test_a_name_resolving_to_another_boxes_address_is_refused_as_the_config_refuses_a_duplicate():
    dns = ScriptedDns()
    dns.set("vobox1.example.org", _ok("192.0.2.3"))        # plain's fixed address
    dns.set("vobox2.example.org", _ok("192.0.2.40"))
    cfg = loads('[[box]]\nname = "named"\nkind = "vm"\nhostname = "vobox1.example.org"\n'
                '[[box]]\nname = "other"\nkind = "vm"\nhostname = "vobox2.example.org"\n'
                '[[box]]\nname = "plain"\nkind = "vm"\nipv4 = "192.0.2.3"\n')
    resolver = NameResolver(cfg.boxes, dns, lambda ev: None, interval_s=60, problem=box_problem(None))
    resolver.resolve()
    recs = resolver.records()
    assert (recs["named"].state, recs["named"].ipv4) == ("unsuitable", None)
    assert recs["named"].detail.startswith("A record 192.0.2.3: duplicate address 192.0.2.3 (also box 'plain''s)")
    dns.set("vobox1.example.org", _ok("192.0.2.40"))     # other's resolved address
    resolver.resolve()
    assert "duplicate address 192.0.2.40 (also box 'other''s)" in resolver.records()["named"].detail
    assert [b.name for b in resolver.apply(cfg.boxes)] == ["other", "plain"]


def test_metrics_show_the_name_beside_the_addresses():
    from agent.listeners.metrics import MetricsListener

    m = MetricsListener({"named": "container"}, "site1")
    m.on_name(NameStateChanged("named", 1.0, "ctr.example.org", "resolved", "192.0.2.10", "192.0.2.10", None,
                               "container"))
    m.on_name(NameStateChanged("lost", 1.0, "vm.example.org", "nxdomain", "not probed", None, None, "vm"))
    labels = {"box": "named", "kind": "container", "vobox_site": "site1", "hostname": "ctr.example.org",
              "state": "resolved", "ipv4": "192.0.2.10", "ipv6": ""}
    assert m.registry.get_sample_value("vobox_box_name_info", labels) == 1.0
    assert m.registry.get_sample_value("vobox_box_name_info", {
        "box": "lost", "kind": "vm", "vobox_site": "site1", "hostname": "vm.example.org", "state": "nxdomain",
        "ipv4": "", "ipv6": ""}) == 1.0
    m.on_name(NameStateChanged("named", 2.0, "ctr.example.org", "timeout", "A: timeout", "192.0.2.10", None,
                               "container"))
    assert m.registry.get_sample_value("vobox_box_name_info", labels) is None   # one series per box
    assert m.registry.get_sample_value("vobox_box_name_info", labels | {"state": "timeout"}) == 1.0
    m.on_address(AddressChanged("named", 3.0, "ctr.example.org", 4, "192.0.2.10", "192.0.2.20", "container"))
    assert m.registry.get_sample_value("vobox_box_address_changes_total",
                                       {"box": "named", "kind": "container", "vobox_site": "site1"}) == 1.0
