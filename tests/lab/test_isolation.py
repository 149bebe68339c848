"""The monitor namespace: lab addresses only, nothing but lo and its veth end, and no route out of the machine."""
from __future__ import annotations

import ipaddress
import subprocess

import pytest

from tests.lab_fixtures import in_monitor

pytestmark = pytest.mark.lab


# Destinations outside the lab's own /24 and /64 but inside the documentation prefixes: with no default
# route they are unreachable like any address off the machine would be.
@pytest.mark.parametrize("destination", ["192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8:ffff::1"])
def test_no_route_out_of_the_monitor_namespace(lab, destination):
    # a route lookup only: nothing is sent
    assert ipaddress.ip_address(destination) not in ipaddress.ip_network(lab.ipv4_subnet if "." in destination
                                                                          else lab.ipv6_subnet)
    proc = in_monitor(lab, "ip", "route", "get", destination)
    assert proc.returncode != 0, proc.stdout
    assert "unreachable" in proc.stderr.lower()


def test_monitor_has_no_default_route_and_only_its_links(lab):
    for family in ("-4", "-6"):
        routes = in_monitor(lab, "ip", family, "route", "show", "default").stdout.strip()
        assert routes == "", routes
    links = {line.split()[0].split("@")[0] for line in in_monitor(lab, "ip", "-br", "link").stdout.splitlines()}
    assert links == {"lo", lab.monitor_link}
    assert in_monitor(lab, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"


def test_lab_addresses_are_documentation_or_benchmark_prefixes(lab):
    v4 = ipaddress.ip_network(lab.ipv4_subnet)
    v6 = ipaddress.ip_network(lab.ipv6_subnet)
    assert v4.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
    assert v6.subnet_of(ipaddress.ip_network("2001:db8::/32"))
    for b in lab.boxes:
        assert ipaddress.ip_address(b.ipv4) in v4 and ipaddress.ip_address(b.ipv6) in v6
    assert lab.monitor_ipv4 == str(v4.network_address + 1)


def test_the_segment_parent_is_lab_owned_and_address_free(lab):
    out = subprocess.run(["ip", "-br", "addr", "show", lab.parent_link], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[0].startswith(lab.parent_link)
    assert len(out.stdout.split()) == 2, f"parent link has addresses: {out.stdout}"
    nets = subprocess.run(["docker", "network", "inspect", "-f", "{{.Driver}} {{index .Options \"parent\"}}",
                           lab.network], capture_output=True, text=True).stdout.split()
    assert nets == ["macvlan", lab.parent_link]
