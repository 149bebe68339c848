"""agent.core.resolve: what one resolution of a box's hostname means (issue 34), as a table; no sockets."""
from __future__ import annotations

import ipaddress

import pytest

from agent.core.config.convert import address_problem
from agent.core.resolve import (
    AddressChanged,
    Answer,
    NameState,
    NameStateChanged,
    Outcome,
    apply,
    deferral,
    initial,
    step,
)


def problem(address: str) -> str | None:
    return address_problem(ipaddress.ip_address(address), "host")


OK = Outcome.OK
A1 = Answer(OK, ("192.0.2.10",))
A2 = Answer(OK, ("192.0.2.20",))
AAAA1 = Answer(OK, ("2001:db8::10",))
NODATA = Answer(Outcome.NODATA)
NX = Answer(Outcome.NXDOMAIN)
SERVFAIL = Answer(Outcome.SERVFAIL, (), "198.51.100.53: SERVFAIL")
TIMEOUT = Answer(Outcome.TIMEOUT, (), "198.51.100.53: no answer in 2 s")
TWO = Answer(OK, ("192.0.2.10", "192.0.2.11"))
LOOPBACK = Answer(OK, ("127.0.0.1",))


@pytest.mark.parametrize("last, a, aaaa, state, ipv4, ipv6, detail_has", [
    pytest.param((None, None), A1, AAAA1, NameState.RESOLVED, "192.0.2.10", "2001:db8::10", "192.0.2.10 2001:db8::10",
                 id="first-resolution"),
    pytest.param((None, None), A1, NODATA, NameState.RESOLVED, "192.0.2.10", None, "192.0.2.10", id="v4-only"),
    pytest.param(("192.0.2.10", None), A2, NODATA, NameState.RESOLVED, "192.0.2.20", None, "192.0.2.20",
                 id="renumbered"),
    pytest.param(("192.0.2.10", None), NX, NX, NameState.NXDOMAIN, "192.0.2.10", None,
                 "probed at its last address 192.0.2.10", id="nxdomain-keeps-last"),
    pytest.param(("192.0.2.10", None), SERVFAIL, SERVFAIL, NameState.SERVFAIL, "192.0.2.10", None, "SERVFAIL",
                 id="servfail-keeps-last"),
    pytest.param(("192.0.2.10", None), TIMEOUT, TIMEOUT, NameState.TIMEOUT, "192.0.2.10", None, "no answer in 2 s",
                 id="timeout-keeps-last"),
    pytest.param(("192.0.2.10", None), TWO, NODATA, NameState.MULTIPLE, "192.0.2.10", None,
                 "2 A records (192.0.2.10, 192.0.2.11)", id="two-a-records-keep-last"),
    pytest.param((None, None), TWO, NODATA, NameState.MULTIPLE, None, None, "never resolved to a usable address: "
                 "not probed", id="two-a-records-never-resolved"),
    pytest.param((None, None), NX, NX, NameState.NXDOMAIN, None, None, "not probed", id="never-resolved"),
    pytest.param((None, None), LOOPBACK, NODATA, NameState.UNSUITABLE, None, None,
                 "A record 127.0.0.1: a loopback address (127.0.0.0/8, RFC 1122 3.2.1.3)", id="refused-kind"),
    pytest.param((None, None), NODATA, NODATA, NameState.NO_ADDRESS, None, None, "neither an A nor an AAAA",
                 id="no-address"),
    pytest.param(("192.0.2.10", "2001:db8::10"), A1, SERVFAIL, NameState.SERVFAIL, "192.0.2.10", "2001:db8::10",
                 "AAAA: servfail", id="one-family-fails"),
])
def test_step(last, a, aaaa, state, ipv4, ipv6, detail_has):
    rec = initial("vm1", "vobox1.example.org", *last)
    new, events = step(rec, a, aaaa, 100.0, problem)
    assert (new.state, new.ipv4, new.ipv6) == (state, ipv4, ipv6)
    assert detail_has in new.detail
    changes = [e for e in events if isinstance(e, AddressChanged)]
    assert changes == [AddressChanged("vm1", 100.0, "vobox1.example.org", fam, old, new_)
                       for fam, old, new_ in ((4, last[0], ipv4), (6, last[1], ipv6)) if old != new_]
    assert isinstance(events[-1], NameStateChanged) and events[-1].state == state.value


def test_unchanged_resolution_is_silent_and_keeps_since():
    rec, _ = step(initial("vm1", "vobox1.example.org"), A1, NODATA, 100.0, problem)
    again, events = step(rec, A1, NODATA, 160.0, problem)
    assert events == [] and again.since_s == 100.0 and again.resolved_s == 160.0


def test_configured_address_next_to_the_name_is_the_start_and_the_nodata_fallback():
    rec = initial("vm1", "vobox1.example.org", "192.0.2.10", "2001:db8::99")
    new, events = step(rec, A2, NODATA, 1.0, problem, configured=("192.0.2.10", "2001:db8::99"))
    assert (new.ipv4, new.ipv6) == ("192.0.2.20", "2001:db8::99")
    assert [e for e in events if isinstance(e, AddressChanged)] == [
        AddressChanged("vm1", 1.0, "vobox1.example.org", 4, "192.0.2.10", "192.0.2.20")]


def test_apply_and_deferral():
    from agent.core.config import parse

    cfg = parse({"box": [{"name": "vm1", "kind": "vm", "hostname": "vobox1.example.org"},
                         {"name": "vm2", "kind": "vm", "hostname": "vobox2.example.org"},
                         {"name": "vm3", "kind": "vm", "ipv4": "192.0.2.3"}]})
    ok, _ = step(initial("vm1", "vobox1.example.org"), A1, NODATA, 1.0, problem)
    never, _ = step(initial("vm2", "vobox2.example.org"), NX, NX, 1.0, problem)
    boxes = apply(cfg.boxes, {"vm1": ok, "vm2": never})
    assert [(b.name, b.ipv4) for b in boxes] == [("vm1", "192.0.2.10"), ("vm3", "192.0.2.3")]
    assert deferral(ok) is None
    stale, _ = step(ok, SERVFAIL, SERVFAIL, 2.0, problem)
    assert "does not resolve (servfail" in (deferral(stale) or "")


def test_the_same_trouble_of_both_families_is_said_once():
    rec, _ = step(initial("vm1", "vobox1.example.org", "192.0.2.10"), SERVFAIL, SERVFAIL, 1.0, problem)
    assert rec.detail == "A, AAAA: servfail (198.51.100.53: SERVFAIL); probed at its last address 192.0.2.10"
