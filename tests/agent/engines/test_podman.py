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
        ("kill", "vbleng-c1", None), ("die", "vbleng-c1", "137"),
        ("cleanup", "vbleng-c1", None),                                     # conmon's cleanup after an exit
        ("start", "vbleng-c1", None), ("die", "vbleng-c1", "137"),          # a compat-API stop: no stop event
        ("cleanup", "vbleng-c1", None),
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


# --- `podman stop` without a stop event: its second cleanup (agent.engines.events.cleanup_request) -----------

def _podman(action, t_s, **attrs):
    return ENGINES["podman"].decode({"Type": "container", "Action": action, "timeNano": int(t_s * 1e9),
                                     "Actor": {"ID": CID, "Attributes": {"name": "c", **attrs}}})


def _exit_then(cleanups_at_s, exit_code="0"):
    """Live: running, a die at 100 s with EXIT_CODE, then cleanups at CLEANUPS_AT_S (the stream's order)."""
    st = advance(ContainerState("running", container_id=CID), _podman("died", 100.0, containerExitCode=exit_code),
                 ours=False, cgroup_version=2)
    for t_s in cleanups_at_s:
        st = advance(st, _podman("cleanup", t_s), ours=False, cgroup_version=2)
    return st


# Measured on Podman 4.3.1 (events.log): `podman stop` of a service exiting 0 on SIGTERM: died, cleanup +14 ms,
# cleanup +85 ms; a stop needing SIGKILL: stop, died 137, cleanup, cleanup; an exit on its own: died, cleanup.
@pytest.mark.parametrize("cleanups, code, operator", [
    pytest.param((100.014, 100.085), "0", True, id="podman-stop-exit0-two-cleanups"),
    pytest.param((100.020, 100.040), "137", True, id="podman-stop-sigkill-after-timeout-two-cleanups"),
    pytest.param((100.014, 100.085), "143", True, id="podman-stop-exit143-two-cleanups"),
    pytest.param((100.016,), "0", False, id="exit-on-its-own-one-cleanup"),
    pytest.param((100.016,), "137", False, id="crash-sigkill-one-cleanup"),
    pytest.param((100.016, 160.0), "1", False, id="a-cleanup-a-minute-later-is-no-stop"),
])
def test_a_second_cleanup_after_a_podman_exit_is_a_podman_stop(cleanups, code, operator):
    st = _exit_then(cleanups, code)
    assert st.state == "exited" and st.operator_stopped is operator and st.exit_code == int(code), st
    if operator:
        assert st.reason.startswith("stopped by operator: podman stop (its second cleanup event after the exit"), \
            st.reason
        assert "Podman 4.3 records no stop event" in st.reason and "1970-01-01T00:01:40Z" in st.reason
    else:
        assert st.reason.startswith(f"failed: exit {code}"), st.reason


def test_a_second_cleanup_changes_nothing_when_a_stop_or_oom_was_seen():
    """A `stop` event names the exit already; an OOM stays a failure; a cleanup of a running container is none."""
    st = advance(ContainerState("running", container_id=CID), _podman("stop", 99.9), ours=False)
    st = advance(st, _podman("died", 100.0, containerExitCode="0"), ours=False)
    reason = st.reason
    for t_s in (100.01, 100.02):
        st = advance(st, _podman("cleanup", t_s), ours=False)
    assert st.operator_stopped and st.reason == reason == "stopped by operator: podman stop at 1970-01-01T00:01:40Z "\
        "(exit 0 (ended on its own))"
    oom = advance(ContainerState("running", container_id=CID), _podman("oom", 99.99), ours=False)
    oom = advance(oom, _podman("died", 100.0, containerExitCode="137"), ours=False)
    for t_s in (100.01, 100.02):
        oom = advance(oom, _podman("cleanup", t_s), ours=False)
    assert not oom.operator_stopped and oom.reason.startswith("failed: exit 137, OOM-killed")
    running = ContainerState("running", container_id=CID)
    assert advance(advance(running, _podman("cleanup", 1.0), ours=False), _podman("cleanup", 1.1),
                   ours=False) == running


def test_a_second_cleanup_inside_our_window_is_the_agents_own_stop():
    st = advance(ContainerState("running", container_id=CID), _podman("died", 100.0, containerExitCode="0"),
                 ours=False)
    st = advance(advance(st, _podman("cleanup", 100.01), ours=True), _podman("cleanup", 100.02), ours=True)
    assert not st.operator_stopped and st.reason.startswith("stopped by the agent's remediation: podman stop (its "
                                                            "second cleanup"), st.reason


@pytest.mark.parametrize("cleanups", [(100.014, 100.085), (100.016,)], ids=["stop", "exit-on-its-own"])
def test_a_podman_exit_reads_the_same_at_resync_as_live(cleanups):
    """The resync replays the engine's history around FinishedAt through the same rule (one reading)."""
    from agent.engines.watcher import state_from_inspect

    attrs = {"Id": CID, "State": {"Status": "exited", "ExitCode": 0, "OOMKilled": False,
                                  "StartedAt": "1970-01-01T00:00:10Z", "FinishedAt": "1970-01-01T00:01:40Z"}}
    # The history holds an earlier exit's two cleanups too (30 s before): they concern that exit, not this one.
    history = [_podman("cleanup", 70.01), _podman("cleanup", 70.02), _podman("died", 100.0, containerExitCode="0")]
    history += [_podman("cleanup", t_s) for t_s in cleanups]
    at_resync = state_from_inspect(attrs, history=history, cgroup_version=2)
    live = _exit_then(cleanups)
    assert (at_resync.state, at_resync.operator_stopped, at_resync.reason) == \
        (live.state, live.operator_stopped, live.reason)
    gap = state_from_inspect(attrs, history=history, cgroup_version=2, unseen=(50.0, 200.0))
    assert gap.operator_stopped is live.operator_stopped
    if len(cleanups) == 2:   # the stop is named in the gap too
        assert gap.reason == live.reason, gap.reason
    else:
        assert "while the agent did not see the engine's events" in gap.reason, gap.reason


def test_the_watcher_records_the_exit_again_when_its_second_cleanup_names_the_stop():
    """The die is recorded (a failure so far); the second cleanup re-judges it and the die's record is written
    again at the die's time (its container_event point is rewritten), now operator intent."""
    from agent.engines.watcher import DockerEventWatcher
    from remediations.model import RemediationTarget

    records = []
    w = DockerEventWatcher([RemediationTarget(box="b", kind="container", container="c", network="n")],
                           lambda: None, records.append)
    w.holders = {"c": CID}
    w.states.set("b", ContainerState("running", since_s=1.0, container_id=CID), synced_s=0.0)
    for e in (_podman("died", 100.0, containerExitCode="0"), _podman("cleanup", 100.014),
              _podman("cleanup", 100.085)):
        w.handle(None, e)
    assert [(r.event, r.time_s, r.operator) for r in records] == [("die", 100.0, False), ("die", 100.0, True)]
    assert records[-1].container_state == "exited" and records[-1].exit_code == 0
    assert "stopped by operator: podman stop (its second cleanup" in records[-1].detail
    assert w.states()["b"].operator_stopped
