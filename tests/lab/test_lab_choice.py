"""Without --run-id, a command that changes a lab refuses to guess when several labs are up (another admin's, a demo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lab(state_dir, run_id, created_s):
    with open(os.path.join(state_dir, f"{run_id}.json"), "w") as fh:
        json.dump({"run_id": run_id, "complete": True, "persistent": True, "created_s": created_s}, fh)


def _cli(state_dir, *args):
    env = dict(os.environ, VOBOX_LAB_STATE_DIR=str(state_dir))
    env.pop("VOBOX_LAB_RUN_ID", None)
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def test_fault_clear_and_down_name_the_labs_instead_of_picking_the_newest(tmp_path):
    _lab(tmp_path, "aaaaa1", 1000.0)
    _lab(tmp_path, "aaaaa2", 2000.0)
    for args in (("fault", "ctr1", "l4"), ("clear", "ctr1"), ("influx", "stop"), ("segment", "down"), ("down",)):
        proc = _cli(tmp_path, *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "2 labs are up (aaaaa2, aaaaa1, newest first)" in proc.stderr, (args, proc.stderr)
        assert "--run-id" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["aaaaa1.json", "aaaaa2.json"]   # nothing was touched
