"""`status` with the agent stopped (rebuilt from InfluxDB) agrees with what the live status.json last said.

The real pipeline, correlator, remediation engine and listeners run a scripted sequence (pure probes,
a real `false` as the remediation command so actions really run and fail); at each checkpoint the
points written so far go to the lab's real InfluxDB (1.6) and the snapshot rebuilt from it is compared
with the live status.json of the same moment: state, layer, hold (kind, segment, since), budget, halt.
"""
from __future__ import annotations

import time

import pytest

from agent import netns, wiring
from agent.bus import Bus
from agent.core.config import loads
from agent.core.correlation import CorrelationSettings, Correlator, memberships_from_config
from agent.listeners.status import STATUS_FILE
from agent.pipeline import Pipeline
from agent.status import format_status, from_influx, read_status_file
from agent.storage import influx, points as P
from agent.storage.read import influx_query
from tests.agent.test_pipeline import BOXES, RecordingStorage, Script

pytestmark = pytest.mark.lab

INTERVAL_S = 10


def config_text(state_dir: str, url: str, db: str) -> str:
    text = f"""
[agent]
interval = {INTERVAL_S}
timeout = 1.0
state_dir = "{state_dir}"
site = "fallback"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "{url}"
database = "{db}"

[remediation]
enabled = true
cooldown = 15
verify = 5
max_per_box_per_hour = 2
reset_after = 60

[correlation]
min_boxes = 3
window = 60
"""
    for name, ip in BOXES.items():
        text += f"""
[[box]]
name = "{name}"
kind = "container"
ipv4 = "{ip}"
tcp_ports = [1093]
container = "ctr-{name}"
network = "net1"
remediate = ["command"]
command = ["false"]
"""
    return text


class Run:
    """The pipeline and the engine on a scripted clock; actions run synchronously after each cycle."""

    def __init__(self, lab, tmp_path, db: str):
        from remediations import ActionContext, RemediationService, Remediator

        self.lab, self.db = lab, db
        self.cfg = loads(config_text(str(tmp_path / "state"), lab.influx_url, db))
        self.script = Script()
        self.script.now = time.time() - 1800   # every point within InfluxDB's last hour, in the past
        self.storage = RecordingStorage()
        self.written = 0
        cfg, script = self.cfg, self.script
        correlator = Correlator(CorrelationSettings.from_config(cfg.correlation), memberships_from_config(cfg))
        engine = Remediator(cfg.remediation.policy(), [b.remediation_target() for b in cfg.boxes],
                            reprobe=lambda box: BOXES[box] not in script.failing)
        bus = Bus()   # the service's status reaches status.json by it
        self.rem = RemediationService(engine, ActionContext(docker_factory=_no_docker, policy=cfg.remediation.policy()),
                                      clock=script.clock,
                                      on_record=lambda r: self.storage.write([wiring.record_point(r, cfg.agent.site)]),
                                      on_status=bus.publish)
        for listener in wiring.build_listeners(cfg, self.storage, remediation=self.rem):
            bus.add(listener)
        self.pipeline = Pipeline(cfg, bus, sweep=script.sweep, clock=script.clock, correlator=correlator)

    def cycles(self, failing: str, n: int = 1) -> None:
        for _ in range(n):
            self.script.failing = {BOXES[b] for b in failing}
            self.pipeline.run_cycle()
            self._work()
            self.script.now += INTERVAL_S

    def _work(self) -> None:
        """What the service's worker does between cycles, at once: run what is queued, tick, record."""
        for _ in range(10):
            while not self.rem._queue.empty():
                self.rem._execute(self.rem._queue.get_nowait())
            for plan in self.rem.remediator.tick(self.script.now):
                self.rem._queue.put(plan)
            self.rem._flush()
            if self.rem._queue.empty():
                return

    def compare(self, what: str) -> tuple[dict, dict]:
        """Write the new points, then live status.json vs the InfluxDB rebuild at the same moment."""
        self.script.now -= INTERVAL_S   # the moment of the last cycle's status.json
        lines = P.to_lines(self.storage.points[self.written:])
        self.written = len(self.storage.points)
        with netns.entered(self.lab.monitor_ns):
            w = influx.make_writer(self.cfg.influxdb)
            w.ensure_database()
            w.send(("\n".join(lines) + "\n").encode())
            w.close()
            now = self.script.now
            live, reason = read_status_file(f"{self.cfg.agent.state_dir}/{STATUS_FILE}", now)
            assert live is not None, reason
            fallback = from_influx(self.cfg, influx_query(self.cfg.influxdb), now)
        self.script.now += INTERVAL_S
        print(f"--- {what}\nlive:\n{format_status(live, now)}\nfallback:\n{format_status(fallback, now)}")
        lv, fb = _view(live), _view(fallback)
        assert fb == lv, f"{what}: fallback differs from live\nlive     {lv}\nfallback {fb}"
        assert fallback.updated_s == pytest.approx(now, abs=1), (fallback.updated_s, now)   # says how old it is
        return lv, fb


