"""reconnect_network's decisions that this 20.10 engine cannot show (a MAC that changes, API >= 1.54),
checked against a recording stand-in for the docker client (pure logic only; the real runs are lab tests)."""
from __future__ import annotations

import pytest

from remediations import ActionContext, PlannedAction, RemediationPolicy, RemediationTarget, execute


class FakeContainer:
    def __init__(self, ep):
        self.id = "0123456789abcdef" * 4
        self.ep = ep
        self.attrs = {}
        self.reload()

    def reload(self):
        self.attrs = {"State": {"Pid": 0, "Paused": False},
                      "NetworkSettings": {"Networks": {"net1": self.ep} if self.ep else {}}}


class FakeNetwork:
    name = "net1"

    def __init__(self, ctr, new_mac):
        self.ctr, self.new_mac, self.calls = ctr, new_mac, []

    def disconnect(self, ctr, force=False):
        self.calls.append(("disconnect", force))
        self.ctr.ep = None

    def connect(self, ctr, **kw):
        self.calls.append(("connect", kw))
        self.ctr.ep = {"IPAddress": kw["ipv4_address"], "GlobalIPv6Address": kw["ipv6_address"],
                       "MacAddress": kw.get("mac_address") or self.new_mac, "Aliases": kw["aliases"]}


class FakeClient:
    def __init__(self, api_version, ep, new_mac):
        self.ctr = FakeContainer(ep)
        self.net = FakeNetwork(self.ctr, new_mac)
        self.api = type("Api", (), {"api_version": api_version})()
        self.containers = type("C", (), {"get": lambda _s, name: self._get("ctr1", name, self.ctr)})()
        self.networks = type("N", (), {"get": lambda _s, name: self._get("net1", name, self.net)})()

    @staticmethod
    def _get(expected, name, obj):
        assert name == expected, f"touched {name!r}, not the configured {expected!r}"
        return obj


EP = {"IPAMConfig": {"IPv4Address": "192.0.2.10", "IPv6Address": "2001:db8::10"}, "IPAddress": "192.0.2.10",
      "GlobalIPv6Address": "2001:db8::10", "MacAddress": "02:42:c0:00:02:0a",
      "Aliases": ["0123456789ab", "svc-alias"]}
T = RemediationTarget(box="c1", kind="container", ipv4="192.0.2.10", ipv6="2001:db8::10", container="ctr1",
                      network="net1")


@pytest.mark.parametrize("api, new_mac, passes_mac, says", [
    pytest.param("1.41", "02:42:c0:00:02:0a", False, "mac unchanged 02:42:c0:00:02:0a", id="engine-20.10"),
    pytest.param("1.43", "02:99:00:00:00:01", False, "MAC CHANGED 02:42:c0:00:02:0a -> 02:99:00:00:00:01",
                 id="random-mac-engine"),
    pytest.param("1.44", "02:99:00:00:00:01", False, "MAC CHANGED 02:42:c0:00:02:0a -> 02:99:00:00:00:01",
                 id="api-1.44-ignores-mac-on-connect"),
    pytest.param("1.54", "02:99:00:00:00:01", True, "mac unchanged 02:42:c0:00:02:0a", id="api-1.54-keeps-mac"),
])
def test_reconnect_mac_handling(api, new_mac, passes_mac, says):
    client = FakeClient(api, dict(EP), new_mac)
    out = execute(PlannedAction("c1", "reconnect_network", "manual", T, False, -1, 0.0),
                  ActionContext(lambda: client, RemediationPolicy()))
    assert out.ok and says in out.detail
    (_, force), (_, kw) = client.net.calls
    assert force is True
    assert kw["aliases"] == ["svc-alias"]  # Docker's own short-id alias is not passed back
    assert ("mac_address" in kw) is passes_mac
    assert (kw["ipv4_address"], kw["ipv6_address"]) == ("192.0.2.10", "2001:db8::10")


def test_disconnected_container_uses_configured_addresses_and_no_disconnect():
    client = FakeClient("1.41", None, "02:42:c0:00:02:0a")
    out = execute(PlannedAction("c1", "reconnect_network", "manual", T, False, -1, 0.0),
                  ActionContext(lambda: client, RemediationPolicy()))
    assert out.ok and "previous unknown" in out.detail
    assert [c[0] for c in client.net.calls] == ["connect"]
