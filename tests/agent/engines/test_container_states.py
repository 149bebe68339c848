"""The container state cache's pure parts: event -> state table, inspect -> state, expected events, resync order."""
from __future__ import annotations

import pytest

from agent.engines.watcher import ContainerState, ContainerStates, ExpectedEvents, next_state, state_from_inspect
from remediations.model import ContainerEventRecord

RUN = ContainerState("running", since_s=1.0)


def run_events(seq, ours=False, start=RUN):
    """Feed (event, action, signal, exit_code) tuples at times 10, 20, ...; the final state."""
    st = start
    for i, (event, action, signal, code) in enumerate(seq):
        st = next_state(st, event, action, 10.0 * (i + 1), code, ours, signal)
    return st


@pytest.mark.parametrize("seq,ours,want", [
    pytest.param([("pause", "pause", None, None)], False, ("paused", None, False, False), id="pause"),
    pytest.param([("pause", "pause", None, None), ("unpause", "unpause", None, None)], False,
                 ("running", None, False, False), id="unpause"),
    pytest.param([("kill", "kill", "15", None), ("die", "die", None, 143), ("stop", "stop", None, None)], False,
                 ("exited", None, False, True), id="docker-stop-by-hand-is-operator"),
    pytest.param([("kill", "kill", "9", None), ("die", "die", None, 137)], False,
                 ("exited", None, False, True), id="docker-kill-by-hand-is-operator"),
    pytest.param([("kill", "kill", "15", None), ("die", "die", None, 143), ("stop", "stop", None, None)], True,
                 ("exited", None, False, False), id="our-own-stop-is-not-operator"),
    pytest.param([("die", "die", None, 1)], False, ("exited", None, False, False), id="crash-is-not-operator"),
    pytest.param([("oom", "oom", None, None), ("die", "die", None, 137)], False,
                 ("exited", None, True, False), id="oom-kill-is-not-operator"),
    pytest.param([("kill", "kill", "1", None)], False, ("running", None, False, False), id="kill-hup-reload"),
    pytest.param([("kill", "kill", "15", None), ("die", "die", None, 143), ("start", "start", None, None)], False,
                 ("running", None, False, False), id="started-again-clears-operator"),
    pytest.param([("die", "die", None, 1), ("start", "start", None, None)], False,
                 ("running", None, False, False), id="restart-policy-restart"),
    pytest.param([("kill", "kill", "9", None), ("die", "die", None, 137), ("destroy", "destroy", None, None)], False,
                 ("removed", None, False, True), id="removed-by-hand"),
    pytest.param([("health_status", "health_status: unhealthy", None, None)], False,
                 ("running", "unhealthy", False, False), id="unhealthy"),
    pytest.param([("health_status", "health_status: unhealthy", None, None), ("pause", "pause", None, None),
                  ("unpause", "unpause", None, None)], False,
                 ("running", "unhealthy", False, False), id="unpause-keeps-health"),
    pytest.param([("health_status", "health_status: unhealthy", None, None), ("die", "die", None, 1),
                  ("start", "start", None, None)], False, ("running", None, False, False), id="start-resets-health"),
])
def test_next_state_table(seq, ours, want):
    st = run_events(seq, ours)
    assert (st.state, st.health, st.oom_killed, st.operator_stopped) == want
    assert st.since_s is not None


INSPECT = {"State": {"Status": "running", "Running": True, "Paused": False, "OOMKilled": False, "ExitCode": 0,
                     "StartedAt": "2026-11-30T17:00:00.5Z", "FinishedAt": "0001-01-01T00:00:00Z"}}


@pytest.mark.parametrize("state,want", [
    pytest.param({}, ("running", None, False, False, None), id="running"),
    pytest.param({"Status": "paused", "Paused": True}, ("paused", None, False, False, None), id="paused"),
    pytest.param({"Health": {"Status": "unhealthy"}}, ("running", "unhealthy", False, False, None), id="unhealthy"),
    pytest.param({"Status": "exited", "ExitCode": 143, "FinishedAt": "2026-11-30T17:05:00.123456789Z"},
                 ("exited", None, False, False, 143), id="exited-sigterm-no-evidence-is-a-failure"),
    pytest.param({"Status": "exited", "ExitCode": 137, "OOMKilled": True, "FinishedAt": "2026-11-30T17:05:00Z"},
                 ("exited", None, True, False, 137), id="oom-killed-not-operator"),
    pytest.param({"Status": "exited", "ExitCode": 2, "FinishedAt": "2026-11-30T17:05:00Z"},
                 ("exited", None, False, False, 2), id="crashed"),
    pytest.param({"Status": "restarting"}, ("restarting", None, False, False, None), id="restarting"),
])
def test_state_from_inspect(state, want):
    st = state_from_inspect({"State": {**INSPECT["State"], **state}})
    assert (st.state, st.health, st.oom_killed, st.operator_stopped, st.exit_code) == want
    if want[0] == "exited":
        assert st.since_s == pytest.approx(1796058300.0 + (0.123456789 if "123" in state["FinishedAt"] else 0))
    else:
        assert st.since_s == pytest.approx(1796058000.5)


def test_expected_events_window():
    now = [100.0]
    ex = ExpectedEvents(clock=lambda: now[0])
    assert not ex.is_expected(["ctr1"], 100.0)
    ex.expect("ctr1", 30.0)
    assert ex.is_expected(["ctr1", None], 129.0)
    assert not ex.is_expected(["ctr1"], 131.0)
    assert not ex.is_expected(["ctr2", "abc"], 110.0)


def rec(event, time_s, action=None, signal=None):
    return ContainerEventRecord("b1", "container", event, action or event, None, "", time_s, signal=signal)


def test_cache_ignores_events_older_than_resync_and_network_events():
    cache = ContainerStates()
    cache.set("b1", ContainerState("paused", since_s=50.0), synced_s=100.0)
    assert cache.apply(rec("unpause", 99.0), ours=False) == ContainerState("paused", since_s=50.0)
    assert cache.apply(rec("network_disconnect", 120.0), ours=False) is None
    assert cache.apply(rec("resync", 120.0), ours=False) is None
    assert cache.apply(rec("unpause", 101.0), ours=False).state == "running"
    assert cache()["b1"].state == "running"
