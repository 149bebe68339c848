"""The engine-neutral rules: Docker decoding, identity by name, the one reading of an exit; replays of the cases.

Cases (tests/cases/): engine-events-compose-v1-recreate.jsonl, engine-events-rename-run-rm.jsonl (a box's
container replaced by a new one of the same name), engine-resync-exit-codes.json (exits re-read at start).
"""
from __future__ import annotations

import json
import pathlib

import pytest

from agent.engines.docker import decode as from_docker
from agent.engines.events import (
    EngineEvent,
    ExitEvidence,
    follow_names,
    judge_exit,
    stop_request,
)
from agent.engines.watcher import (
    ContainerState,
    ContainerStates,
    DockerEventWatcher,
    advance,
    state_from_inspect,
)
from remediations.model import RemediationTarget

CASES = pathlib.Path(__file__).resolve().parents[2] / "cases"
OLD, NEW, OTHER = "old" * 3, "new" * 3, "oth" * 3


def ev(kind, cid, name="", t=0.0, **attrs):
    return EngineEvent(kind, cid, name, {k: str(v) for k, v in attrs.items()}, t)


# --- decoding ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,want", [
    pytest.param({"Type": "container", "Action": "die", "timeNano": 1_700_000_000_500_000_000,
                  "Actor": {"ID": "abc", "Attributes": {"name": "vobox1", "exitCode": "137"}}},
                 ("die", "abc", "vobox1", 137, 1_700_000_000.5), id="die"),
    pytest.param({"Type": "container", "Action": "rename", "time": 5,
                  "Actor": {"ID": "abc", "Attributes": {"name": "vobox1.bak", "oldName": "/vobox1"}}},
                 ("rename", "abc", "vobox1.bak", None, 5.0), id="rename-old-name-without-slash"),
    pytest.param({"Type": "container", "Action": "health_status: unhealthy", "time": 5,
                  "Actor": {"ID": "abc", "Attributes": {"name": "vobox1"}}},
                 ("health_status", "abc", "vobox1", None, 5.0), id="health"),
    pytest.param({"Type": "network", "Action": "disconnect", "time": 5,
                  "Actor": {"ID": "net", "Attributes": {"container": "abc", "name": "docknet"}}},
                 ("network_disconnect", "abc", "", None, 5.0), id="network-names-the-container-by-id"),
    pytest.param({"Type": "container", "Action": "exec_start: sh", "time": 5, "Actor": {"ID": "abc"}}, None,
                 id="exec-is-no-kind"),
    pytest.param({"Type": "image", "Action": "pull", "time": 5, "Actor": {"ID": "x"}}, None, id="image"),
])
def test_from_docker(raw, want):
    got = from_docker(raw)
    assert (got if got is None else (got.kind, got.container_id, got.name, got.exit_code, got.time_s)) == want
    if got is not None and got.kind == "rename":
        assert got.attrs["old_name"] == "vobox1"
    if got is not None and got.kind == "health_status":
        assert got.attrs["health"] == "unhealthy"


# --- identity by name -------------------------------------------------------------------------------------

@pytest.mark.parametrize("holders,event,after,concerns", [
    pytest.param({"v": OLD}, ev("die", OLD, "v"), {"v": OLD}, {"v"}, id="holder-event-concerns-its-name"),
    pytest.param({"v": OLD}, ev("start", NEW, "v"), {"v": NEW}, {"v"}, id="new-container-takes-the-name"),
    pytest.param({"v": NEW}, ev("destroy", OLD, "0ld_v"), {"v": NEW}, set(), id="old-one-removed-later"),
    pytest.param({"v": NEW}, ev("die", OLD, "v"), {"v": NEW}, set(), id="old-one-dies-after-replacement"),
    pytest.param({"v": OLD}, ev("rename", OLD, "v.bak", old_name="v"), {"v.bak": OLD}, {"v", "v.bak"},
                 id="renamed-away-concerns-the-old-name"),
    pytest.param({"v": OLD}, ev("rename", NEW, "v", old_name="v2"), {"v": NEW}, {"v"}, id="renamed-into"),
    pytest.param({"v": OLD}, ev("destroy", OLD, "v"), {}, {"v"}, id="destroy-frees-the-name"),
    pytest.param({}, ev("pause", OTHER, "v"), {"v": OTHER}, {"v"}, id="unheld-name-adopted"),
    pytest.param({"v": OLD}, ev("network_disconnect", OLD), {"v": OLD}, {"v"}, id="network-by-id"),
    pytest.param({"v": NEW}, ev("network_disconnect", OLD), {"v": NEW}, set(), id="network-of-old-one"),
])
def test_follow_names(holders, event, after, concerns):
    got, names = follow_names(holders, event)
    assert (got, set(names)) == (after, concerns)


