"""sweep(): validation, grouping by kind, de-duplication, input order, errors from a kind (pure, fake kinds)."""
from __future__ import annotations

import threading

import pytest

import probes
from probes import PROBE_KINDS, PROBES, ProbeResult, Target


class FakeKind:
    """A probe kind that answers ok for every target and remembers what it was asked, and from which thread."""

    def __init__(self, name: str, family: int | None, fail: BaseException | None = None):
        self.NAME, self.FAMILY, self.NEEDS_RAW, self.SPEC = name, family, False, PROBES[name].SPEC
        self.calls: list[list[Target]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def sweep(self, targets, timeout_s, interface=None, recorder=None):
        self.calls.append(list(targets))
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise self.fail
        return [ProbeResult(t.address, t.probe, t.port, True, 1.0, None, None, 0.0) for t in targets]


@pytest.fixture
def fakes(monkeypatch):
    kinds = {name: FakeKind(name, PROBES[name].FAMILY) for name in PROBE_KINDS}
    for name, fake in kinds.items():
        monkeypatch.setitem(PROBES, name, fake)
    return kinds


def test_registry_lists_every_kind_once():
    assert tuple(PROBES) == PROBE_KINDS == ("icmp", "icmp6", "arp", "ndp", "tcp", "http", "tls")
    assert [PROBES[k].NEEDS_RAW for k in PROBE_KINDS] == [True, True, True, True, False, False, False]
    assert [PROBES[k].LAYER for k in PROBE_KINDS] == ["l3", "l3", "l2", "l2", "l4", "l7", "l7"]
    assert probes.SERVICE_KINDS == ("tcp", "http", "tls")
    assert probes.LAYERS == ("l2", "l3", "l4", "l7")


def test_results_in_input_order_duplicates_probed_once_kinds_in_parallel(fakes):
    targets = [Target("192.0.2.1", "icmp"), Target("2001:db8::1", "ndp"), Target("192.0.2.1", "tcp", 80),
               Target("192.0.2.1", "icmp"), Target("192.0.2.2", "arp"), Target("2001:db8::1", "tcp", 80)]
    results = probes.sweep(targets, 0.5)
    assert [(r.target, r.probe, r.port) for r in results] == [(t.address, t.probe, t.port) for t in targets]
    assert fakes["icmp"].calls == [[Target("192.0.2.1", "icmp")]]
    assert fakes["tcp"].calls == [[Target("192.0.2.1", "tcp", 80), Target("2001:db8::1", "tcp", 80)]]
    threads = set().union(*(f.threads for f in fakes.values()))
    assert len(threads) == 4  # icmp, ndp, tcp, arp: one thread each (the first runs in the caller's)


@pytest.mark.parametrize("target, message", [
    pytest.param(Target("192.0.2.1", "ping"),
                 "unknown probe kind 'ping'; valid kinds: icmp, icmp6, arp, ndp, tcp, http, tls",
                 id="unknown-kind"),
    pytest.param(Target("2001:db8::1", "icmp"), "icmp probes IPv4 only", id="icmp-on-ipv6"),
    pytest.param(Target("192.0.2.1", "ndp"), "ndp probes IPv6 only", id="ndp-on-ipv4"),
    pytest.param(Target("box1.example", "tcp", 22), "is not an IPv4 or IPv6 address", id="hostname"),
    pytest.param(Target("fe80::1%eth0", "icmp6"), "scoped .zone. addresses are not supported", id="zone"),
    pytest.param(Target("192.0.2.1", "tcp"), "port must be an integer 1-65535", id="tcp-without-port"),
    pytest.param(Target("192.0.2.1", "tcp", 70000), "port must be an integer 1-65535", id="tcp-port-range"),
    pytest.param(Target("192.0.2.1", "arp", 80), "port is for tcp, http, tls only", id="port-on-arp"),
    pytest.param(Target("192.0.2.1", "http"), "http target 192.0.2.1: port must be an integer", id="http-without-port"),
])
def test_malformed_targets_are_errors_naming_what_is_wrong(fakes, target, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        probes.sweep([target], 1.0)
    assert not any(f.calls for f in fakes.values())


def test_bad_timeout_and_unknown_interface(fakes):
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        probes.sweep([Target("192.0.2.1", "tcp", 1)], 0)
    with pytest.raises(ValueError, match="interface 'nosuch0' does not exist"):
        probes.sweep([Target("192.0.2.1", "tcp", 1)], 1.0, interface="nosuch0")


def test_an_unexpected_error_in_one_kind_escapes(fakes):
    fakes["arp"].fail = RuntimeError("bug in arp")
    with pytest.raises(RuntimeError, match="bug in arp"):
        probes.sweep([Target("192.0.2.1", "icmp"), Target("192.0.2.1", "arp")], 1.0)


def test_empty_sweep():
    assert probes.sweep([], 1.0) == []
