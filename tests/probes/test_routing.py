"""Route table parsing and lookup (pure), and resolution inside a namespace (real)."""
from __future__ import annotations

import threading

import pytest

from agent import netns
from probes import routing

ROUTE4 = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
va\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
va\t000512C6\t020012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
vb\t00000000\t010012C6\t0003\t0\t0\t100\t00000000\t0\t0\t0
vc\t000612C6\t00000000\t0201\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""

ROUTE6 = """\
20010db8000900000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       va
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       va
20010db8000900000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       va
20010db8000a00000000000000000000 30 00000000000000000000000000000000 00 20010db8000900000000000000000002 00000400 00000001 00000000 00000003       vb
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""


@pytest.mark.parametrize("address, interface, gateway", [
    pytest.param("198.18.0.7", "va", None, id="on-link"),
    pytest.param("198.18.5.9", "va", "198.18.0.2", id="via-gateway-longest-prefix"),
    pytest.param("203.0.113.1", "vb", "198.18.0.1", id="default-route"),
    pytest.param("198.18.6.1", "vb", "198.18.0.1", id="reject-route-ignored"),
])
def test_ipv4_lookup(address, interface, gateway):
    entry = routing.lookup(routing.parse_route4(ROUTE4), address)
    assert (entry.interface, entry.gateway) == (interface, gateway)


@pytest.mark.parametrize("address, interface, gateway", [
    pytest.param("2001:db8:9::5", "va", None, id="on-link"),
    pytest.param("2001:db8:a:1::5", "vb", "2001:db8:9::2", id="via-gateway"),
    pytest.param("2001:db8:9::1", "va", None, id="own-address-host-route"),
])
def test_ipv6_lookup(address, interface, gateway):
    entry = routing.lookup(routing.parse_route6(ROUTE6), address)
    assert (entry.interface, entry.gateway) == (interface, gateway)


def test_ipv6_unroutable_and_reject_entries_give_nothing():
    assert routing.lookup(routing.parse_route6(ROUTE6), "2001:db8:ff::1") is None  # lo reject default dropped


def test_resolve_sees_the_calling_threads_namespace(segment):
    """Inside the segment's monitor namespace (in this thread and in a thread started there) the route exists;
    the same lookup from the host namespace finds no such interface."""
    with netns.entered(segment.monitor):
        route = routing.resolve(segment.ipv4[0])
        route6 = routing.resolve(segment.ipv6[0])
        from_thread = []
        t = threading.Thread(target=lambda: from_thread.append(routing.resolve(segment.ipv4[0])))
        t.start()
        t.join()
    assert (route.interface, route.source, route.gateway, route.mac) == (
        segment.monitor_link, segment.monitor_ipv4, None, segment.monitor_mac)
    assert (route6.interface, route6.source) == (segment.monitor_link, segment.monitor_ipv6)
    assert from_thread == [route]
    try:
        outside = routing.resolve(segment.ipv4[0])
    except routing.RoutingError:
        outside = None
    assert outside is None or outside.interface != segment.monitor_link
