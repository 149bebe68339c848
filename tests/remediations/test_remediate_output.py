"""`remediate`'s output: one line a person reads per record (JSON with --json), and clear missing arguments."""
from __future__ import annotations

import os
import subprocess
import sys

from agent.commands.remediate import describe
from remediations import ActionRecord

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def rec(**kw):
    base = dict(box="ctr1", kind="container", action="restart_container", trigger="manual", ok=True, recovered=True,
                dry_run=False, duration_s=2.34, detail="restarted", time_s=0.0)
    return ActionRecord(**{**base, **kw})


def test_each_outcome_reads_as_what_happened():
    assert describe(rec()) == "restart_container on ctr1 (manual): ok, recovered, 2.3 s - restarted"
    assert "ok, NOT recovered" in describe(rec(recovered=False))
    assert "FAILED" in describe(rec(ok=False, recovered=False))
    dry = describe(rec(outcome="dry_run", ok=False, recovered=False, detail="would restart container 'c1'"))
    assert dry == "restart_container on ctr1 (manual): DRY RUN, nothing done - would restart container 'c1'"
    assert "ok" not in dry.split(":")[1].split("-")[0] and "FAILED" not in dry   # a dry run is not a failure
    assert describe(rec(outcome="refused", ok=False, recovered=False, reason="cap: 3 actions in the last hour")) == \
        "restart_container on ctr1 (manual): REFUSED - cap: 3 actions in the last hour"
    assert describe(rec(outcome="reset", action="reset", who="alice")) == \
        "reset ctr1: halt and hourly budget cleared (by alice)"
    assert "FORCED by bob (stuck)" in describe(rec(forced=True, who="bob", why="stuck"))
    assert "ok, not verified: the agent stopped" in describe(rec(recovered=None,
                                                                 reason="not verified: the agent stopped 2 s into"))


def test_a_missing_box_or_action_says_what_to_type(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n[influxdb]\nurl = "http://127.0.0.1:9"\n'
                   '[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    for args, want in ((["reset"], "which box? `remediate -c FILE reset BOX`"),
                       (["vm1"], "which action on vm1?")):
        p = subprocess.run([sys.executable, "-m", "agent", "remediate", "-c", str(cfg), *args], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 2 and want in p.stderr and "Traceback" not in p.stderr, p.stderr
