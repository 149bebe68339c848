"""status and events: from the runner's status.json, and from a real InfluxDB (lab)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from agent import netns, status, timeparse
from agent.commands import events
from agent.core import config
from agent.storage import read

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# Exactly the format the runner writes to state_dir/status.json each cycle.
STATUS_FIXTURE = {
    "version": 1, "updated_s": 1764288000.1, "interval_s": 10, "site": "CERN",
    "boxes": {
        "vobox-ctr-1": {"kind": "container", "state": "up", "layer": "none", "since_s": 1764280000.0,
                        "rtt_ms": {"icmp": 0.21, "arp": 0.1, "tcp": 0.5}, "open_freeze": None,
                        "remediation": {"budget_left": 3, "halted": False, "reason": None}},
        "vobox-vm-1": {"kind": "vm", "state": "frozen", "layer": "l3", "since_s": 1764287900.0,
                       "rtt_ms": {"arp": 0.3}, "open_freeze": {"start_s": 1764287900.0, "layer": "l3"},
                       "remediation": {"budget_left": 0, "halted": True, "reason": "max_per_box_per_hour"}},
    },
}


def _write_status(state_dir, **changes):
    data = {**STATUS_FIXTURE, **changes}
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "status.json"), "w") as f:
        json.dump(data, f)


def test_status_from_a_fresh_status_file(tmp_path):
    _write_status(tmp_path)
    snap, reason = status.read_status_file(str(tmp_path / "status.json"), now_s=1764288010.0)
    assert reason is None and snap.source == "agent"
    text = status.format_status(snap, 1764288010.0)
    ctr, vm = text.splitlines()[1:]
    assert ctr.split()[:4] == ["vobox-ctr-1", "container", "up", "none"]
    assert "since 2h13m" in ctr and "icmp 0.21ms arp 0.10ms tcp 0.50ms" in ctr and "budget 3" in ctr
    assert "freeze l3 110s" in vm and "HALTED (max_per_box_per_hour)" in vm


def test_status_shows_a_held_box_and_a_cycle_that_judged_none(tmp_path):
    boxes = json.loads(json.dumps(STATUS_FIXTURE["boxes"]))
    boxes["vobox-vm-1"]["held"] = {"kind": "segment", "segment": "docknet", "since_s": 1764287950.0,
                                   "reason": "segment freeze of docknet"}
    _write_status(tmp_path, boxes=boxes, error="sweep failed: OSError: no such device")
    snap, _ = status.read_status_file(str(tmp_path / "status.json"), now_s=1764288010.0)
    text = status.format_status(snap, 1764288010.0)
    assert "LAST CYCLE JUDGED NO BOX: sweep failed: OSError: no such device" in text
    vm = [line for line in text.splitlines() if line.startswith("vobox-vm-1")][0]
    assert "remediation HELD (segment docknet, 60s)" in vm


@pytest.mark.parametrize("content, expect", [
    pytest.param(None, "not found", id="absent"),
    pytest.param("{not json", "unreadable", id="garbage"),
    pytest.param(json.dumps({**STATUS_FIXTURE, "version": 9}), "unknown format version 9", id="version"),
    pytest.param(json.dumps(STATUS_FIXTURE), "stale: last written 31s ago, more than 3 intervals of 10 s", id="stale"),
])
def test_status_file_not_usable(tmp_path, content, expect):
    path = tmp_path / "status.json"
    if content is not None:
        path.write_text(content)
    snap, reason = status.read_status_file(str(path), now_s=1764288000.1 + 31)
    assert snap is None and expect in reason


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800)])
def test_durations(text, seconds):
    assert timeparse.parse_duration_s(text) == seconds


def test_bad_duration_names_the_forms():
    with pytest.raises(ValueError, match="unit s, m, h, d or w"):
        timeparse.parse_duration_s("yesterday")


# ------------------------------------------------------------ lab + influx

def _write_points(lab, lines: list[str]) -> None:
    import urllib.request

    body = "\n".join(lines).encode()
    url = f"{lab.influx_url}/write?db={lab.influx_database}&precision=ms"
    with netns.entered(lab.monitor_ns), urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            urllib.request.Request(url, data=body, method="POST"), timeout=5) as resp:
        assert resp.status == 204


@pytest.fixture
def lab_with_history(ops_lab, tmp_path):
    """The lab's InfluxDB with a freeze, a remediation, a container event and box/probe points of this test."""
    tag = f"t{int(time.time() * 1000) % 10**9}"
    ctr = next(b for b in ops_lab.boxes if b.kind == "container")
    vm = next(b for b in ops_lab.boxes if b.kind == "vm")
    now_ms = int(time.time() * 1000)
    t0 = now_ms - 600_000
    lines = [
        f'freeze,box={ctr.name},kind=container,site={tag} open=0i,layer="l2",duration_s=42.5 {t0}',
        f'container_event,box={ctr.name},kind=container,site={tag},event=disconnect detail="network {ctr.network}" {t0 + 1000}',
        f'remediation,box={ctr.name},kind=container,site={tag},action=reconnect_network,trigger=auto '
        f'ok=1i,recovered=1i,dry_run=0i,duration_s=1.2,detail="same ip, same mac" {t0 + 31000}',
        f'freeze,box={vm.name},kind=vm,site={tag} open=1i,layer="l3",duration_s=0 {now_ms - 120_000}',
        f'box,box={vm.name},kind=vm,site={tag} up=0i,state="frozen",layer="l3" {now_ms - 5000}',
        f'box,box={ctr.name},kind=container,site={tag} up=0i,state="frozen",layer="l2" {t0 + 2000}',
        f'box,box={ctr.name},kind=container,site={tag} up=1i,state="up",layer="none" {now_ms - 5000}',
        f'probe,box={ctr.name},kind=container,site={tag},probe=icmp,address={ctr.ipv4} ok=1i,rtt_ms=0.25 {now_ms - 5000}',
        f'probe,box={ctr.name},kind=container,site={tag},probe=arp,address={ctr.ipv4} ok=1i,rtt_ms=0.125 {now_ms - 5000}',
    ]
    _write_points(ops_lab, lines)
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(ops_lab.agent_config(state_dir=str(tmp_path / "state"), site=tag)
                        + "\n[remediation]\nenabled = true\nmax_per_box_per_hour = 3\n")
    return ops_lab, config.load(cfg_path), str(cfg_path), ctr, vm, t0


