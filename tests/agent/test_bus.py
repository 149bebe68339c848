"""The one door out (agent.bus): messages in, what the listeners received out (as Telegraf's testutil.Accumulator).

Pure: no sockets, no InfluxDB, no Docker. The wiring is checked by building it from a config.
"""
from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from agent import wiring
from agent.bus import Bus
from agent.core.config import loads
from agent.core.discovery import Found
from agent.core.events import BoxSetChanged, CycleEnded, CycleEvents, Event, FreezeOpened
from agent.listeners import CycleListener
from agent.listeners.metrics import MetricsListener
from remediations.model import ActionRecord, ContainerEventRecord, RemediationStatus
from tests.agent.test_pipeline import BOXES, RecordingStorage, config_text, make_agent, run


class Accumulator:
    """A recording listener: every message of the kinds it subscribes to, in the order received."""

    def __init__(self, name: str, kinds: tuple[type, ...]) -> None:
        self.name = name
        self.kinds = kinds
        self.received: list[Any] = []

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        return {kind: self.received.append for kind in self.kinds}

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]


def record(box: str = "a", outcome: str = "done", **kw: Any) -> ActionRecord:
    fields: dict[str, Any] = {"box": box, "kind": "container", "action": "restart_container", "trigger": "auto",
                              "ok": True, "recovered": True, "dry_run": False, "duration_s": 1.5,
                              "detail": "restarted", "time_s": 1_800_000_000.0, "outcome": outcome}
    fields.update(kw)
    return ActionRecord(**fields)


# ---- the bus itself ------------------------------------------------------------------------------------

def test_a_message_reaches_the_handlers_of_its_type_and_its_bases_in_subscription_order():
    bus, got = Bus(), []
    bus.subscribe(FreezeOpened, lambda m: got.append(("first", m.box)), name="first")
    bus.subscribe(Event, lambda m: got.append(("base", m.box)), name="base")
    bus.subscribe(FreezeOpened, lambda m: got.append(("second", m.box)), name="second")
    bus.subscribe(CycleEnded, lambda m: got.append(("other", None)), name="other")
    bus.publish(FreezeOpened("a", 10.0, 0.0, "l3", ()))
    assert got == [("first", "a"), ("second", "a"), ("base", "a")]
    bus.publish("nobody takes a str")   # no subscriber: nothing happens
    assert len(got) == 3


def test_a_raising_listener_is_logged_and_the_others_still_get_the_message(caplog):
    bus, got = Bus(), []

    def broken(message: object) -> None:
        raise RuntimeError("bug in a listener")

    bus.subscribe(ActionRecord, broken, name="broken")
    bus.subscribe(ActionRecord, got.append, name="fine")
    with caplog.at_level(logging.ERROR, logger="agent.bus"):
        bus.publish(record())
    assert got == [record()]
    assert "listener broken failed on ActionRecord" in caplog.text


def test_a_listener_subscribes_once():
    acc = Accumulator("acc", (ActionRecord,))
    bus = Bus([acc])
    with pytest.raises(ValueError, match="listener 'acc' is already subscribed"):
        bus.add(acc)
    bus.publish(record())
    assert acc.received == [record()]
    assert bus.subscribers() == {"ActionRecord": ["acc"]}


# ---- what the listeners receive ------------------------------------------------------------------------

def test_a_cycle_is_one_message_with_every_event_of_the_cycle_in_order(tmp_path):
    agent, script, _storage, _rem = make_agent(tmp_path)
    acc = Accumulator("acc", (CycleEvents, ActionRecord))
    agent.bus.add(acc)
    run(agent, script, ["a", "a"])   # fail_cycles = 2: frozen at the second cycle
    cycles = acc.of(CycleEvents)
    assert len(cycles) == 2 and all(isinstance(c.events[-1], CycleEnded) for c in cycles)
    assert [type(e).__name__ for e in cycles[1].events if getattr(e, "box", None) == "a"][:3] == \
        ["BoxObserved", "StateChanged", "FreezeOpened"]
    assert acc.of(ActionRecord) == []   # the service decided, its worker has not run: nothing recorded yet


