"""The audit's messages on the bus: what the points and metrics listeners make of them (audit, audit_box,
audit_change points; vobox_audit_* gauges)."""
from __future__ import annotations

from prometheus_client import generate_latest

from agent import audit as A
from agent.bus import Bus
from agent.listeners.metrics import MetricsListener
from agent.listeners.points import PointsListener
from agent.storage import points as P
from tests.agent.audit.test_findings import inp
from tests.agent.test_pipeline import RecordingStorage


def bus_with():
    storage = RecordingStorage()
    metrics = MetricsListener({"b1": "container"}, "cern")
    bus = Bus()
    bus.add(PointsListener(storage, "cern", {"b1": "container"}, host="h"))
    bus.add(metrics)
    return bus, storage, metrics


def test_an_audit_is_a_point_per_finding_and_one_per_box_and_gauges():
    bus, storage, metrics = bus_with()
    a = A.audit(inp({"Privileged": True}), 1_000.0)
    bus.publish(A.AuditCompleted(a, "start"))
    lines = P.to_lines(storage.points)
    findings = [p for p in storage.points if p.measurement == "audit"]
    assert sorted(p.tags["finding"] for p in findings) == ["5.4"]
    assert findings[0].tags["severity"] == "high" and findings[0].fields["audit_class"] == "privileged"
    assert findings[0].fields["bench"] == "docker-bench-security 1.6.0 check_5_4" and findings[0].fields["fix"]
    (box,) = [p for p in storage.points if p.measurement == "audit_box"]
    assert dict(box.fields) == {"audit_class": "privileged", "high": 1, "medium": 0, "low": 0,
                                "privileges": "privileged", "proc": "not running", "trigger": "start",
                                "error": None}
    assert all(line.endswith(" 1000000") for line in lines)   # ms precision: the audit's time
    text = generate_latest(metrics.registry).decode()
    assert 'vobox_audit_privileged{box="b1",kind="container",vobox_site="cern"} 1.0' in text
    assert 'vobox_audit_findings{box="b1",kind="container",severity="high",vobox_site="cern"} 1.0' in text
    assert 'vobox_audit_class{box="b1",class="privileged",kind="container",vobox_site="cern"} 1.0' in text
    assert 'vobox_audit_class{box="b1",class="default",kind="container",vobox_site="cern"} 0.0' in text


def test_a_failed_audit_is_unknown_and_keeps_the_last_findings():
    bus, storage, metrics = bus_with()
    bus.publish(A.AuditCompleted(A.audit(inp({"CapAdd": ["SYS_ADMIN"]}), 1.0), "start"))
    bus.publish(A.AuditCompleted(A.BoxAudit("b1", 2.0, "ctr", error="inspect ctr: NotFound: no such container"),
                                 "interval"))
    text = generate_latest(metrics.registry).decode()
    assert 'vobox_audit_class{box="b1",class="unknown",kind="container",vobox_site="cern"} 1.0' in text
    assert 'vobox_audit_findings{box="b1",kind="container",severity="medium",vobox_site="cern"} 1.0' in text
    last = [p for p in storage.points if p.measurement == "audit_box"][-1]
    assert last.fields["audit_class"] == "unknown" and "NotFound" in last.fields["error"]


def test_a_privileges_change_is_an_audit_change_point_and_counted():
    bus, storage, metrics = bus_with()
    bus.publish(A.PrivilegesChanged("b1", 5.0, ("CAP_SYS_ADMIN",), (), "default", "elevated",
                                    "privileges changed: +CAP_SYS_ADMIN"))
    (p,) = storage.points
    assert p.measurement == "audit_change" and p.fields["detail"] == "privileges changed: +CAP_SYS_ADMIN"
    assert p.fields["added"] == "CAP_SYS_ADMIN" and p.fields["new_class"] == "elevated"
    assert 'vobox_audit_privilege_changes_total{box="b1",kind="container",vobox_site="cern"} 1.0' in \
        generate_latest(metrics.registry).decode()