# --- the one reading of an exit ---------------------------------------------------------------------------

T = 1762136047.0   # 2025-11-03T02:14:07Z


@pytest.mark.parametrize("evidence,operator,reason", [
    pytest.param(ExitEvidence(137, T, oom=True, request="docker kill (signal 9)"), False,
                 "failed: exit 137, OOM-killed at 2025-11-03T02:14:07Z", id="oom-beats-any-request"),
    pytest.param(ExitEvidence(143, T, request="docker stop"), True,
                 "stopped by operator: docker stop at 2025-11-03T02:14:07Z (exit 143, killed by signal 15 (SIGTERM))",
                 id="operator-stop"),
    pytest.param(ExitEvidence(0, T, request="docker stop"), True,
                 "stopped by operator: docker stop at 2025-11-03T02:14:07Z (exit 0 (ended on its own))",
                 id="operator-stop-service-exits-0"),
    pytest.param(ExitEvidence(143, T, request="docker stop", ours=True), False,
                 "stopped by the agent's remediation: docker stop at", id="our-stop"),
    pytest.param(ExitEvidence(137, T, cgroup_version=2), False,
                 "failed: exit 137, killed (OOM or SIGKILL) at 2025-11-03T02:14:07Z", id="137-cgroup2-ambiguous"),
    pytest.param(ExitEvidence(137, T, cgroup_version=None), False, "killed (OOM or SIGKILL)",
                 id="137-cgroup-unknown-ambiguous"),
    pytest.param(ExitEvidence(137, T, cgroup_version=1), False, "killed (SIGKILL; not an OOM kill", id="137-cgroup1"),
    pytest.param(ExitEvidence(143, T), False, "failed: exit 143, killed by signal 15 (SIGTERM)",
                 id="sigterm-no-request-is-a-failure"),
    pytest.param(ExitEvidence(0, T), False, "failed: exit 0 (ended on its own)", id="exit0-no-request"),
    pytest.param(ExitEvidence(1, T), False, "failed: exit 1 at", id="crash"),
    pytest.param(ExitEvidence(143, T, unseen=(T - 60, T + 60)), False,
                 "while the agent did not see the engine's events (2025-11-03T02:13:07Z to 2025-11-03T02:15:07Z)",
                 id="exit-in-unseen-span-says-so"),
])
def test_judge_exit(evidence, operator, reason):
    got = judge_exit(evidence)
    assert got.operator is operator
    assert reason in got.reason


@pytest.mark.parametrize("event,want", [
    pytest.param(ev("stop", "c"), "docker stop", id="stop"),
    pytest.param(ev("kill", "c", signal=15), "docker kill (signal 15)", id="sigterm"),
    pytest.param(ev("kill", "c", signal="SIGKILL"), "docker kill (signal SIGKILL)", id="sigkill-name"),
    pytest.param(ev("kill", "c", signal=1), None, id="hup-reload-is-no-stop"),
    pytest.param(ev("die", "c", exit_code=1), None, id="die"),
])
def test_stop_request(event, want):
    assert stop_request(event) == want


def test_live_stop_reason_names_docker_stop_after_the_die():
    """dockerd's order for `docker stop`: kill 15, die, stop; the die is judged from the kill, the stop names it."""
    st = ContainerState("running", container_id="c")
    st = advance(st, ev("kill", "c", "v", T - 1, signal=15), ours=False)
    assert st.state == "running" and not st.operator_stopped
    st = advance(st, ev("die", "c", "v", T, exit_code=0), ours=False)
    assert st.operator_stopped and st.reason.startswith("stopped by operator: docker kill (signal 15) at")
    st = advance(st, ev("stop", "c", "v", T), ours=False)
    assert (st.state, st.operator_stopped, st.exit_code) == ("exited", True, 0)
    assert st.reason.startswith("stopped by operator: docker stop at 2025-11-03T02:14:07Z")


