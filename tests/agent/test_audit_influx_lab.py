"""The audit stored and read back: real audits of the lab's privilege boxes on the real engine, the points listener
writing them with a real pipeline's cycles into a real InfluxDB, then the report split by audit class (the
SYS_ADMIN box the elevated class, a box never audited unknown) and the dashboards' privilege-change annotation.

The probe results are scripted (as tests/agent/report/test_agreement.py): the freezes are known, so the split's
figures can be checked exactly."""
from __future__ import annotations

import json
import os

import pytest

from agent import netns, wiring
from agent.auditor import AuditService
from agent.bus import Bus
from agent.core.config import loads
from agent.pipeline import Pipeline
from agent.report import build_report, read_fleet, render_text
from agent.report.stats import DAY_S
from agent.storage.influx import query as influx_query
from agent.storage.store import Storage
from probes import ProbeResult
from tests.agent.storage import conftest as storage_fixtures

pytestmark = pytest.mark.lab
module_influx = storage_fixtures.module_influx

INTERVAL_S = 10
SITE = "auditlab"
ADDRESSES = {"sys": "198.51.100.31", "cln": "198.51.100.32", "new": "198.51.100.33", "vm1": "198.51.100.34"}
KINDS = {"sys": "container", "cln": "container", "new": "container", "vm1": "vm"}
CYCLES = 40
HALF = 20   # the sys box is recreated with --cap-add SYS_ADMIN here (before that it runs as the clean box does)
SEQUENCE = {   # U up, F failing; fail_cycles 2: every FFF is one freeze
    "sys": "U" * 23 + "FFF" + "U" * 5 + "FFF" + "U" * 6,
    "cln": "U" * 5 + "FFF" + "U" * 32,
    "new": "U" * CYCLES,
    "vm1": "U" * 10 + "FFF" + "U" * 27,
}
DASHBOARDS = os.path.join(os.path.dirname(__file__), "..", "..", "grafana", "dashboards")


def config_text(state_dir: str, url: str) -> str:
    text = f"""
[agent]
interval = {INTERVAL_S}
timeout = 1.0
state_dir = "{state_dir}"
site = "{SITE}"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "{url}"
database = "audit"
"""
    for name, ip in ADDRESSES.items():
        text += f'\n[[box]]\nname = "{name}"\nkind = "{KINDS[name]}"\nipv4 = "{ip}"\ntcp_ports = [1093]\n'
        if KINDS[name] == "container":
            text += f'container = "ctr-{name}"\nnetwork = "net1"\n'
    return text


@pytest.fixture(scope="module")
def privilege_boxes(module_influx, tmp_path_factory):
    from lab import privileges
    from lab.cleanup import remove_run

    run_id = privileges.claim_run()
    cvmfs = str(tmp_path_factory.mktemp("cvmfs"))
    made = {}
    try:
        made = privileges.create(run_id, ["sysadmin", "clean"], cvmfs_dir=cvmfs)
        yield made
    finally:
        privileges.remove(made)
        privileges.release(cvmfs)
        remove_run(run_id)


def test_the_report_splits_by_audit_class_and_the_change_is_an_annotation(module_influx, privilege_boxes,
                                                                           tmp_path):
    server, made = module_influx, privilege_boxes
    cfg = loads(config_text(str(tmp_path / "state"), server.url))
    clock = {"now": 1_900_000_000.0}
    failing: set[str] = set()

    def sweep(targets, timeout_s, interface=None, recorder=None):
        return [ProbeResult(t.address, t.probe, t.port, t.address not in failing,
                            None if t.address in failing else 0.2, "timeout" if t.address in failing else None,
                            None, clock["now"] + 0.1) for t in targets]

    start_ms = int(clock["now"] * 1000)
    with netns.entered(server.netns):   # the writer thread lives in InfluxDB's namespace
        storage = Storage.from_config(cfg)
        bus = Bus()
        for listener in wiring.build_listeners(cfg, storage):
            bus.add(listener)
        pipeline = Pipeline(cfg, bus, sweep=sweep, clock=lambda: clock["now"])
        from agent.wiring import docker_factory

        client = docker_factory(timeout_s=30)()
        # "new" is never audited (unknown); sys runs as the clean box does until it is recreated at HALF
        audit = AuditService({"sys": made["clean"].container, "cln": made["clean"].container}, lambda: client,
                             bus.publish, state_dir=str(tmp_path / "state"), clock=lambda: clock["now"])
        assert {a.box: a.audit_class for a in audit.audit_now()} == {"sys": "default", "cln": "default"}
        for i in range(CYCLES):
            if i == HALF:
                audit.set_boxes({"sys": made["sysadmin"].container, "cln": made["clean"].container})
                audit.audit_now({"sys": made["sysadmin"].container}, "start")
            failing.clear()
            failing.update(ADDRESSES[b] for b, seq in SEQUENCE.items() if seq[i] == "F")
            pipeline.run_cycle()
            clock["now"] += INTERVAL_S
        assert storage.flush(30.0), "InfluxDB took every point"
        storage.close(10.0)
    end_ms = int(clock["now"] * 1000)

    def run(q: str) -> list[dict]:
        with netns.entered(server.netns):
            return influx_query(server.url, q, db="audit", epoch="ms")

    # what was stored: a point per finding, per box and audit, and the change
    findings = run('SELECT "severity", "fix", "bench" FROM "audit" WHERE "box" = \'sys\' AND "finding" = \'5.3\'')
    assert len(findings) == 1 and findings[0]["severity"] == "medium" and "check_5_3" in findings[0]["bench"]
    (change,) = run('SELECT * FROM "audit_change"')
    assert change["detail"] == "privileges changed: +CAP_SYS_ADMIN" and change["box"] == "sys"
    assert (change["old_class"], change["new_class"]) == ("default", "elevated")
    assert change["time"] == start_ms + HALF * INTERVAL_S * 1000

    report = build_report(read_fleet(run, start_ms, end_ms, INTERVAL_S, SITE))
    split = report.by_audit_class
    assert split is not None
    g = {x.name: x for x in split.groups}
    assert list(g) == ["containers elevated", "containers default", "containers unknown", "all VMs"]
    elevated, default, unknown, vms = g.values()
    assert (elevated.boxes, elevated.freezes, elevated.box_days) == (1, 2, HALF * INTERVAL_S / DAY_S)
    assert (default.boxes, default.freezes, default.box_days) == (2, 1, (HALF + CYCLES) * INTERVAL_S / DAY_S)
    assert (unknown.boxes, unknown.freezes, unknown.box_days) == (1, 0, CYCLES * INTERVAL_S / DAY_S)
    assert vms.freezes == 1
    assert split.comparisons["elevated"].k1 == 2 and split.comparisons["elevated"].k2 == 1
    # the same intervals as the kinds': all containers' figures are the classes' together
    (containers,) = [k for k in report.kinds if k.kind == "container"]
    assert containers.freezes == elevated.freezes + default.freezes + unknown.freezes
    text = render_text(report)
    assert "by audit class" in text and "elevated containers vs VMs" in text

    # the box dashboard's annotation query finds the change
    with open(os.path.join(DASHBOARDS, "box-detail.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    q = next(a["target"]["query"] for a in dash["annotations"]["list"] if a.get("name") == "Privilege changes")
    q = (q.replace("/^$site$/", "/^.*$/").replace("/^$kind$/", "/^.*$/").replace("/^$box$/", "/^sys$/")
         .replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms"))
    assert [(r["detail"], r["new_class"]) for r in run(q)] == [("privileges changed: +CAP_SYS_ADMIN", "elevated")]
