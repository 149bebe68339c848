"""Values that cannot work are refused at load, by kind: addresses no box, listener or server can have, time
zones the zone database cannot load as a zone, box addresses that are the network or broadcast address of
their on-link prefix on this host. Each is one line naming the key path; boxes are named by name and line."""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from agent.core import config
from agent.core.config import ConfigError
from probes.routing import RouteEntry
from tests.cases import case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def box_toml(*, agent: str = "", extra: str = "", **keys: str) -> str:
    """A config with one vm box "b1" (header on line 5 when AGENT is empty) with these keys."""
    keys.setdefault("ipv4", "192.0.2.20")
    lines = ["[agent]", 'state_dir = "/tmp/vobox-test"', agent, "", "[[box]]", 'name = "b1"', 'kind = "vm"']
    lines += [f'{k} = "{v}"' for k, v in keys.items()]
    return "\n".join(lines) + "\n" + extra


def errors_of(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as exc:
        config.loads(text)
    return exc.value.errors


B1 = '[[box]] "b1" (#1, line 5)'


@pytest.mark.parametrize("key, value, why", [
    pytest.param("ipv6", "::ffff:192.0.2.10", "IPv4-mapped", id="v4-mapped"),
    pytest.param("ipv6", "::ffff:7f00:1", "IPv4-mapped", id="v4-mapped-hex"),
    pytest.param("ipv6", "::192.0.2.10", "IPv4-compatible", id="v4-compatible"),
    pytest.param("ipv6", "::", "unspecified", id="v6-unspecified"),
    pytest.param("ipv6", "::1", "loopback", id="v6-loopback"),
    pytest.param("ipv6", "ff02::1", "multicast", id="v6-multicast"),
    pytest.param("ipv6", "fe80::21", "link-local", id="v6-link-local-without-interface"),
    pytest.param("ipv4", "0.0.0.0", "unspecified", id="v4-unspecified"),
    pytest.param("ipv4", "0.1.2.3", "this network", id="v4-this-network"),
    pytest.param("ipv4", "127.0.0.1", "loopback", id="v4-loopback"),
    pytest.param("ipv4", "127.8.9.10", "loopback", id="v4-loopback-8"),
    pytest.param("ipv4", "224.0.0.251", "multicast", id="v4-multicast"),
    pytest.param("ipv4", "239.255.255.250", "multicast", id="v4-multicast-admin"),
    pytest.param("ipv4", "255.255.255.255", "limited broadcast", id="v4-limited-broadcast"),
    pytest.param("ipv4", "240.0.0.1", "reserved", id="v4-reserved"),
    pytest.param("ipv4", "169.254.10.20", "link-local", id="v4-link-local-without-interface"),
])
def test_a_box_address_of_a_kind_no_host_has_is_one_error_naming_the_key(key, value, why):
    keys = {"ipv4": "192.0.2.20"} if key == "ipv6" else {}
    [err] = errors_of(box_toml(**(keys | {key: value})))
    assert err.startswith(f"{B1}.{key}: ") and why in err and value in err, err


@pytest.mark.parametrize("key, value", [
    pytest.param("ipv4", "192.0.2.20", id="documentation"), pytest.param("ipv4", "198.18.0.9", id="benchmark"),
    pytest.param("ipv4", "10.1.2.3", id="rfc1918-10"), pytest.param("ipv4", "172.16.5.4", id="rfc1918-172"),
    pytest.param("ipv4", "192.168.1.20", id="rfc1918-192"), pytest.param("ipv4", "100.64.0.9", id="cgnat"),
    pytest.param("ipv6", "2001:db8::21", id="v6-documentation"), pytest.param("ipv6", "fd00:1::21", id="ula"),
    pytest.param("ipv6", "2a00:1450::1", id="v6-global"),
])
def test_documentation_benchmark_rfc1918_and_ula_addresses_stay_valid(key, value):
    cfg = config.loads(box_toml(**{key: value}))
    assert getattr(cfg.boxes[0], key) == value


def test_link_local_is_valid_with_the_interface_that_names_its_link():
    cfg = config.loads(box_toml(agent='interface = "eth1"', ipv6="fe80::21", ipv4="169.254.10.20"))
    assert (cfg.boxes[0].ipv4, cfg.boxes[0].ipv6) == ("169.254.10.20", "fe80::21")


def test_the_shared_mapped_case_is_refused_naming_the_box_and_the_line():
    [err] = errors_of(case("config-ipv6-mapped.toml").read_text())
    assert err.startswith('[[box]] "vobox-vm-1" (#1, line 13).ipv6: ') and "IPv4-mapped" in err
    assert "write the IPv4 address 192.0.2.10" in err


@pytest.mark.parametrize("where, value, ok", [
    pytest.param("remediation.webhook_listen", "0.0.0.0:9787", True, id="listen-any"),
    pytest.param("remediation.webhook_listen", "[::]:9787", True, id="listen-any-v6"),
    pytest.param("remediation.webhook_listen", "127.0.0.1:9787", True, id="listen-loopback"),
    pytest.param("remediation.webhook_listen", "[::ffff:127.0.0.1]:9787", False, id="listen-mapped"),
    pytest.param("remediation.webhook_listen", "224.0.0.1:9787", False, id="listen-multicast"),
    pytest.param("remediation.webhook_listen", "255.255.255.255:9787", False, id="listen-broadcast"),
    pytest.param("remediation.webhook_listen", "[fe80::1]:9787", False, id="listen-link-local"),
    pytest.param("remediation.webhook_listen", "300.1.2.3:9787", False, id="listen-not-an-address"),
    pytest.param("metrics.listen", "240.1.2.3:9100", False, id="metrics-reserved"),
    pytest.param("metrics.listen", "[::]:9100", True, id="metrics-any"),
    pytest.param("influxdb.url", "http://127.0.0.1:8086", True, id="url-loopback"),
    pytest.param("influxdb.url", "https://influx.example.org:8086/", True, id="url-name"),
    pytest.param("influxdb.url", "http://u:p@198.51.100.7:8086", True, id="url-userinfo"),
    pytest.param("influxdb.url", "http://0.0.0.0:8086", False, id="url-unspecified"),
    pytest.param("influxdb.url", "http://[ff02::1]:8086", False, id="url-multicast"),
    pytest.param("influxdb.url", "http://[::ffff:192.0.2.7]:8086", False, id="url-mapped"),
    pytest.param("otlp.endpoint", "https://239.1.1.1:4318", False, id="otlp-multicast"),
    pytest.param("otlp.endpoint", "https://[2001:db8::7]:4318", True, id="otlp-v6"),
])
def test_listen_and_server_addresses_get_the_same_rule_for_their_role(where, value, ok):
    section, key = where.split(".")
    extra = f"[{section}]\n{key} = \"{value}\"\n"
    if section == "remediation":
        extra += 'webhook_token_file = "/t"\n'
    text = box_toml(extra=extra)
    if ok:
        config.loads(text)
        return
    [err] = errors_of(text)
    assert err.startswith(f"{where}: expected ") and value in err, err


@pytest.mark.parametrize("zone", [
    pytest.param("Europe", id="directory"), pytest.param("America/", id="directory-slash"),
    pytest.param("../etc/passwd", id="dot-dot"), pytest.param("/usr/share/zoneinfo/UTC", id="absolute-path"),
    pytest.param("Europe/../UTC", id="not-normalised"), pytest.param("x" * 300, id="over-long"),
    pytest.param("Europe/" + "y" * 300, id="over-long-component"), pytest.param("zone.tab", id="not-tzif"),
    pytest.param("Mars/Olympus", id="unknown"), pytest.param("", id="empty"),
    pytest.param("UTC\\u0000", id="nul"),
])
def test_every_zone_name_the_database_cannot_load_as_a_zone_is_one_line_naming_the_key(zone):
    extra = ('[[maintenance]]\nboxes = "all"\nstart = "06:00"\nduration = 3600\nreason = "r"\n'
             f'timezone = "{zone}"\n')
    [err] = errors_of(box_toml(extra=extra))
    assert err.startswith("maintenance[0].timezone: expected an IANA time zone name") and "\n" not in err, err


def test_the_shared_zone_directory_case_is_one_line_without_a_traceback(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(case("config-maintenance-timezone-directory.toml").read_text())
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(f)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert 'maintenance[0].timezone: expected an IANA time zone name ("UTC", "Europe/Zurich"), got "Europe"' \
        in proc.stderr, proc.stderr


def test_boxes_are_named_by_name_and_header_line_and_all_errors_come_together():
    text = ('[agent]\nstate_dir = "/tmp/x"\n\n'
            '[[box]]\nname = "vobox-ctr-1"\nkind = "vm"\nipv4 = "192.0.2.10"\n'
            'notes = """\n[[box]]\nnot a header: inside a multi-line string\n"""\n\n'
            "  [[ 'box' ]]  # the second box\nname = \"vobox-vm-2\"\nkind = \"vm\"\nipv4 = \"192.0.2.11\"\n"
            "tcp_ports = [1093, 0]\n\n"
            '[[box]]\nkind = "vm"\nipv4 = "192.0.2.12"\n')
    assert config.box_lines(text) == (4, 13, 19)
    assert errors_of(text) == (
        '[[box]] "vobox-ctr-1" (#1, line 4).notes: unknown key (valid: name, kind, ipv4, ipv6, hostname, tcp_ports, container, '
        'network, remediate, command, exec, dry_run, restart_stopped, segment, probe, check)',
        '[[box]] "vobox-vm-2" (#2, line 13).tcp_ports[1]: expected an integer 1-65535, got 0',
        '[[box]] (#3, line 19).name: missing (required: unique box name (tag `box`))')


def test_a_dict_without_text_names_boxes_without_a_line_and_a_discovered_box_by_its_path():
    with pytest.raises(ConfigError) as exc:
        config.parse({"box": [{"name": "a", "kind": "vm", "ipv4": "127.0.0.1"}]})
    assert exc.value.errors[0].startswith('[[box]] "a" (#1).ipv4: ')
    cfg = config.loads(box_toml())
    with pytest.raises(ConfigError) as exc:
        config.box_from_table({"name": "c", "kind": "container", "container": "c", "network": "n",
                               "ipv6": "::ffff:192.0.2.9"}, cfg, 'container "c"')
    [err] = exc.value.errors
    assert err.startswith('container "c".ipv6: ') and "IPv4-mapped" in err


# --- the on-link network and broadcast addresses, from this host's routes ---

def routes(*rows: tuple[str, str | None, str]) -> list[RouteEntry]:
    return [RouteEntry(ipaddress.ip_network(net), gw, dev, 0) for net, gw, dev in rows]


TABLE4 = routes(("192.0.2.0/24", None, "eth1"), ("198.51.100.0/24", "192.0.2.1", "eth1"),
                ("203.0.113.0/30", None, "eth2"), ("198.18.0.8/31", None, "eth3"))
TABLE6 = routes(("2001:db8:1::/64", None, "eth1"), ("2001:db8:2::/64", "2001:db8:1::1", "eth1"))


@pytest.mark.parametrize("address, problem", [
    pytest.param("192.0.2.0", "network address of the on-link prefix 192.0.2.0/24 (on eth1)", id="network"),
    pytest.param("192.0.2.255", "broadcast address of the on-link prefix 192.0.2.0/24", id="broadcast"),
    pytest.param("203.0.113.3", "broadcast address of the on-link prefix 203.0.113.0/30", id="broadcast-30"),
    pytest.param("192.0.2.10", None, id="host"),
    pytest.param("198.51.100.0", None, id="routed-network-address-stays-valid"),
    pytest.param("198.51.100.255", None, id="routed-broadcast-stays-valid"),
    pytest.param("198.18.0.8", None, id="point-to-point-31"),
    pytest.param("198.18.1.0", None, id="no-route"),
    pytest.param("2001:db8:1::", "Subnet-Router anycast address of the on-link prefix 2001:db8:1::/64",
                 id="v6-subnet-router-anycast"),
    pytest.param("2001:db8:1::10", None, id="v6-host"),
    pytest.param("2001:db8:2::", None, id="v6-routed"),
])
def test_on_link_network_and_broadcast_addresses_are_not_a_hosts(address, problem):
    got = config.on_link_problem(address, TABLE4 if ":" not in address else TABLE6)
    assert (got is None) == (problem is None) and (problem is None or problem in got), got


def test_host_errors_name_the_box_and_read_the_route_table_once_per_family():
    text = box_toml(ipv4="192.0.2.255", ipv6="2001:db8:1::") + '[[box]]\nname = "b2"\nkind = "vm"\nipv4 = "192.0.2.7"\n'
    cfg = config.loads(text)
    asked = []

    def table(version: int) -> list[RouteEntry]:
        asked.append(version)
        return TABLE4 if version == 4 else TABLE6

    errs = config.host_errors(cfg, table)
    assert [e.split(": ")[0] for e in errs] == [f"{B1}.ipv4", f"{B1}.ipv6"] and sorted(asked) == [4, 6], errs
    via_eth2 = config.loads(box_toml(agent='interface = "eth2"', ipv4="192.0.2.255"))
    assert config.host_errors(via_eth2, table) == []   # probes leave through eth2: eth1's prefix says nothing


@pytest.mark.lab
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_check_config_and_run_refuse_an_on_link_broadcast_box_in_a_real_namespace(tmp_path, command):
    """The routes of the namespace the agent runs in decide: the segment's /24 is on-link in the monitor
    namespace; a box behind a gateway keeps the network address of its remote prefix."""
    from tests.probes.conftest import (
        cleanup_leftovers,
        make_segment,
        remove_segment,
        run,
        segment_unavailable_reason,
    )

    reason = segment_unavailable_reason()
    if reason:
        pytest.skip(reason)
    cleanup_leftovers()
    seg = make_segment(1)
    try:
        net4 = seg.monitor_ipv4.rsplit(".", 1)[0]
        run("ip", "-n", seg.monitor, "route", "add", "203.0.113.0/24", "via", seg.ipv4[0])
        good = (f'[agent]\nstate_dir = "{tmp_path}/state"\ninterval = 2\n[influxdb]\nurl = "http://127.0.0.1:9"\n'
                f'[[box]]\nname = "host"\nkind = "vm"\nipv4 = "{seg.ipv4[0]}"\n'
                f'[[box]]\nname = "routed"\nkind = "vm"\nipv4 = "203.0.113.0"\n')
        bad = good + f'[[box]]\nname = "bcast"\nkind = "vm"\nipv4 = "{net4}.255"\n'
        path = tmp_path / "agent.toml"
        path.write_text(good)
        args = ["ip", "netns", "exec", seg.monitor, sys.executable, "-m", "agent", command, "-c", str(path)]
        if command == "check-config":
            ok = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert ok.returncode == 0, ok.stderr
        path.write_text(bad)
        proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        want = (f'[[box]] "bcast" (#3, line 14).ipv4: {net4}.255 is the broadcast address of the on-link prefix '
                f"{net4}.0/24 (on {seg.monitor_link}), not a host's")
        assert want in proc.stderr and "routed" not in proc.stderr, proc.stderr
    finally:
        remove_segment(seg)


@pytest.mark.parametrize("section, keys, where", [
    pytest.param("influxdb", 'url = "https://127.0.0.1:8086"\nca_file = "{bad}"\n', "influxdb.ca_file", id="influxdb"),
    pytest.param("otlp", 'endpoint = "https://127.0.0.1:4318"\nca_file = "{bad}"\n', "otlp.ca_file", id="otlp"),
    pytest.param("remediation", 'webhook_listen = "127.0.0.1:9787"\nwebhook_token_file = "{token}"\n'
                 'webhook_cert_file = "{cert}"\nwebhook_key_file = "{key}"\nwebhook_verify_client = "required"\n'
                 'webhook_client_ca_file = "{bad}"\n', "remediation.webhook_client_ca_file", id="webhook"),
])
def test_every_tls_ca_file_is_asked_once_through_the_one_tls_type(tmp_path, section, keys, where):
    """The same question (agent.tls.TLSSettings.problems) and the same answer for every CA file the config names."""
    from tests.pki import CA

    cert, key = CA(tmp_path / "pki", "site").issue("server")
    bad = tmp_path / "garbage.pem"
    bad.write_text("not a certificate\n")
    token = tmp_path / "token"
    token.write_text("x\n")
    text = box_toml(extra=f"[{section}]\n" + keys.format(bad=bad, token=token, cert=cert, key=key))
    with pytest.raises(ConfigError) as exc:
        config.loads(text, check_files=True)
    [err] = exc.value.errors
    assert err.startswith(f'{where}: "{bad}" holds no usable PEM CA certificate'), err
