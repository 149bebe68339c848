"""A remediation decision as a `remediation` point and as an `events` line: what it was, ok/recovered only if it ran."""
from __future__ import annotations

import pytest

from agent.commands.events import describe
from agent.storage import points
from agent.storage.read import EventRow, split_row
from agent.wiring import record_point
from remediations.model import ActionRecord


def rec(outcome, ok=False, recovered=False, reason="", **kw):
    return ActionRecord(box="c1", kind="container", action="restart_container", trigger=kw.pop("trigger", "auto"),
                        ok=ok, recovered=recovered, dry_run=outcome == "dry_run", duration_s=0.0,
                        detail=kw.pop("detail", reason or "restarted"), time_s=5.0, outcome=outcome, reason=reason, **kw)


@pytest.mark.parametrize("record, fields, line", [
    pytest.param(rec("done", True, True), {"ok": 1, "recovered": 1, "reason": None},
                 "remediation restart_container (auto): ok, recovered - restarted", id="done"),
    pytest.param(rec("refused", reason="cooldown: last action 3 s ago", trigger="alert"),
                 {"ok": None, "recovered": None, "reason": "cooldown: last action 3 s ago"},
                 "remediation restart_container (alert): REFUSED - cooldown: last action 3 s ago", id="refused"),
    pytest.param(rec("held", reason="segment freeze of net1 open"), {"ok": None, "deferred": 0},
                 "remediation restart_container (auto): HELD - segment freeze of net1 open", id="held"),
    pytest.param(rec("deferred", reason="docker daemon unreachable"), {"ok": None, "deferred": 1},
                 "remediation restart_container (auto): DEFERRED - docker daemon unreachable", id="deferred"),
    pytest.param(rec("dry_run", detail="dry-run: would restart"), {"ok": None, "dry_run": 1},
                 "remediation restart_container (auto): DRY-RUN - dry-run: would restart", id="dry-run"),
    pytest.param(rec("done", True, False, trigger="manual", forced=True, who="alice", why="ticket 42"),
                 {"ok": 1, "forced": 1, "who": "alice", "why": "ticket 42"},
                 "remediation restart_container (manual): ok, not recovered, FORCED by alice (ticket 42) - restarted",
                 id="forced"),
])
def test_a_decision_is_stored_and_shown_as_what_it_was(record, fields, line):
    p = record_point(record, "S")
    assert p.tags["outcome"] == record.outcome
    for k, v in fields.items():
        assert p.fields.get(k) == v, k
    # what InfluxDB gives back: tags and fields merged in one row, split again by the read side
    tags, stored = split_row({**{k: v for k, v in p.fields.items() if v is not None}, **p.tags})
    assert tags == {k: v for k, v in p.tags.items() if v is not None}
    assert describe(EventRow(5.0, "remediation", "c1", tags, stored)) == line
    p.to_line()  # encodable


@pytest.mark.parametrize("point", [
    points.remediation_point("c1", "container", "S", "reset", "manual", False, False, False, 0.0, "x", 5.0,
                             outcome="reset"),
    points.maintenance_point("c1", "container", "S", "start", "command", "upgrade", "root", 9.0, "command", 5.0),
    points.warning_point("c1", "container", "S", "check:x509", "/tmp/x509up_u0", "expires", 5.0, days_left=3.0),
    points.box_point("c1", "container", "S", None, "maintenance", "none", 5.0, maintenance=True),
], ids=["remediation", "maintenance", "warning", "box"])
def test_the_read_side_knows_every_tag_the_writer_writes(point):
    tags, cols = split_row({**{k: v for k, v in point.fields.items() if v is not None}, **point.tags})
    assert tags == {k: v for k, v in point.tags.items() if v is not None}
    assert set(cols) == {k for k, v in point.fields.items() if v is not None}
