"""The remediation service: evidence before action (real EvidenceCollector worker, real command processes)."""
from __future__ import annotations

import sys
import threading
import time

from agent.forensics.bundle import BoxRef
from agent.forensics.evidence import EvidenceCollector
from remediations import ActionContext, RemediationPolicy, RemediationService, RemediationTarget, Remediator
from tests.remediations.conftest import wait_for


def test_the_first_action_waits_for_the_freeze_evidence(tmp_path):
    """A slow collector is still reading the box when the freeze is handed over: the action starts after it."""
    order = []

    def slow_collector(ctx):
        time.sleep(0.4)               # far longer than a tick (0.05 s) and the command's start
        order.append(("evidence", time.monotonic()))
        return {"slow.json": {"ok": True}}

    marker = tmp_path / "ran"
    collector = EvidenceCollector(str(tmp_path / "state"), None, collectors={"slow": slow_collector})
    target = RemediationTarget(box="vm1", kind="vm", ipv4="192.0.2.20", ladder=("command",),
                               command=(sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('x')",
                                        str(marker)))
    policy = RemediationPolicy(cooldown_s=0, verify_s=0.2)
    records = []
    svc = RemediationService(Remediator(policy, [target], reprobe=lambda box: True), ActionContext(policy=policy),
                             records.append, tick_s=0.05, evidence_wait=collector.wait_collected,
                             evidence_timeout_s=10.0)
    svc.start()
    try:
        now = time.time()
        collector.freeze_opened(BoxRef("vm1", "vm", ("192.0.2.20",)), now, "l3")   # the evidence listener first
        svc.freeze_opened("vm1", "l3", now)                                        # then the remediation listener
        svc.tick()
        assert wait_for(lambda: marker.exists(), 10)
        order.append(("action", marker.stat().st_mtime_ns / 1e9))
        assert wait_for(lambda: records, 5)
    finally:
        svc.stop()
        collector.close(5)
    assert [name for name, _ in order] == ["evidence", "action"]
    assert records[0].outcome == "done" and records[0].recovered


def test_wait_collected_is_bounded(tmp_path):
    release = threading.Event()

    def stuck(ctx):
        release.wait(10)              # stuck until the test has seen the bounded wait give up
        return {}

    collector = EvidenceCollector(str(tmp_path / "state"), None, collectors={"stuck": stuck})
    collector.freeze_opened(BoxRef("c1", "container", ("192.0.2.10",)), time.time(), "l2")
    t0 = time.monotonic()
    assert collector.wait_collected("c1", 0.3) is False
    assert time.monotonic() - t0 < 1.0
    assert collector.wait_collected("other-box", 0.3) is True
    release.set()
    assert collector.wait_collected("c1", 5.0) is True
    collector.close(5)


def test_an_action_in_its_verify_wait_when_the_agent_stops_is_recorded_as_not_verified(tmp_path):
    """A restart that ran is never lost: stopping during the verify wait records it, recovered unknown."""
    from agent import wiring
    from agent.commands.events import describe
    from agent.storage.read import EventRow

    marker = tmp_path / "ran"
    target = RemediationTarget(box="vm1", kind="vm", ipv4="192.0.2.20", ladder=("command",),
                               command=(sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('x')",
                                        str(marker)))
    policy = RemediationPolicy(cooldown_s=0, verify_s=60)
    records = []
    svc = RemediationService(Remediator(policy, [target], reprobe=lambda box: True), ActionContext(policy=policy),
                             records.append, tick_s=0.05)
    svc.start()
    svc.freeze_opened("vm1", "l3", time.time())
    svc.tick()
    assert wait_for(lambda: marker.exists(), 10)
    assert wait_for(lambda: svc.acting_on("vm1"), 5)   # in its 60 s verify wait
    svc.stop()
    assert len(records) == 1, records
    rec = records[0]
    assert (rec.outcome, rec.ok, rec.recovered) == ("done", True, None)
    assert rec.reason.startswith("not verified: the agent stopped"), rec.reason
    point = wiring.record_point(rec, "site1")
    assert "recovered" not in {k for k, v in point.fields.items() if v is not None}   # mean(recovered) leaves it out
    assert point.fields["ok"] == 1
    line = describe(EventRow(rec.time_s, "remediation", "vm1", point.tags,
                             {k: v for k, v in point.fields.items() if v is not None}))
    assert "ok, not verified: the agent stopped" in line and "FAILED" not in line, line
