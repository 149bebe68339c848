"""The config keys of boxes by name (issue 34): [[box]] hostname, [agent] nameservers and resolve_interval."""
from __future__ import annotations

import pytest

from agent.core.config import ConfigError, parse

VM = '[[box]] "vm1" (#1)'


def _cfg(box: dict | None = None, agent: dict | None = None) -> dict:
    return {"agent": agent or {}, "box": [{"name": "vm1", "kind": "vm", **(box or {})}]}


def test_hostname_instead_of_addresses():
    cfg = parse(_cfg({"hostname": "VOBox1.Example.org."}, {"nameservers": ["198.51.100.53", "2001:db8::53"],
                                                            "resolve_interval": 30}))
    box = cfg.boxes[0]
    assert (box.hostname, box.ipv4, box.ipv6, box.addresses()) == ("vobox1.example.org", None, None, ())
    assert cfg.agent.nameservers == ("198.51.100.53", "2001:db8::53") and cfg.agent.resolve_interval_s == 30.0


def test_hostname_next_to_an_address_and_on_a_static_container():
    cfg = parse({"box": [{"name": "vm1", "kind": "vm", "hostname": "vobox1.example.org", "ipv4": "192.0.2.10"},
                         {"name": "ctr", "kind": "container", "container": "c", "network": "n",
                          "hostname": "ctr.example.org"}]})
    assert cfg.boxes[0].ipv4 == "192.0.2.10" and cfg.boxes[1].hostname == "ctr.example.org"


def test_defaults():
    cfg = parse(_cfg({"ipv4": "192.0.2.10"}))
    assert cfg.agent.nameservers == () and cfg.agent.resolve_interval_s == 60.0 and cfg.boxes[0].hostname is None


@pytest.mark.parametrize("box, agent, error", [
    pytest.param({}, None, VM + ": needs ipv4, ipv6 or hostname", id="no-address-no-name"),
    pytest.param({"hostname": "192.0.2.10"}, None, VM + '.hostname: expected a DNS host name, got the address '
                 '"192.0.2.10": write it as ipv4 or ipv6', id="address-as-name"),
    pytest.param({"hostname": "vo box.example.org"}, None, VM + '.hostname: expected a DNS host name (RFC 1123), '
                 'got "vo box.example.org": label "vo box" is not 1-63 letters, digits or inner hyphens',
                 id="space"),
    pytest.param({"hostname": "-a.example.org"}, None, VM + '.hostname: expected a DNS host name (RFC 1123), got '
                 '"-a.example.org": label "-a" is not 1-63 letters, digits or inner hyphens', id="leading-hyphen"),
    pytest.param({"hostname": "a..org"}, None, VM + '.hostname: expected a DNS host name (RFC 1123), got "a..org": '
                 'label "" is not 1-63 letters, digits or inner hyphens', id="empty-label"),
    pytest.param({"hostname": "1.2.3"}, None, VM + '.hostname: expected a DNS host name, got "1.2.3": all-numeric '
                 'names are not host names (RFC 1123 2.1)', id="all-numeric"),
    pytest.param({"hostname": "vöbox.example.org"}, None, VM + '.hostname: expected a DNS host name in ASCII, got '
                 '"v\\u00f6box.example.org": write its IDNA form "xn--vbox-5qa.example.org"', id="idn"),
    pytest.param({"hostname": "a" * 64 + ".example.org"}, None, VM + '.hostname: expected a DNS host name (RFC 1123), '
                 'got "' + "a" * 64 + '.example.org": label "' + "a" * 64 + '" is not 1-63 letters, digits or inner '
                 'hyphens', id="long-label"),
    pytest.param({"hostname": "vobox1"}, None, VM + '.hostname: expected a fully qualified DNS name, got "vobox1": '
                 'no search list is applied; write e.g. "vobox1.example.org"', id="short-name"),
    pytest.param({"hostname": 5}, None, VM + ".hostname: expected a DNS host name (RFC 1123), got 5", id="type"),
    pytest.param({"ipv4": "192.0.2.1"}, {"nameservers": ["dns.example.org"]},
                 'agent.nameservers[0]: expected the IP address of a DNS server (not a name: it would need a resolver '
                 'itself), got "dns.example.org"', id="nameserver-name"),
    pytest.param({"ipv4": "192.0.2.1"}, {"nameservers": ["224.0.0.1"]},
                 'agent.nameservers[0]: expected the IP address of a DNS server, got "224.0.0.1": a multicast '
                 'address (224.0.0.0/4, RFC 5771), not one host', id="nameserver-multicast"),
    pytest.param({"ipv4": "192.0.2.1"}, {"nameservers": []},
                 "agent.nameservers: expected at least 1 element(s), got 0", id="empty"),
    pytest.param({"ipv4": "192.0.2.1"}, {"resolve_interval": 1},
                 "agent.resolve_interval: expected a number >= 5, got 1", id="below-floor"),
])
def test_one_line_errors(box, agent, error):
    with pytest.raises(ConfigError) as exc:
        parse(_cfg(box, agent))
    assert exc.value.errors == (error,)


def test_a_box_by_name_may_use_the_address_placeholders():
    cfg = parse(_cfg({"hostname": "vobox1.example.org", "remediate": ["command"],
                      "command": ["ssh", "root@{ipv4}", "reboot"]}))
    assert cfg.boxes[0].command == ("ssh", "root@{ipv4}", "reboot")
    with pytest.raises(ConfigError) as exc:
        parse(_cfg({"ipv6": "2001:db8::1", "remediate": ["command"], "command": ["ssh", "{ipv4}"]}))
    assert exc.value.errors == (VM + ".command[1]: placeholder {ipv4} but the box has no ipv4",)