# --- replays of the cases ---------------------------------------------------------------------------------

def replay(path: pathlib.Path):
    """Feed a case's events to a watcher seeded as its resync would be; the watcher and the records."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    meta, raws = lines[0], lines[1:]
    records = []
    w = DockerEventWatcher([RemediationTarget(box="vobox1", kind="container", container="vobox1",
                                              network="docknet")], lambda: None, records.append)
    old = meta["_ids_at_resync"]["vobox1"]
    w.holders = {"vobox1": old}
    w.states.set("vobox1", ContainerState("running", since_s=1.0, container_id=old), synced_s=0.0)
    for raw in raws:
        e = from_docker(raw)
        assert e is not None
        w.handle(None, e)
    return w, records, meta


@pytest.mark.parametrize("case", ["engine-events-compose-v1-recreate.jsonl", "engine-events-rename-run-rm.jsonl"])
def test_replacement_by_name_replay(case):
    """The old container's stop is the box's (an operator stop); the new container is the box from its start;
    the old one's removal changes nothing; a pause of the new container is seen."""
    w, records, meta = replay(CASES / case)
    st = w.states()["vobox1"]
    assert (st.state, st.operator_stopped, st.container_id) == ("running", False, meta["_running_after"]), st
    assert w.holders == {"vobox1": meta["_running_after"]}
    events = [r.event for r in records]
    assert "destroy" not in events, [(r.event, r.detail) for r in records]
    stop = next(r for r in records if r.event == "stop")
    assert stop.operator and stop.container_state == "exited" and "stopped by operator: docker stop" in stop.detail
    assert records[-1].event == "start" and records[-1].container_state == "running"
    w.handle(None, ev("pause", meta["_running_after"], "vobox1", 1796600000.0))
    assert w.states()["vobox1"].state == "paused"


def exit_cases():
    data = json.loads((CASES / "engine-resync-exit-codes.json").read_text())
    return data, {k: v for k, v in data.items() if not k.startswith("_")}


@pytest.mark.parametrize("cgroup", [1, 2, None])
def test_resync_exit_codes_replay_same_reading_as_live(cgroup):
    """The same exit reads the same live and at resync; without a stop request it is a failure."""
    data, cases = exit_cases()
    for key, attrs in cases.items():
        st = state_from_inspect(attrs, cgroup_version=cgroup)
        assert st.state == "exited" and st.operator_stopped is False, (key, st)
    a = state_from_inspect(cases["A-oom-cgroup2"], cgroup_version=cgroup)
    want = "killed (SIGKILL; not an OOM kill" if cgroup == 1 else "killed (OOM or SIGKILL)"
    assert a.reason.startswith("failed: exit 137") and want in a.reason and "2025-11-03T02:14:07Z" in a.reason
    live = advance(ContainerState("running", container_id=cases["A-oom-cgroup2"]["Id"]),
                   from_docker(data["_events_A_live"][0]), ours=False, cgroup_version=cgroup)
    assert (live.state, live.operator_stopped, live.exit_code, live.reason) == \
        (a.state, a.operator_stopped, a.exit_code, a.reason)


