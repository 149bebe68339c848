"""Every --json output against its JSON Schema in docs/schemas/ (issue 33 item 2): real command output, in-process.

The unit part runs the commands that need no server (check-config, doctor on a VM-only config, status from a
status.json, maintenance, remediate --dry-run, evidence over a bundle directory) and the report's data function
on a computed report; the lab part runs report, events, status, probe and discover against the real InfluxDB,
namespaces and engine.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from jsonschema import Draft202012Validator

from agent.report import BoxRecord, FleetObservation, FreezeRecord, build_report
from agent.report.data import report_data
from tests.agent.commands.cli_helpers import dead_port, run_cli, vm_config
from tests.agent.ops.conftest import ops_lab  # noqa: F401 - lab_with_history's own fixture
from tests.agent.ops.test_status_events import lab_with_history  # noqa: F401 - the lab fixture, shared

SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "schemas")


def validate(name: str, instance) -> None:
    """INSTANCE against docs/schemas/NAME (which is itself a valid draft 2020-12 schema)."""
    with open(os.path.join(SCHEMAS, name), encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_every_schema_is_valid_and_named_by_a_help_text():
    from agent.cli import build_parser

    names = sorted(n for n in os.listdir(SCHEMAS) if n.endswith(".json"))
    assert len(names) >= 12, names
    for n in names:
        with open(os.path.join(SCHEMAS, n), encoding="utf-8") as f:
            Draft202012Validator.check_schema(json.load(f))
    helps = build_parser().format_help()
    sub = build_parser()._subparsers._group_actions[0].choices   # each command's own help mentions its schema
    text = helps + "".join(p.format_help() for p in sub.values())
    for maint in ("start", "end", "list"):
        text += sub["maintenance"]._subparsers._group_actions[0].choices[maint].format_help()
    text = "".join(text.split())   # argparse wraps long help lines
    for n in ("check-config", "doctor", "report", "discover", "maintenance-change", "maintenance-list", "audit"):
        assert f"docs/schemas/{n}.json" in text, n


@pytest.fixture
def cfg(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    return vm_config(tmp_path / "agent.toml", state, f"http://127.0.0.1:{dead_port()}"), str(state)


def _json(argv, codes=(0,)):
    code, out, err = run_cli(argv)
    assert code in codes, (code, out, err)
    assert "Traceback" not in err
    return json.loads(out)


def _json_lines(argv, codes=(0,)):
    code, out, err = run_cli(argv)
    assert code in codes, (code, out, err)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_check_config(cfg, tmp_path):
    path, _ = cfg
    good = _json(["check-config", "-c", path, "--json"])
    assert good["valid"] and good["boxes"] == [{"name": "v", "kind": "vm", "ipv4": "192.0.2.5", "ipv6": None}]
    validate("check-config.json", good)
    bad_path = tmp_path / "bad.toml"
    bad_path.write_text('[agent]\ninterval = "soon"\n')
    bad = _json(["check-config", "-c", str(bad_path), "--json"], codes=(2,))
    assert not bad["valid"] and any(e.startswith("agent.interval:") for e in bad["errors"]), bad
    validate("check-config.json", bad)
    missing = _json(["check-config", "-c", str(tmp_path / "none.toml"), "--json"], codes=(2,))
    validate("check-config.json", missing)


def test_doctor(cfg):
    path, _ = cfg
    data = _json(["doctor", "-c", path, "--json"], codes=(0, 1))
    validate("doctor.json", data)
    by = {c["name"]: c for c in data["checks"]}
    assert any(c["status"] == "FAIL" and "influx" in name.lower() for name, c in by.items()), by.keys()
    assert data["failed"] == sum(c["status"] == "FAIL" for c in data["checks"]) and data["exit_code"] == 1


def test_report_data_of_a_computed_report():
    day_ms = 86_400_000
    boxes = (BoxRecord("c1", "container", 8640, 8600), BoxRecord("v1", "vm", 8640, 8640))
    freezes = (FreezeRecord("c1", "container", day_ms // 2, "l2", 400.0, False),)
    obs = FleetObservation(0, day_ms, 10.0, "CERN", boxes, freezes, (), 3600,
                           remediations={"reconnect_network": (1, 1)}, first_ms=0, last_ms=day_ms, cycles=8640)
    data = report_data(build_report(obs))
    validate("report.json", data)
    assert [k["kind"] for k in data["kinds"]] and data["remediations"] == {"reconnect_network":
                                                                           {"actions": 1, "recovered": 1}}
    json.dumps(data, allow_nan=False)   # strict JSON: no NaN or Infinity anywhere


def test_status_from_status_json(cfg):
    from tests.agent.ops.test_status_events import _write_status

    path, state = cfg
    _write_status(state, updated_s=time.time())
    validate("status.json", _json(["status", "-c", path, "--json"]))


def test_maintenance_start_list_end(cfg):
    path, _ = cfg
    started = _json(["maintenance", "start", "-c", path, "v", "--for", "10m", "--reason", "kernel", "--json"])
    assert started["boxes"] == ["v"] and started["recorded"] is False   # InfluxDB refuses: the file counts
    validate("maintenance-change.json", started)
    listed = _json(["maintenance", "list", "-c", path, "--json"])
    assert "v" in listed["boxes"]
    validate("maintenance-list.json", listed)
    ended = _json(["maintenance", "end", "-c", path, "v", "--json"])
    assert ended["boxes"] == ["v"]
    validate("maintenance-change.json", ended)


def test_remediate_dry_run(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{state}"\n\n[influxdb]\nurl = "http://127.0.0.1:{dead_port()}"\n'
                    'write_timeout = "1s"\n\n[remediation]\nenabled = true\n\n[[box]]\nname = "v"\nkind = "vm"\n'
                    'ipv4 = "192.0.2.5"\nremediate = ["command"]\ncommand = ["true", "{box}"]\n')
    rows = _json_lines(["remediate", "-c", str(path), "v", "command", "--dry-run", "--json"], codes=(3,))
    assert [r["outcome"] for r in rows] == ["dry_run"]
    for r in rows:
        validate("remediate.json", r)


def test_evidence_listing(cfg):
    from agent.forensics.bundle import SUMMARY_JSON, bundle_dir

    _, state = cfg
    start_s = time.time() - 60
    d = bundle_dir(state, "v", start_s)
    os.makedirs(d)
    with open(os.path.join(d, SUMMARY_JSON), "w", encoding="utf-8") as f:
        json.dump({"open": False, "layer": "l3", "duration_s": 42.0, "headline": "no ping answer"}, f)
    rows = _json_lines(["evidence", "--state-dir", state, "--json"])
    assert [r["box"] for r in rows] == ["v"]
    validate("evidence.json", rows[0])


# ----------------------------------------------------------------------------- lab: real servers and engine

@pytest.mark.lab
def test_report_events_status_from_the_real_influxdb(lab_with_history):  # noqa: F811 - the imported fixture
    from agent import netns

    lab, cfg_obj, path, ctr, vm, t0 = lab_with_history
    with netns.entered(lab.monitor_ns):
        report = _json(["report", "-c", path, "--since", "1h", "--json"])
        events = _json_lines(["events", "-c", path, "--since", "1h", "--json"])
        snap = _json(["status", "-c", path, "--json"])
    validate("report.json", report)
    assert {b["name"] for b in report["boxes"]} == {ctr.name, vm.name} and report["site"] == cfg_obj.agent.site
    assert report["source"]["kind"] == "influxdb"
    assert events
    for row in events:
        validate("events.json", row)
    validate("status.json", snap)
    assert snap["source"] == "influxdb"


@pytest.mark.lab
def test_probe_and_discover_on_the_lab(clean_lab):
    import subprocess
    import sys

    lab = clean_lab
    ctr = next(b for b in lab.boxes if b.kind == "container")
    root = os.path.dirname(SCHEMAS.rstrip("/").rsplit("/docs", 1)[0] + "/docs")
    proc = subprocess.run([sys.executable, "-m", "agent", "--netns", lab.monitor_ns, "probe", ctr.ipv4, "--json"],
                          capture_output=True, text=True, timeout=60, cwd=os.path.abspath(root))
    assert proc.returncode in (0, 1), proc.stderr
    validate("probe.json", json.loads(proc.stdout))
    found = _json(["discover", "--json"])
    validate("discover.json", found)
    audit = _json(["audit", "--json", ctr.container], codes=(0, 1))   # 1: a high-severity finding
    validate("audit.json", audit)
    assert [b["container"] for b in audit["boxes"]] == [ctr.container]