def test_remediation_records_are_written_and_counted_as_decided_without_any_cycle(tmp_path):
    """The points and metrics listeners own the writes: a record reaches both at once, no probe loop running."""
    cfg = loads(config_text(str(tmp_path / "state")))
    storage, metrics = RecordingStorage(), MetricsListener({n: "container" for n in BOXES}, "test")
    bus = Bus(wiring.build_listeners(cfg, storage, metrics=metrics))
    from remediations import ActionContext, RemediationService, Remediator

    engine = Remediator(cfg.remediation.policy(), [b.remediation_target() for b in cfg.boxes],
                        reprobe=lambda box: True)
    service = RemediationService(engine, ActionContext(docker_factory=lambda: None), bus.publish)
    result = service.request("a", "no_such_action", "manual", who="ops")   # refused: recorded at once
    assert not result.accepted
    (point,) = [p for p in storage.points if p.measurement == "remediation"]
    assert point.tags["box"] == "a" and point.tags["outcome"] == "refused" and point.tags["trigger"] == "manual"
    refused = metrics.registry.get_sample_value(
        "vobox_remediations_total", {"box": "a", "kind": "container", "vobox_site": "test", "action": "no_such_action",
                                     "trigger": "manual", "result": "refused"})
    assert refused == 1.0
    assert not [p for p in storage.points if p.measurement in ("box", "agent")]   # no cycle ran


def test_engine_events_and_box_set_changes_become_points_and_reach_every_listener_at_once(tmp_path):
    cfg = loads(config_text(str(tmp_path / "state")))
    storage = RecordingStorage()
    metrics = MetricsListener({n: "container" for n in BOXES}, "test")
    listeners = wiring.build_listeners(cfg, storage, metrics=metrics)
    bus = Bus(listeners)
    bus.publish(ContainerEventRecord("a", "container", "resync", "resync", None, "state re-read after a gap",
                                     1_800_000_000.0, container_state="running"))
    (ev,) = [p for p in storage.points if p.measurement == "container_event"]
    assert ev.tags["box"] == "a" and ev.tags["event"] == "resync"

    new = cfg.boxes[0].__class__(**{**{f: getattr(cfg.boxes[0], f) for f in cfg.boxes[0].__dataclass_fields__},
                                    "name": "disc1", "ipv4": "192.0.2.99", "container": "disc1"})
    found = Found({"name": "disc1"}, new, "c0ffee", None)
    bus.publish(BoxSetChanged(1_800_000_010.0, 2, (*cfg.boxes[1:], new), added=(found,)))
    joined = [p for p in storage.points if p.measurement == "container_event" and p.tags["event"] == "discovered"]
    assert [p.tags["box"] for p in joined] == ["disc1"]
    assert "container disc1 joined the box set (192.0.2.99 on net1)" in joined[0].fields["detail"]
    points, status = listeners[0], listeners[-2]
    assert set(points.kinds) == set(status.kinds) == set(metrics.kinds) == {"b", "c", "disc1"}
    assert metrics.registry.get_sample_value("vobox_agent_boxes", {"vobox_site": "test"}) == 3
    assert metrics.registry.get_sample_value("vobox_box_up", {"box": "a", "kind": "container",
                                                              "vobox_site": "test"}) is None   # a's series removed


def test_a_new_box_set_reaches_the_pipeline_at_its_next_cycle_not_in_the_middle_of_one(tmp_path):
    agent, script, _storage, rem = make_agent(tmp_path)
    wiring.follow_box_set(agent.bus, agent, engine=rem.remediator)
    smaller = tuple(b for b in agent.config.boxes if b.name != "c")
    agent.bus.publish(BoxSetChanged(script.now, 2, smaller))
    assert set(agent.states) == set(BOXES)   # published: not taken yet
    assert set(rem.remediator.status(script.now)) == {"a", "b"}   # the engine follows at once
    run(agent, script, [""])
    assert set(agent.states) == {"a", "b"} and set(agent.prober.boxes) == {"a", "b"}
    with open(tmp_path / "state" / "status.json") as fh:
        assert set(json.load(fh)["boxes"]) == {"a", "b"}


