"""Discovery's pure part: inspected containers + [discovery] -> [[box]] tables; the live box set; `discover` TOML.

Inspect dicts are the one recorded from Engine 20.10 (tests/cases/docker-inspect-macvlan-running.json)
with labels and networks changed per case.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib

import pytest

from agent.core import config as C
from agent.core.discovery import discover, merged, qualifies, to_toml
from agent.discovery import DockerDiscovery
from agent.engines import ENGINES

CASE = os.path.join(os.path.dirname(__file__), "..", "..", "cases", "docker-inspect-macvlan-running.json")
with open(CASE, encoding="utf-8") as fh:
    RECORDED = json.load(fh)
NET = next(iter(RECORDED["NetworkSettings"]["Networks"]))   # the recorded macvlan network


def ctr(name: str, labels: dict | None = None, net: str = NET, ipv4: str = "198.19.93.11",
        ipv6: str | None = "2001:db8:18:15d::11", mac: str = "02:42:c6:13:5d:0b", cid: str | None = None,
        extra_nets: dict | None = None, running: bool = True) -> dict:
    """The recorded inspect dict as container NAME with these labels, network and addresses."""
    a = copy.deepcopy(RECORDED)
    a["Name"], a["Id"] = "/" + name, cid or (name.encode().hex() * 8)[:64]
    a["Config"]["Labels"] = dict(labels or {})
    ep = a["NetworkSettings"]["Networks"].pop(NET)
    ep.update({"IPAddress": ipv4 if running else "", "GlobalIPv6Address": (ipv6 or "") if running else "",
               "MacAddress": mac if running else ""})
    ep["IPAMConfig"] = {"IPv4Address": ipv4, **({"IPv6Address": ipv6} if ipv6 else {})}
    a["NetworkSettings"]["Networks"] = {net: ep, **(extra_nets or {})}
    return a


def cfg(discovery: dict | None = None, boxes: list | None = None) -> C.Config:
    return C.parse({"agent": {"interval": 10}, "discovery": {"docker": True, **(discovery or {})},
                    **({"box": boxes} if boxes else {})})


ON = {"vobox.monitor": "true"}


def test_the_recorded_inspect_of_a_labelled_container_becomes_its_box():
    found = discover([ctr("vobox1", ON)], cfg({"tcp_ports": [1093], "remediate": ["reconnect_network"]}))
    assert found.warnings == () and len(found.found) == 1
    f = found.found[0]
    b = f.box
    assert (b.name, b.kind, b.container, b.network) == ("vobox1", "container", "vobox1", NET)
    assert (b.ipv4, b.ipv6, b.tcp_ports, b.remediate) == ("198.19.93.11", "2001:db8:18:15d::11", (1093,),
                                                          ("reconnect_network",))
    assert f.mac == "02:42:c6:13:5d:0b" and f.container_id.startswith("766f626f7831")


@pytest.mark.parametrize("labels,disc,boxed", [
    pytest.param({}, {}, False, id="unlabelled-no-networks"),
    pytest.param({"vobox.monitor": "false"}, {}, False, id="label-other-value"),
    pytest.param({"vobox.monitor": "true"}, {}, True, id="labelled"),
    pytest.param({}, {"networks": [NET]}, True, id="unlabelled-on-named-network"),
    pytest.param({}, {"networks": ["othernet"]}, False, id="unlabelled-on-other-network"),
    pytest.param({"vobox.monitor": "true"}, {"networks": ["othernet"]}, True, id="labelled-OR-network"),
    pytest.param({"grid": "alice"}, {"label": "grid"}, True, id="label-key-any-value"),
    pytest.param({"grid": "alice"}, {"label": "grid=cms"}, False, id="label-key-other-value"),
])
def test_the_filter_is_label_or_network_and_nothing_outside_it_is_a_box(labels, disc, boxed):
    c = cfg(disc)
    a = ctr("c1", labels)
    assert qualifies(a, c.discovery) is boxed
    assert [f.box.name for f in discover([a], c).found] == (["c1"] if boxed else [])


def test_only_filtered_containers_among_many_become_boxes():
    many = [ctr(f"c{i}", ON if i % 3 == 0 else {}, ipv4=f"198.19.93.{20 + i}", ipv6=None) for i in range(12)]
    found = discover(many, cfg())
    assert sorted(f.box.name for f in found.found) == ["c0", "c3", "c6", "c9"]


@pytest.mark.parametrize("labels,expect", [
    pytest.param({"vobox.ports": "1093,8443"}, {"tcp_ports": (1093, 8443)}, id="ports"),
    pytest.param({"vobox.ports": ""}, {"tcp_ports": ()}, id="ports-empty-none"),
    pytest.param({"vobox.ladder": "restart_container"}, {"remediate": ("restart_container",)}, id="ladder"),
    pytest.param({"vobox.segment": "rack 4"}, {"segment": "rack 4"}, id="segment"),
    pytest.param({"vobox.restart_stopped": "true"}, {"restart_stopped": True}, id="restart_stopped"),
    pytest.param({"vobox.dry_run": "TRUE"}, {"dry_run": True}, id="dry_run"),
])
def test_labels_override_the_discovery_defaults(labels, expect):
    found = discover([ctr("c1", ON | labels)], cfg({"tcp_ports": [22], "remediate": ["reconnect_network"]}))
    assert found.warnings == ()
    b = found.found[0].box
    for key, value in expect.items():
        assert getattr(b, key) == value


@pytest.mark.parametrize("labels,says", [
    pytest.param({"vobox.ports": "1093,http"}, "label vobox.ports='1093,http': expected comma-separated port",
                 id="ports-not-numbers"),
    pytest.param({"vobox.ports": "70000"}, "label vobox.ports='70000': [0]: expected an integer 1-65535",
                 id="port-out-of-range"),
    pytest.param({"vobox.ports": "80,80"}, "label vobox.ports='80,80': [1]: duplicate", id="port-twice"),
    pytest.param({"vobox.ladder": "reboot"}, "label vobox.ladder='reboot': [0]: expected one of", id="ladder"),
    pytest.param({"vobox.port": "80"}, "label vobox.port: unknown (did you mean vobox.ports?", id="typo"),
    pytest.param({"vobox.restart_stopped": "yes"}, "expected true or false, got 'yes'", id="bool"),
    pytest.param({"vobox.network": "elsewhere"}, "label vobox.network='elsewhere': not connected to it",
                 id="network-not-joined"),
    pytest.param({"vobox.segment": "a\nb"}, "label vobox.segment='a\\nb': expected a non-empty string without",
                 id="segment-control-char"),
])
def test_a_bad_label_skips_that_container_with_a_warning_naming_it_and_the_label(labels, says):
    found = discover([ctr("bad", ON | labels), ctr("good", ON, ipv4="198.19.93.12", ipv6=None)], cfg())
    assert [f.box.name for f in found.found] == ["good"]
    assert len(found.warnings) == 1 and found.warnings[0].startswith("container bad: "), found.warnings
    assert says in found.warnings[0] and found.warnings[0].endswith("not monitored"), found.warnings


def test_a_box_of_the_config_with_the_same_name_or_container_overrides_discovery():
    boxes = [{"name": "vobox1", "kind": "container", "ipv4": "198.19.93.50", "container": "vobox1",
              "network": NET, "tcp_ports": [9]},
             {"name": "other", "kind": "container", "ipv4": "198.19.93.51", "container": "vobox2", "network": NET},
             {"name": "vm1", "kind": "vm", "ipv4": "198.19.93.52"}]
    c = cfg(boxes=boxes)
    found = discover([ctr("vobox1", ON), ctr("vobox2", ON, ipv4="198.19.93.12", ipv6=None),
                      ctr("vobox3", ON, ipv4="198.19.93.13", ipv6=None)], c)
    assert sorted(found.overridden) == ["vobox1", "vobox2"]
    assert [f.box.name for f in found.found] == ["vobox3"]
    assert [b.name for b in merged(c, found.found)] == ["vobox1", "other", "vm1", "vobox3"]
    assert merged(c, found.found)[0].tcp_ports == (9,)   # the config's own entry, untouched


def test_an_address_already_taken_skips_the_container():
    c = cfg(boxes=[{"name": "vm1", "kind": "vm", "ipv4": "198.19.93.11"}])
    found = discover([ctr("vobox1", ON)], c)
    assert found.found == () and "address 198.19.93.11 is already box vm1" in found.warnings[0]


def test_network_choice_named_networks_first_else_the_one_with_an_address_else_ask_for_the_label():
    other = {"backnet": {"IPAddress": "198.18.0.5", "GlobalIPv6Address": "", "MacAddress": "02:42:c6:12:00:05"}}
    assert discover([ctr("c1", ON, extra_nets=other)], cfg({"networks": ["backnet", NET]})).found[0].box.network \
        == "backnet"
    # Several, none named: still a box (issue 28: the same boxes live and at start, whatever networks are
    # added), on the network it was created on, else the first by name; a warning names the label that picks.
    amb = discover([ctr("c1", ON, extra_nets=other)], cfg())
    assert [f.box.network for f in amb.found] == ["backnet"]
    assert "on several networks" in amb.warnings[0] and "vobox.network" in amb.warnings[0], amb.warnings
    created_on = ctr("c1", ON, extra_nets=other)
    created_on["HostConfig"] = {"NetworkMode": NET}
    amb = discover([created_on], cfg())
    assert [(f.box.network, f.box.ipv4) for f in amb.found] == [(NET, "198.19.93.11")]
    assert "probing " + NET + " (the network it was created on)" in amb.warnings[0], amb.warnings
    chosen = discover([ctr("c1", ON | {"vobox.network": "backnet"}, extra_nets=other)], cfg()).found[0].box
    assert (chosen.network, chosen.ipv4, chosen.ipv6) == ("backnet", "198.18.0.5", None)


def test_a_stopped_container_keeps_its_static_addresses_and_one_without_any_is_skipped():
    b = discover([ctr("c1", ON, running=False)], cfg()).found[0].box
    assert (b.ipv4, b.ipv6) == ("198.19.93.11", "2001:db8:18:15d::11")
    a = ctr("c2", ON)
    ep = a["NetworkSettings"]["Networks"][NET]
    ep.update({"IPAddress": "", "GlobalIPv6Address": "", "IPAMConfig": None})
    found = discover([a], cfg())
    assert found.found == () and "no address" in found.warnings[0]


def test_discovery_defaults_probes_are_given_to_every_box():
    found = discover([ctr("c1", ON)], cfg({"probe": [{"kind": "http", "port": 8080, "path": "/health"}]}))
    (p,) = found.found[0].box.probes
    assert (p.kind, p.port, p.spec.path) == ("http", 8080, "/health")


def test_config_discovery_section_is_strict():
    with pytest.raises(C.ConfigError) as exc:
        C.parse({"discovery": {"docker": True, "label": "", "networks": ["a b"], "tcp_port": [1],
                               "probe": [{"kind": "http", "port": 0}]}})
    text = "\n".join(exc.value.errors)
    for part in ("discovery.label: expected", "discovery.networks[0]: expected", "discovery.tcp_port: unknown key",
                 "discovery.probe[0].port: expected"):
        assert part in text, text
    with pytest.raises(C.ConfigError, match="box: no \\[\\[box\\]\\] configured"):
        C.parse({"discovery": {"docker": False}})
    assert C.parse({"discovery": {"docker": True}}).boxes == ()


def test_discover_toml_round_trips_through_check_config(tmp_path):
    c = cfg({"tcp_ports": [1093], "probe": [{"kind": "tcp", "port": 1093, "send": "ping\n", "expect": "pong"}]})
    found = discover([ctr("vobox1", ON | {"vobox.ladder": "reconnect_network,restart_container",
                                          "vobox.segment": 'rack "4"'}),
                      ctr("vobox2", ON, ipv4="198.19.93.12", ipv6=None)], c)
    text = "[agent]\ninterval = 10\n\n" + to_toml(found.found)
    again = C.loads(text)
    assert again.boxes == tuple(f.box for f in found.found)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("OK: 2 boxes (2 containers)"), proc.stdout + proc.stderr
    assert tomllib.loads(text)["box"][0]["name"] == "vobox1"


class _Api:
    """The part of docker.APIClient discovery uses, over a dict of inspect dicts (pure test of the live logic)."""

    def __init__(self, containers: dict[str, dict]) -> None:
        self.all = containers

    def containers(self, all: bool, filters: dict) -> list[dict]:   # `all`: docker-py's keyword
        out = []
        for a in self.all.values():
            labels = a["Config"]["Labels"]
            if "label" in filters:
                k, _, v = filters["label"][0].partition("=")
                if k in labels and (not v or labels[k] == v):
                    out.append({"Id": a["Id"]})
            if "network" in filters and filters["network"][0] in a["NetworkSettings"]["Networks"]:
                out.append({"Id": a["Id"]})
        return out

    def inspect_container(self, cid: str) -> dict:
        import docker.errors

        if cid not in self.all:
            raise docker.errors.NotFound("no such container")
        return copy.deepcopy(self.all[cid])


class _Client:
    def __init__(self, containers: dict[str, dict]) -> None:
        self.api = _Api(containers)


def _docker_ev(typ: str, action: str, cid: str, ctr_name: str = "", **attrs):
    """An event as dockerd sends it (a network event: `name` is the network, `container` the id), decoded."""
    if typ == "network":
        raw = {"Type": "network", "Action": action, "Actor": {"ID": "net", "Attributes": {"container": cid, **attrs}}}
    else:
        raw = {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": attrs}}
    return ENGINES["docker"].decode(raw)


def _podman_ev(typ: str, action: str, cid: str, ctr_name: str = "", **attrs):
    """The same event as Podman 4.3 sends it (tests/data/podman-4.3-events.jsonl): a network event names the
    CONTAINER (id and name) and not the network; a removal is `remove`."""
    if typ == "network":
        raw = {"Type": "network", "Action": action, "Actor": {"ID": cid, "Attributes": {"name": ctr_name}}}
    else:
        raw = {"Type": "container", "Action": {"destroy": "remove"}.get(action, action),
               "Actor": {"ID": cid, "Attributes": attrs}}
    return ENGINES["podman"].decode(raw)


@pytest.mark.parametrize("_ev", [_docker_ev, _podman_ev], ids=["docker", "podman"])
def test_the_live_box_set_follows_start_destroy_and_keeps_a_disconnected_box(_ev):
    a = ctr("vobox1", ON)
    world = {a["Id"]: a}
    client = _Client(world)
    changes = []
    d = DockerDiscovery(cfg(), on_change=lambda add, rem: changes.append(([f.box.name for f in add],
                                                                          [f.box.name for f in rem])))
    targets = []
    d.set_targets = targets.append
    d.follow(client, None)
    v1, boxes = d.boxes()
    assert [b.name for b in boxes] == ["vobox1"] and changes == [(["vobox1"], [])]
    assert [t.box for t in targets[-1]] == ["vobox1"]
    # a labelled container started later
    b = ctr("vobox2", ON, ipv4="198.19.93.12", ipv6=None)
    world[b["Id"]] = b
    d.follow(client, _ev("container", "start", b["Id"], name="vobox2", **ON))
    v2, boxes = d.boxes()
    assert v2 > v1 and [x.name for x in boxes] == ["vobox1", "vobox2"]
    # an unlabelled one on another network: never a box, not even inspected into the set
    u = ctr("plain", {}, net="othernet", ipv4="198.18.0.9", ipv6=None)
    world[u["Id"]] = u
    d.follow(client, _ev("container", "start", u["Id"], name="plain"))
    d.follow(client, _ev("network", "connect", u["Id"], "plain", name="othernet"))
    assert d.boxes() == (v2, boxes)
    # disconnected from its network: still a box (a freeze to see and heal), same addresses
    world[b["Id"]]["NetworkSettings"]["Networks"] = {}
    d.follow(client, _ev("network", "disconnect", b["Id"], "vobox2", name=NET))
    assert d.boxes()[1] == boxes
    # destroyed: gone
    del world[b["Id"]]
    d.follow(client, _ev("container", "destroy", b["Id"], name="vobox2"))
    v3, boxes = d.boxes()
    assert v3 > v2 and [x.name for x in boxes] == ["vobox1"] and changes[-1] == ([], ["vobox2"])


def test_the_pipeline_takes_a_new_box_set_between_cycles_and_drops_a_removed_boxs_state(tmp_path):
    from agent import wiring
    from agent.core.events import BoxSetChanged
    from tests.agent.test_pipeline import BOXES, make_agent, running

    agent, script, storage, rem = make_agent(tmp_path)
    base = agent.config
    newbox = C.box_from_table({"name": "disc1", "kind": "container", "ipv4": "192.0.2.99", "container": "disc1",
                               "network": "net1", "remediate": ["restart_container"]}, base)
    box_set = {"v": 1, "boxes": base.boxes}
    wiring.follow_box_set(agent.bus, agent, engine=rem.remediator)

    def follow():   # discovery publishes the new set; the pipeline takes it at its next cycle
        agent.bus.publish(BoxSetChanged(script.now, box_set["v"], box_set["boxes"]))
    follow()
    agent.run_cycle()
    box_set.update(v=2, boxes=base.boxes + (newbox,))
    follow()
    script.failing = {"192.0.2.99"}
    for _ in range(2):   # fail_cycles = 2: frozen, and handed to remediation like a configured box
        agent.run_cycle()
        script.now += 10
    assert agent.states["disc1"].state == "frozen"
    assert running(rem).get("disc1"), running(rem)   # the remediation engine knows the new box
    assert any(p.tags.get("box") == "disc1" and p.measurement == "box" for p in storage.points)
    with open(tmp_path / "state" / "status.json") as fh:
        assert "disc1" in json.load(fh)["boxes"]
    box_set.update(v=3, boxes=base.boxes)
    follow()
    script.failing = set()
    agent.run_cycle()
    assert "disc1" not in agent.states and set(agent.states) == set(BOXES)
    # removed while frozen: its freeze is closed in the data, not left open forever
    closed = [p for p in storage.points if p.measurement == "freeze" and p.tags.get("box") == "disc1"]
    assert closed and closed[-1].fields.get("open") in (False, 0), closed[-1]
    with open(tmp_path / "state" / "status.json") as fh:
        assert "disc1" not in json.load(fh)["boxes"]
    n = len([p for p in storage.points if p.tags.get("box") == "disc1"])
    agent.run_cycle()
    assert len([p for p in storage.points if p.tags.get("box") == "disc1"]) == n   # no longer probed


# --- issue 28: labels the image brings, digits, networks added (tests/cases/discovery-inherited-labels*) -----

def _inherited_case():
    base = os.path.join(os.path.dirname(__file__), "..", "..", "cases")
    with open(os.path.join(base, "discovery-inherited-labels-inspect.json"), encoding="utf-8") as f:
        inspect = json.load(f)["inspect"]
    with open(os.path.join(base, "discovery-inherited-labels.toml"), "rb") as f:
        config = C.parse(tomllib.load(f))
    return inspect, config


def test_inherited_image_labels_are_ignored_once_and_only_the_agents_labels_are_strict():
    inspect, config = _inherited_case()
    found = discover(inspect, config)
    assert [f.box.name for f in found.found] == ["vobox1", "vobox2", "vobox5"]
    by = {w.split(":", 1)[0]: w for w in found.warnings}
    assert set(by) == {"container vobox1", "container vobox2", "container vobox3", "container vobox4"}, found.warnings
    for n in ("vobox1", "vobox2"):   # reported once per container, both labels in one line; still monitored
        w = by[f"container {n}"]
        assert "labels vobox.maintainer, vobox.version ignored" in w and "not monitored" not in w, w
        assert [x for x in found.warnings if x.startswith(f"container {n}:")] == [w]
    assert "label vobox.ports='1093 8443'" in by["container vobox3"] and by["container vobox3"].endswith("not monitored")
    # Full-width digits are refused naming the label, never read as 1093.
    assert "label vobox.ports='１０９３,8443': expected comma-separated port numbers" in by["container vobox4"]
    assert all(f.box.tcp_ports == (1093,) for f in found.found)


@pytest.mark.parametrize("text", ["１０９３", "١٠٩٣", "1093,８４４３", "²"])
def test_digits_outside_ascii_are_refused_naming_the_label(text):
    found = discover([ctr("c1", ON | {"vobox.ports": text})], cfg())
    assert found.found == () and found.warnings[0].startswith(f"container c1: label vobox.ports={text!r}: expected")


def test_a_discovered_container_given_a_second_network_stays_the_same_box_live_and_at_start():
    """Live: discovered on its network, then `docker network connect backnet` while it runs. At start (a restarted
    agent) with that engine state: the same box. Both warn once, naming vobox.network."""
    a = ctr("vobox1", ON)
    a["HostConfig"] = {"NetworkMode": NET}
    world = {a["Id"]: a}
    client = _Client(world)
    live = DockerDiscovery(cfg())
    live.follow(client, None)
    _, before = live.boxes()
    world[a["Id"]]["NetworkSettings"]["Networks"]["backnet"] = {
        "IPAddress": "198.18.0.5", "GlobalIPv6Address": "", "MacAddress": "02:42:c6:12:00:05"}
    live.follow(client, _docker_ev("network", "connect", a["Id"], name="backnet"))
    _, after_live = live.boxes()
    assert after_live == before and after_live[0].network == NET
    restarted = DockerDiscovery(cfg())
    restarted.follow(client, None)
    assert restarted.boxes()[1] == after_live
    assert any("vobox.network" in w for w in restarted._warned)