@pytest.mark.lab
def test_events_from_influx_in_time_order(lab_with_history):
    lab, cfg, _path, ctr, vm, t0 = lab_with_history
    with netns.entered(lab.monitor_ns):
        found = read.fetch_events(read.influx_query(cfg.influxdb), since_s=3600)
        only_vm = read.fetch_events(read.influx_query(cfg.influxdb), since_s=3600, box=vm.name)
    mine = [e for e in found if e.tags.get("site") == cfg.agent.site]
    assert [e.measurement for e in mine] == ["freeze", "container_event", "remediation", "freeze"]
    assert [e.time_s for e in mine] == sorted(e.time_s for e in mine)
    text = events.format_events(mine)
    assert "freeze, layer l2, 42.5 s" in text
    assert "container event disconnect" in text
    assert "remediation reconnect_network (auto): ok, recovered - same ip, same mac" in text
    assert "freeze OPEN, layer l3" in text
    assert {e.box for e in only_vm if e.tags.get("site") == cfg.agent.site} == {vm.name}


@pytest.mark.lab
def test_status_falls_back_to_influx_when_the_file_is_stale(lab_with_history):
    lab, cfg, _path, ctr, vm, t0 = lab_with_history
    _write_status(cfg.agent.state_dir, updated_s=time.time() - 3600)
    now = time.time()
    with netns.entered(lab.monitor_ns):
        snap = status.snapshot(cfg, now)
    assert snap.source == "influxdb" and "stale" in snap.note
    by = {b.name: b for b in snap.boxes}
    assert by[vm.name].state == "frozen" and by[vm.name].open_freeze["layer"] == "l3"
    assert by[ctr.name].state == "up" and by[ctr.name].rtt_ms == {"icmp": 0.25, "arp": 0.125}
    assert abs(by[ctr.name].since_s - (t0 + 2000) / 1000) < 0.01  # last failing cycle
    assert by[ctr.name].budget_left == 2  # one real action in the last hour, cap 3


@pytest.mark.lab
def test_status_and_events_cli(lab_with_history):
    lab, cfg, path, ctr, vm, t0 = lab_with_history
    _write_status(cfg.agent.state_dir, updated_s=time.time())
    run = [sys.executable, "-m", "agent", "--netns", lab.monitor_ns]
    p = subprocess.run(run + ["status", "-c", path], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("source: agent") and "vobox-ctr-1" in p.stdout
    p = subprocess.run(run + ["events", "-c", path, "--since", "1h", "--box", ctr.name, "--json"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["measurement"] for r in rows if r["tags"].get("site") == cfg.agent.site] == \
        ["freeze", "container_event", "remediation"]
    p = subprocess.run(run + ["events", "-c", path, "--box", "nope"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and "unknown box 'nope'" in p.stderr


def test_events_lines_are_one_line_each_and_name_maintenance():
    """A command's multi-line output stays on its event's line; maintenance start/end are events."""
    from agent.commands.events import format_events
    from agent.storage.read import EVENT_MEASUREMENTS, EventRow

    assert EVENT_MEASUREMENTS["maintenance"] is True
    rows = [EventRow(1_700_000_000.0, "remediation", "vm1", {"action": "command", "trigger": "auto",
                                                             "outcome": "done"},
                     {"ok": 1, "recovered": 1, "detail": "2026-11-30 12:00 hook: rebooting vm1\nexit 0\n"}),
            EventRow(1_700_000_001.0, "maintenance", "vm1", {"event": "start", "origin": "command"},
                     {"who": "alice (uid 0)", "reason": "kernel upgrade", "until_s": 1_700_007_200.0})]
    lines = format_events(rows).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("hook: rebooting vm1 / exit 0"), lines[0]
    assert "maintenance start by alice (uid 0) until " in lines[1] and lines[1].endswith("- kernel upgrade")