class OnlyCycles(CycleListener):
    name = "only-cycles"

    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_events(self, events: Any) -> None:
        self.events.extend(events)


def test_a_cycle_listener_takes_cycles_only():
    listener, bus = OnlyCycles(), Bus()
    bus.add(listener)
    bus.publish(record())
    bus.publish(CycleEvents((CycleEnded(1.0, 0.0, 0, (), (), 0),)))
    assert [type(e).__name__ for e in listener.events] == ["CycleEnded"]


# ---- the wiring, built from a config -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_wiring_builds_the_listeners_and_services_the_config_asks_for(tmp_path):
    """remediation with its webhook, metrics, forensics: who is subscribed to what, which services run."""
    from agent.auditor import AuditService
    from agent.engines.watcher import DockerEventWatcher
    from agent.listeners.metrics import MetricsServer
    from remediations import RemediationService
    from remediations.webhook import WebhookReceiver

    webhook_port, metrics_port = free_port(), free_port()
    token = tmp_path / "token"
    token.write_text("s3cret-token-for-the-test\n")
    token.chmod(0o600)
    text = config_text(str(tmp_path / "state")).replace(
        "[remediation]\nenabled = true\n",
        f'[remediation]\nenabled = true\nwebhook_listen = "127.0.0.1:{webhook_port}"\n'
        f'webhook_token_file = "{token}"\n') + \
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n[forensics]\nenabled = true\n'
    assembly = wiring.assemble(loads(text), make_docker=lambda: pytest.fail("no Docker here"))
    try:
        assert [type(s) for s in assembly.services] == [MetricsServer, RemediationService, WebhookReceiver,
                                                        DockerEventWatcher, AuditService]
        assert [x.name for x in assembly.bus.listeners] == ["points", "evidence", "remediation", "status",
                                                            "metrics"]
        assert assembly.bus.subscribers() == {
            "CycleEvents": ["points", "evidence", "remediation", "status", "metrics"],
            "ActionRecord": ["points", "metrics"],
            "ContainerEventRecord": ["points", "audit"],
            "RemediationStatus": ["status", "metrics"],
            "BoxSetChanged": ["points", "evidence", "status", "metrics", "audit", "pipeline", "flight recorder",
                              "remediation engine", "webhook", "docker events"],
            "ClockStepped": ["points", "metrics"],
            "AuditCompleted": ["points", "metrics"],
            "PrivilegesChanged": ["points", "metrics"],
            "NameStateChanged": ["points", "status", "metrics"],
            "AddressChanged": ["points", "metrics"],
        }
        assert assembly.pipeline.bus is assembly.bus
        (service,) = [s for s in assembly.services if isinstance(s, RemediationService)]
        # verification asks the prober the pipeline cycles with; records go out by the bus
        assert service.remediator.reprobe == assembly.pipeline.prober.reprobe
        assert service.on_record == service.on_status == assembly.bus.publish
        (webhook,) = [s for s in assembly.services if isinstance(s, WebhookReceiver)]
        (server,) = [s for s in assembly.services if isinstance(s, MetricsServer)]
        # SIGHUP reloads the webhook's files and the /metrics server's (TLS, credentials)
        assert assembly.reloaders == [webhook.reload, server.reload]
        (watcher,) = [s for s in assembly.services if isinstance(s, DockerEventWatcher)]
        assert watcher.on_record == assembly.bus.publish
    finally:
        assembly.close()


