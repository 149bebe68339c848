"""The agent's start waits for the events watcher's first connect (agent.engines.watcher.FIRST_SYNC_WAIT_S):
the first probe cycle judges container boxes with their engine state, never by probes alone."""
from __future__ import annotations

import time

from agent.engines.watcher import DockerEventWatcher
from agent.wiring import Assembly
from remediations.model import RemediationTarget

TARGET = RemediationTarget(box="b", kind="container", container="c", network="n")


def test_wait_ready_returns_when_the_first_connect_failed_not_after_the_timeout():
    def unreachable():
        raise ConnectionError("no engine socket")

    w = DockerEventWatcher([TARGET], unreachable, lambda _r: None, retry_s=30.0)
    w.start()
    try:
        t0 = time.monotonic()
        assert w.wait_ready(timeout_s=20.0) is False
        assert time.monotonic() - t0 < 5.0
        assert w.states.engine_down() is not None   # the pipeline holds the container boxes
    finally:
        w.stop()


def test_wait_ready_is_bounded_when_the_watcher_never_answers():
    w = DockerEventWatcher([TARGET], lambda: None, lambda _r: None)   # never started: no attempt ends
    t0 = time.monotonic()
    assert w.wait_ready(timeout_s=0.2) is False
    assert 0.2 <= time.monotonic() - t0 < 2.0


def test_assembly_starts_the_cycles_after_the_services_are_ready():
    order: list[str] = []

    class Service:
        def start(self) -> None:
            order.append("service start")

        def wait_ready(self) -> bool:
            order.append("service ready")
            return True

        def stop(self) -> None:
            pass

    class Plain:
        def start(self) -> None:
            order.append("plain start")

    class Scheduler:
        def start(self) -> None:
            order.append("cycles")

    Assembly(pipeline=None, scheduler=Scheduler(), services=[Service(), Plain()]).start()
    assert order == ["service start", "plain start", "service ready", "cycles"]
