"""Podman's events, identity and socket, from what Podman 4.3.1 really sends (tests/data/podman-4.3-events.jsonl:
the compat API's `/events` stream captured here over run, pause, unpause, disconnect + connect (twice), restart,
kill, start, stop, start, rename, rm -f of one container)."""
from __future__ import annotations

import json
import pathlib

import pytest

from agent.engines import ENGINES, identify
from agent.engines.client import NoEngineSocket, choose_socket
from agent.engines.events import follow_names
from agent.engines.watcher import ContainerState, advance

DATA = pathlib.Path(__file__).resolve().parents[2] / "data"
RAW = [json.loads(line) for line in (DATA / "podman-4.3-events.jsonl").read_text().splitlines() if line.strip()]
CID = "f3f755ceef11ec3fd35fae42153bca78711c3a37dfb4cd85379621e8a11e83f4"


def decoded():
    return [e for e in (ENGINES["podman"].decode(r) for r in RAW) if e is not None]


def test_podman_events_decode_to_the_engine_neutral_kinds():
    got = [(e.kind, e.name, e.attrs.get("exit_code")) for e in decoded()]
    assert got == [
        ("create", "vbleng-c1", None), ("start", "vbleng-c1", None),       # init and the image pull dropped
        ("pause", "vbleng-c1", None), ("unpause", "vbleng-c1", None),
        ("network_disconnect", "vbleng-c1", None), ("network_connect", "vbleng-c1", None),
        ("network_disconnect", "vbleng-c1", None), ("network_connect", "vbleng-c1", None),
        ("restart", "vbleng-c1", None), ("stop", "vbleng-c1", None), ("die", "vbleng-c1", "137"),
        ("start", "vbleng-c1", None),
        ("kill", "vbleng-c1", None), ("die", "vbleng-c1", "137"),           # cleanup dropped
        ("start", "vbleng-c1", None), ("die", "vbleng-c1", "137"),          # a compat-API stop: no stop event
        ("start", "vbleng-c1", None),
        ("rename", "vbleng-c1old", None), ("stop", "vbleng-c1old", None), ("die", "vbleng-c1old", "137"),
        ("destroy", "vbleng-c1old", None),                                  # Podman's `remove`
    ]
    # a network event's Actor is the CONTAINER (dockerd: the network); the network is not named
    net = [e for e in decoded() if e.kind.startswith("network_")]
    assert {e.container_id for e in net} == {CID} and {e.attrs["network"] for e in net} == {""}
    # the labels ride along for discovery
    assert decoded()[0].attributes["vobox.box"] == "c1"


def test_dockerd_decoder_would_misread_podman_network_events():
    """Why one decoder per engine: dockerd's reads Podman's container name as the network and finds no container."""
    e = ENGINES["docker"].decode(next(r for r in RAW if r["Type"] == "network"))
    assert e is not None and e.container_id == "" and e.attrs["network"] == "vbleng-c1"


def test_podman_replay_identity_and_state():
    """The box follows its container by name through every event; the rename (which names only the new name)
    gives the name up, so the rm -f of the renamed container concerns no box."""
    holders: dict[str, str] = {}
    state: ContainerState | None = None
    trail = []
    for ev in decoded():
        holders, names = follow_names(holders, ev)
        if "vbleng-c1" in names:
            state = advance(state, ev, ours=False, cgroup_version=1)
            trail.append((ev.kind, state.state))
    assert holders == {}   # removed
    assert ("restart", "running") in trail and ("network_disconnect", "running") in trail
    i = trail.index(("restart", "running"))
    assert [s for _, s in trail[i:i + 4]] == ["running", "running", "exited", "running"]   # restart/stop/die/start
    assert trail[-1] == ("rename", "removed")   # stop, die and remove of vbleng-c1old concern no box
    # `podman stop` emits stop BEFORE die: the die is read as a stop request, operator intent
    assert state is not None and state.operator_stopped


def test_podman_health_status_event_is_dropped():
    """4.3.1 writes health_status with the status before the check: never read as the box's health."""
    raw = {"Type": "container", "Action": "health_status", "Actor": {"ID": CID, "Attributes": {"name": "x"}},
           "timeNano": 1}
    assert ENGINES["podman"].decode(raw) is None


@pytest.mark.parametrize("version, engine, text", [
    pytest.param({"Version": "4.3.1", "ApiVersion": "1.41", "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1"}, {"Name": "Conmon", "Version": "2.1.6"}]},
        "podman", "podman 4.3.1 (API 1.41)", id="podman"),
    pytest.param({"Version": "20.10.24", "ApiVersion": "1.41", "Components": [{"Name": "Engine",
                                                                                "Version": "20.10.24"}]},
                 "docker", "docker 20.10.24 (API 1.41)", id="dockerd"),
    pytest.param({}, "docker", "docker ? (API ?)", id="empty"),
])
def test_identify(version, engine, text):
    got = identify(version)
    assert got.engine == engine and str(got) == text