def test_resync_reads_the_engine_history_and_the_persisted_state(tmp_path):
    """B (exit 0 after a docker stop) and D (docker kill) are operator stops when the engine's history names
    the request, or when the persisted last-known state judged that very exit; without either, failures."""
    _, cases = exit_cases()
    b, d = cases["B-stop-exit0"], cases["D-kill-sigkill"]
    fin = 1762136047.0
    hist_b = [ev("kill", b["Id"], "vobox2", fin - 0.5, signal=15), ev("die", b["Id"], "vobox2", fin, exit_code=0),
              ev("stop", b["Id"], "vobox2", fin)]
    st = state_from_inspect(b, history=hist_b, cgroup_version=2)
    assert st.operator_stopped and st.reason.startswith("stopped by operator: docker stop at 2025-11-03T02:14:07Z")
    st = state_from_inspect(d, history=[ev("kill", d["Id"], "vobox4", fin - 0.1, signal=9)], cgroup_version=2)
    assert st.operator_stopped and "docker kill (signal 9)" in st.reason
    old = [ev("kill", d["Id"], "vobox4", fin - 3600, signal=9)]   # an hour before: not about this exit
    assert not state_from_inspect(d, history=old).operator_stopped
    ours = state_from_inspect(d, history=[ev("kill", d["Id"], "vobox4", fin - 0.1, signal=9)],
                              is_ours=lambda e: True)
    assert not ours.operator_stopped and "agent's remediation" in ours.reason
    # Persisted: the exit was judged live (operator), the agent restarted, the engine's history is gone.
    path = tmp_path / "containers.json"
    cache = ContainerStates(str(path))
    live = advance(advance(ContainerState("running", container_id=b["Id"]),
                           ev("stop", b["Id"], "vobox2", fin - 1), ours=False),
                   ev("die", b["Id"], "vobox2", fin, exit_code=0), ours=False)
    cache.set("vobox2", live, 0.0)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = ContainerStates(str(path))
    st = state_from_inspect(b, last=again.last_known("vobox2"))
    assert st.operator_stopped and st.reason == live.reason
    # A later exit of the same container is judged afresh.
    later = {**b, "State": {**b["State"], "FinishedAt": "2025-11-04T00:00:00Z"}}
    assert not state_from_inspect(later, last=again.last_known("vobox2")).operator_stopped
    # Exit inside a span the agent did not see, nothing in the history: a failure that says so.
    st = state_from_inspect(b, unseen=(fin - 100, fin + 100))
    assert not st.operator_stopped and "did not see the engine's events" in st.reason


def test_exits_inside_the_unseen_span_are_read_from_the_history_not_from_how_they_looked_live():
    """An engine stop (no live-restore) stops its containers the way `docker stop` does, maybe while the stream
    still delivers: the live reading ("stopped by operator") of an exit inside the span the agent did not see
    is not kept; with the engine restarted (no history) it is a failure, repaired."""
    _, cases = exit_cases()
    b = cases["B-stop-exit0"]
    fin = 1762136047.0
    live = advance(advance(ContainerState("running", container_id=b["Id"]), ev("stop", b["Id"], "vobox2", fin - 1),
                           ours=False), ev("die", b["Id"], "vobox2", fin, exit_code=0), ours=False)
    assert live.operator_stopped
    gap = (fin - 15.0, fin + 30.0)   # the stream was lost at fin: ENGINE_STOP_LEAD_S before it counts
    st = state_from_inspect(b, last=live, unseen=gap)
    assert not st.operator_stopped and "engine stop or restart?" in st.reason
    # The engine did not restart (only the stream was lost): its history names the stop, an operator's.
    hist = [ev("kill", b["Id"], "vobox2", fin - 0.5, signal=15), ev("stop", b["Id"], "vobox2", fin)]
    assert state_from_inspect(b, last=live, unseen=gap, history=hist).operator_stopped
    # An exit before the span keeps its live reading.
    assert state_from_inspect(b, last=live, unseen=(fin + 1, fin + 30)).operator_stopped


def test_a_sigkills_kill_event_may_trail_its_die_and_still_names_the_request():
    """dockerd logs `kill` after delivering the signal: for SIGKILL the `die` can come first (seen here under load).
    A request within REQUEST_AFTER_EXIT_S of the exit is its cause; a kill long after changes nothing."""
    st = ContainerState("running", container_id="c")
    st = advance(st, ev("die", "c", "v", T, exit_code=137), ours=False, cgroup_version=1)
    assert not st.operator_stopped and st.reason.startswith("failed: exit 137, killed (SIGKILL")
    late = advance(st, ev("kill", "c", "v", T + 0.01, signal=9), ours=False, cgroup_version=1)
    assert late.operator_stopped and late.reason.startswith("stopped by operator: docker kill (signal 9) at")
    much_later = advance(st, ev("kill", "c", "v", T + 60, signal=9), ours=False)
    assert much_later == st
    oom = advance(advance(ContainerState("running"), ev("oom", "c", "v", T), ours=False),
                  ev("die", "c", "v", T, exit_code=137), ours=False)
    assert not advance(oom, ev("kill", "c", "v", T + 0.01, signal=9), ours=False).operator_stopped