def _no_docker():
    raise AssertionError("no Docker here: the ladder is `command`")


def _view(snap) -> dict:
    """What both sources must agree on, per box."""
    out = {}
    for b in snap.boxes:
        held = b.held and {"kind": b.held["kind"], "segment": b.held["segment"],
                           "since_s": round(b.held["since_s"], 3) if b.held.get("since_s") else None}
        out[b.name] = {"state": b.state, "layer": b.layer, "held": held, "budget_left": b.budget_left,
                       "halted": b.halted, "halt": (b.halt_reason or "")[:len("cap reached")] if b.halted else None}
    return out


def test_fallback_status_agrees_with_the_live_status(lab, tmp_path):
    db = f"t_status_fallback_{int(time.time())}"
    run = Run(lab, tmp_path, db)
    run.cycles("", 2)
    run.compare("all up")
    run.cycles("a", 3)                       # a frozen alone: `command` runs and fails (budget 2 -> 1)
    lv, _ = run.compare("a frozen, one action ran")
    assert lv["a"]["state"] == "frozen" and lv["a"]["budget_left"] == 1 and not lv["a"]["halted"], lv
    run.cycles("a", 3)                       # past the cooldown: the second action, then the cap: HALTED
    lv, _ = run.compare("a halted")
    assert lv["a"]["budget_left"] == 0 and lv["a"]["halted"] and lv["a"]["halt"] == "cap reached", lv
    run.rem.remediator.reset("a", run.script.now - INTERVAL_S / 2, who="admin", why="test")   # remediate reset a
    run.rem._flush()
    run.cycles("a", 1)                       # the next cycle: the halt is gone, the ladder acts again at once
    lv, _ = run.compare("a reset by an admin")
    assert lv["a"]["budget_left"] == 1 and not lv["a"]["halted"], lv
    run.cycles("", 3)                        # a recovers
    run.cycles("a", 1)                       # an outage seen a cycle earlier by a than by b and c:
    run.cycles("abc", 1)                     # a frozen while b and c are suspect: a waits a cycle (settling)
    lv, _ = run.compare("settling")
    assert lv["a"]["held"] and lv["a"]["held"]["kind"] == "settling", lv
    run.cycles("abc", 2)                     # a segment freeze of net1 holds every box
    lv, _ = run.compare("segment hold")
    assert all(lv[b]["held"] and lv[b]["held"]["kind"] == "segment" and lv[b]["held"]["segment"] for b in "abc"), lv
    run.cycles("", 4)                        # the segment recovers: holds end
    lv, _ = run.compare("holds ended")
    assert not any(lv[b]["held"] for b in "abc"), lv
    # the settling hold was stored as a point like the others (issue 18: every hold is recorded)
    with netns.entered(lab.monitor_ns):
        rows = influx.query(lab.influx_url, 'SELECT "reason" FROM "remediation" WHERE "outcome" = \'held\'', db=db)
        resets = influx.query(lab.influx_url, 'SELECT "reason" FROM "remediation" WHERE "outcome" = \'reset\'', db=db)
    print("held:", rows, "\nresets:", resets)
    assert len(resets) == 1, resets
    assert sum(r["reason"].startswith("waiting a cycle") for r in rows) == 1, rows
    assert sum(r["reason"].startswith("segment freeze of net1") for r in rows) == 3, rows
