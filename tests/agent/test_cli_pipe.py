"""`vobox-agent status | head -1`: a reader that stops early ends the command quietly, with no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


# Buffered (a pipe, the default) the write fails only when the output is flushed, unbuffered at once.
@pytest.mark.parametrize("unbuffered", [pytest.param(False, id="buffered"), pytest.param(True, id="unbuffered")])
def test_a_closed_stdout_is_no_traceback(tmp_path, unbuffered):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[influxdb]\nurl = "http://127.0.0.1:8086"\n'
                   '[[box]]\nname = "b1"\nkind = "vm"\nipv4 = "192.0.2.10"\n')
    r, w = os.pipe()
    os.close(r)   # the reader (head) is gone before the command writes
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(cfg)], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    finally:
        os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