def test_the_wiring_without_remediation_metrics_forensics_or_containers(tmp_path):
    text = config_text(str(tmp_path / "state")).replace("[remediation]\nenabled = true\n", "")
    text = text.replace('container = "ctr-', 'kind_was = "ctr-').replace('kind = "container"', 'kind = "vm"')
    text = "\n".join(line for line in text.splitlines()
                     if not line.startswith(("kind_was", "network =", "remediate ="))) + "\n[forensics]\nenabled = false\n"
    assembly = wiring.assemble(loads(text), make_docker=lambda: pytest.fail("no Docker here"))
    try:
        assert assembly.services == [] and assembly.reloaders == []
        assert [x.name for x in assembly.bus.listeners] == ["points", "status"]
        assert assembly.bus.subscribers() == {"CycleEvents": ["points", "status"], "ActionRecord": ["points"],
                                              "ContainerEventRecord": ["points"], "RemediationStatus": ["status"],
                                              "BoxSetChanged": ["points", "status", "pipeline"],
                                              "ClockStepped": ["points"], "AuditCompleted": ["points"],
                                              "PrivilegesChanged": ["points"],
                                              "NameStateChanged": ["points", "status"],
                                              "AddressChanged": ["points"]}
    finally:
        assembly.close()


def test_without_influxdb_there_is_no_points_listener_and_no_storage(tmp_path, caplog):
    """issue 31 item 1: no [influxdb], no writer and no spool; one INFO line names the stores that are on."""
    import logging

    text = config_text(str(tmp_path / "state")).replace('[influxdb]\ndatabase = "vobox"\n', "")
    text += f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n[forensics]\nenabled = false\n'
    cfg = loads(text)
    assert cfg.influxdb is None
    with caplog.at_level(logging.INFO, logger="agent.wiring"):
        assembly = wiring.assemble(cfg, make_docker=lambda: pytest.fail("no Docker here"))
    try:
        assert [x.name for x in assembly.bus.listeners] == ["remediation", "status", "metrics"]
        assert "points" not in sum(assembly.bus.subscribers().values(), [])
        (metrics,) = [x for x in assembly.bus.listeners if x.name == "metrics"]
        assert metrics.counters is None
        assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("stores:")] == [
            f"stores: prometheus /metrics on {cfg.metrics.listen}"]
    finally:
        assembly.close()
    assert not (tmp_path / "state" / "spool").exists()


def test_status_json_shows_the_remediation_status_the_service_published(tmp_path):
    """The status listener never reads the service: the status comes on the bus after the cycle's decisions."""
    agent, script, _storage, rem = make_agent(tmp_path)
    acc = Accumulator("acc", (RemediationStatus,))
    agent.bus.add(acc)
    run(agent, script, ["a", "a"])   # frozen at the second cycle: the service plans restart_container
    assert len(acc.received) == 2 and acc.received[-1].boxes["a"].busy == "running restart_container"
    with open(tmp_path / "state" / "status.json") as fh:
        st = json.load(fh)["boxes"]
    # planned: counted
    assert st["a"]["remediation"] == {"budget_left": 2, "halted": False, "reason": "running restart_container"}
    assert st["b"]["remediation"] == {"budget_left": 3, "halted": False, "reason": None}


def test_the_state_a_restart_resumes_from_is_saved_before_any_listener_hears_of_the_cycle(tmp_path):
    """A kill -9 after status.json said FROZEN must not restart that freeze: the listeners run after the save."""
    from agent.core import freeze
    from agent.pipeline import FREEZE_STATE_FILE

    agent, script, _storage, _rem = make_agent(tmp_path)
    seen: list[str] = []

    class ReadsTheSavedState(CycleListener):
        name = "reads-saved-state"

        def on_events(self, events) -> None:
            saved = freeze.load_state(f"{agent.config.agent.state_dir}/{FREEZE_STATE_FILE}")
            seen.append(str(saved["a"].state) if "a" in saved else "-")

    agent.bus.add(ReadsTheSavedState())
    run(agent, script, ["a", "a"])   # fail_cycles = 2: suspect, then frozen
    assert seen == ["suspect", "frozen"], seen
