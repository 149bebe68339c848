"""The live view (agent.live): the rich rendering, the plain lines off a terminal, and `status --watch`."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

from rich.console import Console

from agent.live import LiveView, render, watch
from agent.status import read_status_file
from tests.agent.ops.test_status_events import STATUS_FIXTURE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOW = STATUS_FIXTURE["updated_s"] + 2


def snap(tmp_path, **box_changes):
    data = json.loads(json.dumps(STATUS_FIXTURE))
    for box, changes in box_changes.items():
        data["boxes"][box].update(changes)
    path = tmp_path / "status.json"
    path.write_text(json.dumps(data))
    s, why = read_status_file(str(path), NOW)
    assert s is not None, why
    return s


def test_render_has_a_header_coloured_states_open_freezes_and_events(tmp_path):
    console = Console(record=True, width=140, force_terminal=True, color_system="standard", file=io.StringIO())
    console.print(render(snap(tmp_path), NOW, ["08:00:00 vobox-vm-1: suspect -> frozen (l3)"]))
    text = console.export_text(styles=False, clear=False)
    lines = text.splitlines()
    assert lines[0].startswith("vobox-agent  ") and "source: agent, updated 2s ago" in lines[0]
    row = next(ln for ln in lines if "vobox-vm-1" in ln and "vm" in ln)
    assert "frozen" in row and "l3" in row and "halted (max_per_box_per_hour)" in row
    ctr = next(ln for ln in lines if "vobox-ctr-1" in ln)
    assert "icmp 0.21ms" in ctr and "budget 3" in ctr
    freezes = text.index("open freezes:")
    assert "vobox-vm-1: l3 for 102s" in text[freezes:]
    assert text.index("last events:") > freezes
    assert "vobox-vm-1: suspect -> frozen (l3)" in text
    styled = console.export_text(styles=True)
    assert "\x1b[1;31mfrozen" in styled        # frozen: bold red
    assert "\x1b[32mup" in styled              # up: green


def test_render_without_a_snapshot_says_why():
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(render(None, NOW, waiting="status.json not found (is the agent running?)"))
    assert "waiting for the agent: status.json not found" in console.export_text()


def test_off_a_terminal_it_prints_plain_lines_only_when_a_box_changed(tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=80)   # a StringIO is not a terminal
    with LiveView(console) as view:
        view.update(snap(tmp_path), NOW)
        view.update(snap(tmp_path), NOW + 1)                           # only the header's age changed
        view.update(snap(tmp_path, **{"vobox-ctr-1": {"state": "suspect", "layer": "l4"}}), NOW + 2)
        view.note(">>> injected l4 into ctr1", NOW + 2)
    text = out.getvalue()
    assert "\x1b[" not in text                  # no colour, no cursor movement
    assert text.count("source: agent") == 2
    assert "vobox-ctr-1: up -> suspect (l4)" in text
    assert ">>> injected l4 into ctr1" in text
    # one status line per box, never wrapped at the console width
    assert all(len([ln for ln in text.splitlines() if ln.startswith(name)]) >= 2
               for name in ("vobox-ctr-1", "vobox-vm-1"))
    assert max(len(ln) for ln in text.splitlines()) > 80


def test_on_a_terminal_it_redraws_in_place(tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=True, color_system="standard")
    calls = []

    def read(now):
        calls.append(now)
        return snap(tmp_path, **({"vobox-ctr-1": {"state": "frozen"}} if len(calls) > 1 else {})), None

    watch(read, 0.0, console=console, stop=lambda: len(calls) >= 3, sleep=lambda s: None)
    text = out.getvalue()
    assert len(calls) == 3
    assert "\x1b[2K" in text and "\x1b[1A" in text   # erase line / cursor up: the table is redrawn, not appended
    assert "vobox-ctr-1: up -> frozen" in text


def test_status_watch_prints_plain_lines_when_piped_and_stops_on_ctrl_c(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    data = json.loads(json.dumps(STATUS_FIXTURE))
    data["updated_s"] = time.time()
    (state_dir / "status.json").write_text(json.dumps(data))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{state_dir}"\n\n[[box]]\nname = "vobox-vm-1"\nkind = "vm"\n'
                   f'ipv4 = "192.0.2.10"\n')
    # Ctrl-C as a terminal sends it: SIGINT at its default (a shell's background job inherits it ignored)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "status", "-c", str(cfg), "--watch", "--interval",
                             "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()    # the first table is out: the loop runs
    time.sleep(0.5)                   # five more redraw intervals with nothing changed
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    out, err = first + proc.stdout.read(), proc.stderr.read()   # read() keeps what readline() buffered
    assert proc.returncode == 0, err
    assert "\x1b[" not in out
    assert out.count("source: agent") == 1, out       # nothing changed: printed once
    assert "vobox-vm-1" in out and "frozen" in out


def test_status_watch_refuses_json(tmp_path):
    """Refused for the --json, said in one line, before (and whatever) the config: a usage error first."""
    good = tmp_path / "agent.toml"
    good.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n[[box]]\nname = "b"\nkind = "vm"\n'
                    'ipv4 = "192.0.2.10"\n')
    for cfg in (str(good), "/nonexistent.toml"):
        p = subprocess.run([sys.executable, "-m", "agent", "status", "-c", cfg, "--watch", "--json"],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
        assert p.returncode == 2, (cfg, p.stderr)
        assert p.stderr == "vobox-agent status: --watch takes no --json and needs --interval > 0\n", (cfg, p.stderr)


def test_a_degraded_box_is_marked_in_the_live_view_and_in_status(tmp_path):
    from agent.status import format_status
    d = {"degraded": True, "percent_state_change": 43.8, "failed_share": 0.524,
         "reason": "flapping: 34 % state change over the last 21 cycles"}
    s = snap(tmp_path, **{"vobox-ctr-1": {"degraded": d}})
    console = Console(record=True, width=160, force_terminal=True, color_system="standard", file=io.StringIO())
    console.print(render(s, NOW))
    text = console.export_text(styles=False, clear=False)
    row = next(ln for ln in text.splitlines() if "vobox-ctr-1" in ln and "container" in ln)
    assert "up degraded" in row
    # the figures now first (never the stale onset figure as current), then why it became degraded
    assert ("degraded vobox-ctr-1: 44 % state change, 52 % of cycles failed now; became degraded on flapping: "
            "34 % state change over the last 21 cycles (not remediated") in text
    plain = format_status(s, NOW)
    assert ("DEGRADED 44 % state change, 52 % of cycles failed now; became degraded on flapping: 34 % state "
            "change over the last 21 cycles (not remediated for that)") in plain
    calm = snap(tmp_path, **{"vobox-ctr-1": {"degraded": {**d, "degraded": False}}})
    assert "DEGRADED" not in format_status(calm, NOW)