def test_traits_are_data_per_engine():
    docker, podman = ENGINES["docker"].traits, ENGINES["podman"].traits
    assert podman.honours_mac_on_connect("1.41") and not docker.honours_mac_on_connect("1.41")
    assert docker.honours_mac_on_connect("1.54")
    assert docker.restart_keeps_mac and not podman.restart_keeps_mac
    assert docker.health_events and not podman.health_events
    assert podman.event_actions is None and "die" in (docker.event_actions or ())


@pytest.mark.parametrize("env, configured, existing, url, source", [
    pytest.param({}, "/run/x.sock", set(), "unix:///run/x.sock", "[engine] socket", id="config-first"),
    pytest.param({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, None, {"/run/docker.sock"}, "tcp://127.0.0.1:2375",
                 "DOCKER_HOST", id="docker-host"),
    pytest.param({"CONTAINER_HOST": "unix:///run/user/0/podman/podman.sock"}, None, {"/run/docker.sock"},
                 "unix:///run/user/0/podman/podman.sock", "CONTAINER_HOST", id="container-host"),
    pytest.param({"CONTAINER_HOST": "ssh://root@h/run/podman/podman.sock"}, None, {"/run/podman/podman.sock"},
                 "unix:///run/podman/podman.sock", "default socket /run/podman/podman.sock",
                 id="container-host-ssh-ignored"),
    pytest.param({}, None, {"/run/docker.sock", "/run/podman/podman.sock"}, "unix:///run/docker.sock",
                 "default socket /run/docker.sock", id="docker-before-podman"),
    pytest.param({}, None, {"/run/podman/podman.sock"}, "unix:///run/podman/podman.sock",
                 "default socket /run/podman/podman.sock", id="el9"),
])
def test_choose_socket(env, configured, existing, url, source):
    got = choose_socket(env, configured, existing.__contains__)
    assert (got.url, got.source) == (url, source)


def test_no_socket_names_what_was_tried():
    with pytest.raises(NoEngineSocket, match=r"CONTAINER_HOST=ssh://h \(not unix://: ignored\), /run/docker.sock"):
        choose_socket({"CONTAINER_HOST": "ssh://h"}, None, lambda _p: False)


def test_engine_socket_config_key():
    from agent.core import config

    base = ('[influxdb]\nurl = "http://127.0.0.1:9"\n[[box]]\nname = "b"\nkind = "container"\n'
            'ipv4 = "192.0.2.10"\ncontainer = "c"\nnetwork = "n"\n')
    assert config.loads(base + '[engine]\nsocket = "/run/podman/podman.sock"\n').engine.socket == \
        "/run/podman/podman.sock"
    assert config.loads(base).engine.socket is None
    with pytest.raises(config.ConfigError) as exc:
        config.loads(base + '[engine]\nsocket = "podman.sock"\n')
    assert exc.value.errors == ('engine.socket: expected a socket path ("/run/podman/podman.sock") or URL '
                                '("unix://...", "tcp://host:port"), got "podman.sock"',)


def _kill_then_die(gap_s):
    kill = ENGINES["podman"].decode({"Type": "container", "Action": "kill", "timeNano": int(100e9),
                                     "Actor": {"ID": CID, "Attributes": {"name": "c"}}})
    die = ENGINES["podman"].decode({"Type": "container", "Action": "die", "timeNano": int((100 + gap_s) * 1e9),
                                    "Actor": {"ID": CID, "Attributes": {"name": "c", "exitCode": "137"}}})
    state = advance(ContainerState("running", container_id=CID), kill, ours=False, cgroup_version=1)
    assert state.state == "running" and state.request == "podman kill (signal not reported by the engine)"
    return advance(state, die, ours=False, cgroup_version=1)


@pytest.mark.parametrize("gap_s, operator", [
    pytest.param(0.047, True, id="podman-kill-then-die-at-once"),   # measured: kill -> die 47 ms
    pytest.param(600.0, False, id="a-reload-kill-then-a-crash-later"),
])
def test_a_kill_whose_signal_podman_does_not_report_is_a_stop_only_when_the_exit_follows(gap_s, operator):
    got = _kill_then_die(gap_s)
    assert got.state == "exited" and got.operator_stopped is operator, got.reason
    if operator:
        assert got.reason.startswith("stopped by operator: podman kill (signal not reported by the engine)")
    else:
        assert got.reason.startswith("failed: exit 137")


def test_podman_requests_are_named_as_the_operator_typed_them():
    from agent.engines.events import stop_request

    stop = next(e for e in decoded() if e.kind == "stop")
    assert stop_request(stop) == "podman stop"
    gone = next(e for e in decoded() if e.kind == "destroy")
    assert advance(ContainerState("exited"), gone, ours=False).reason.startswith("removed by operator: podman rm")
