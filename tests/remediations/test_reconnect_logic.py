"""reconnect_network's decisions that this 20.10 engine cannot show (a MAC that changes, API >= 1.54),
checked against a recording stand-in for the docker client (pure logic only; the real runs are lab tests)."""
from __future__ import annotations

import pytest

from remediations import ActionContext, PlannedAction, RemediationPolicy, RemediationTarget, execute
from tests.cases import case


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
        self.ctr, self.new_mac, self.calls, self.ignores_mac = ctr, new_mac, [], False

    def disconnect(self, ctr, force=False):
        self.calls.append(("disconnect", force))
        self.ctr.ep = None

    def connect(self, ctr, **kw):
        self.calls.append(("connect", kw))
        mac = self.new_mac if self.ignores_mac else kw.get("mac_address") or self.new_mac
        self.ctr.ep = {"IPAddress": kw["ipv4_address"], "GlobalIPv6Address": kw["ipv6_address"],
                       "MacAddress": mac, "Aliases": kw["aliases"]}


# `/version` as each engine answers it (Podman: captured from 4.3.1's compat API, trimmed).
DOCKERD_VERSION = {"Version": "20.10.24", "ApiVersion": "1.41", "Components": [{"Name": "Engine",
                                                                                 "Version": "20.10.24"}]}
PODMAN_VERSION = {"Version": "4.3.1", "ApiVersion": "1.41", "Components": [
    {"Name": "Podman Engine", "Version": "4.3.1", "Details": {"APIVersion": "4.3.1", "MinAPIVersion": "4.0.0"}},
    {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"}]}


class FakeClient:
    def __init__(self, api_version, ep, new_mac, version=None, ignores_mac=False):
        self.ctr = FakeContainer(ep)
        self.net = FakeNetwork(self.ctr, new_mac)
        self.net.ignores_mac = ignores_mac
        self._version = version or dict(DOCKERD_VERSION, ApiVersion=api_version)
        self.api = type("Api", (), {"api_version": api_version})()
        self.containers = type("C", (), {"get": lambda _s, name: self._get("ctr1", name, self.ctr)})()
        self.networks = type("N", (), {"get": lambda _s, name: self._get("net1", name, self.net)})()

    def version(self):
        return self._version

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
    # Podman reports API 1.41 but applies the MAC passed on connect: by engine, not by API version
    pytest.param("1.41", "02:99:00:00:00:01", True,
                 "mac unchanged 02:42:c0:00:02:0a (passed on connect, verified; from its endpoint)", id="podman-keeps-mac"),
])
def test_reconnect_mac_handling(api, new_mac, passes_mac, says):
    version = PODMAN_VERSION if "verified" in says else None
    client = FakeClient(api, dict(EP), new_mac, version)
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


def _case_a():
    import json

    return json.loads(case("docker-inspect-ipv6-as-typed.json").read_text())["scenarios"]["A-ipv6-typed-upper-case"]


@pytest.mark.parametrize("after_mac", [pytest.param(None, id="as-inspected"),
                                       pytest.param("02:42:C0:00:02:0A", id="mac-in-upper-case")])
def test_an_engine_that_echoes_addresses_as_typed_is_a_successful_reconnect(after_mac):
    """shared/cases/docker-inspect-ipv6-as-typed.json scenario A: addresses compared as addresses, MACs as MACs."""
    case = _case_a()
    t = case["target"]
    after = dict(case["after_docknet"], **({"MacAddress": after_mac} if after_mac else {}))

    class Ctr:
        id = case["before"]["Id"]

        def __init__(self):
            self.connected = True
            self.reload()

        def reload(self):
            nets = case["before"]["NetworkSettings"]["Networks"] if self.connected else {}
            if self.connected == "again":
                nets = {t["network"]: after}
            self.attrs = {"State": {"Pid": 0}, "NetworkSettings": {"Networks": nets}}

    ctr = Ctr()
    calls = []

    class Net:
        name = t["network"]

        def disconnect(self, c, force=False):
            ctr.connected = False

        def connect(self, c, **kw):
            calls.append(kw)
            ctr.connected = "again"

    client = type("Client", (), {})()
    client.api = type("Api", (), {"api_version": "1.43"})()
    client.containers = type("C", (), {"get": lambda _s, name: ctr})()
    client.networks = type("N", (), {"get": lambda _s, name: Net()})()
    target = RemediationTarget(box=t["box"], kind="container", ipv4=t["ipv4"], ipv6=t["ipv6"],
                               container=t["container"], network=t["network"])
    out = execute(PlannedAction(t["box"], "reconnect_network", "auto", target, False, 0, 0.0),
                  ActionContext(lambda: client, RemediationPolicy(announce=False)))
    assert out.ok, out.detail
    assert "mac unchanged 02:42:c0:00:02:0a" in out.detail
    assert calls[0]["ipv6_address"] == "2001:db8:1::10"   # passed in canonical form


@pytest.mark.parametrize("a, b, same", [
    ("2001:DB8:1::0010", "2001:db8:1::10", True),
    ("2001:db8:1:0:0:0:0:10", "2001:db8:1::10", True),
    ("192.0.2.10", "192.0.2.10", True),
    ("192.0.2.10", "192.0.2.11", False),
    ("2001:db8::10", None, False),
    (None, "", True),
    ("fe80::1%eth0", "FE80::1", True),
])
def test_same_address_compares_addresses(a, b, same):
    from remediations.actions import same_address

    assert same_address(a, b) is same


@pytest.mark.parametrize("mac, canonical", [("02:42:AC:11:00:02", "02:42:ac:11:00:02"),
                                            ("02-42-ac-11-00-02", "02:42:ac:11:00:02"),
                                            ("0242.ac11.0002", "02:42:ac:11:00:02"), ("", None)])
def test_canonical_mac(mac, canonical):
    from remediations.actions import canonical_mac

    assert canonical_mac(mac) == canonical


def test_a_mac_passed_on_connect_is_verified_and_a_change_said():
    """An engine that takes the MAC but gives another: the reconnect is done (the addresses answer) and the
    detail says the MAC was not kept, so the mac_change that follows is understood."""
    client = FakeClient("1.41", dict(EP), "02:99:00:00:00:01", PODMAN_VERSION, ignores_mac=True)
    out = execute(PlannedAction("c1", "reconnect_network", "manual", T, False, -1, 0.0),
                  ActionContext(lambda: client, RemediationPolicy()))
    assert out.ok
    assert ("MAC CHANGED 02:42:c0:00:02:0a -> 02:99:00:00:00:01 (podman did not apply the MAC passed on connect; "
            "from its endpoint)") in out.detail
    assert client.net.calls[1][1]["mac_address"] == "02:42:c0:00:02:0a"
