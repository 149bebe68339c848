"""Pure naming and addressing rules of the lab (no root needed)."""
from __future__ import annotations

import ipaddress

import pytest

from lab import addressing, names


def test_interface_names_fit_the_kernel_limit_and_match_the_cleanup_patterns():
    run_id = names.new_run_id()
    for link in (names.parent_link(run_id), names.monitor_link(run_id), names.vm_link(run_id, 99)):
        assert len(link) <= 15
        assert names.LINK_RE.match(link).group(1) == run_id
    assert names.NETNS_RE.match(names.monitor_netns(run_id)).group(1) == run_id
    assert names.NETNS_RE.match(names.vm_netns(run_id, 3)).group(1) == run_id
    assert names.CONTAINER_RE.match(names.container(run_id, 12)).group(1) == run_id
    assert names.NETWORK_RE.match(names.network(run_id)).group(1) == run_id
    assert not names.LINK_RE.match("eth0") and not names.NETNS_RE.match("vbx-graf-dev-1")


def test_vm_macs_are_locally_administered_unicast_and_distinct():
    macs = {names.vm_mac("a1b2c3", i) for i in range(1, 50)}
    assert len(macs) == 49
    for mac in macs:
        first = int(mac[:2], 16)
        assert first & 0b10 and not first & 0b1


@pytest.mark.parametrize("index", [1, 255, 256, 511])
def test_subnets_stay_in_the_benchmark_and_documentation_prefixes(index):
    v4, v6 = addressing.subnets(index)
    assert v4.subnet_of(ipaddress.ip_network("198.18.0.0/15")) and v4.prefixlen == 24
    assert v6.subnet_of(ipaddress.ip_network("2001:db8::/32")) and v6.prefixlen == 64
    assert addressing.host(v4, 11).endswith(".11") and addressing.host(v6, 11).endswith("::11")


@pytest.mark.parametrize("index", [0, 512, -1])
def test_subnet_index_out_of_range_is_an_error(index):
    with pytest.raises(ValueError, match="1..511"):
        addressing.subnets(index)


def test_bad_run_id_is_rejected():
    with pytest.raises(ValueError, match="hex"):
        names.check_run_id("../etc")
