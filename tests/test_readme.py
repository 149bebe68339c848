"""The README's first screen says, in order: what it is, the two commands, how to run it for real (with the default
config path), where the operator guide is (issue 33 item 7)."""
from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREEN_LINES = 30   # a first screen: a terminal's 30 lines, or the top of the rendered page


def test_the_first_screen_in_order():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        screen = "".join(f.readlines()[:SCREEN_LINES])
    marks = ["Stability monitoring and auto-remediation", "scripts/demo", "scripts/test", "pip install .",
             "/etc/vobox-agent/agent.toml", "vobox-agent run", "docs/operator-guide.md"]
    where = [screen.find(m) for m in marks]
    assert -1 not in where, dict(zip(marks, where, strict=True))
    assert where == sorted(where), dict(zip(marks, where, strict=True))
    assert "$VOBOX_AGENT_CONFIG" in screen
