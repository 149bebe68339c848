"""The live terminal view (`status --watch`, the lab demo): one rich table redrawn in place, plain lines otherwise.

render() is pure (a snapshot, the last events and the time in; a rich renderable out);
LiveView keeps the last events (state changes seen between two snapshots, plus notes) and
draws with rich.live.Live on a terminal, or prints format_status() when it changed otherwise.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent.core.events import State
from agent.status import PROBE_ORDER, Snapshot, degraded_text, format_status
from agent.timeparse import format_age
from probes import Layer

# Keyed by State, plus the InfluxDB fallback's "down" and "unknown" (agent.status), which are no State.
STATE_STYLES: dict[str, str] = {State.UP: "green", State.SUSPECT: "yellow", State.FROZEN: "bold red",
                                State.RECOVERING: "cyan", "down": "red", "unknown": "dim",
                                State.STOPPED: "dim", State.MAINTENANCE: "blue"}
EVENTS_KEPT = 8


def _clock(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, UTC).strftime("%H:%M:%S")


def render(snap: Snapshot | None, now_s: float, events: list[str] | tuple[str, ...] = (),
           waiting: str | None = None, title: str = "vobox-agent") -> Group:
    """Header, one row per box (state coloured), the open freezes, then the last events (newest last)."""
    head = Text(f"{title}  {_clock(now_s)} UTC", style="bold")
    if snap is None:
        return Group(head, Text(f"waiting for the agent: {waiting or '-'}", style="yellow"))
    head.append(f"   source: {snap.source}")
    if snap.updated_s:
        head.append(f", updated {format_age(now_s - snap.updated_s)} ago")
    parts: list[Any] = [head]
    if snap.note:
        parts.append(Text(f"note: {snap.note}", style="yellow"))
    if snap.error:
        parts.append(Text(f"LAST CYCLE JUDGED NO BOX: {snap.error}", style="bold red"))
    table = Table(expand=False, header_style="bold")
    for col in ("box", "kind", "state", "layer", "since", "rtt", "remediation"):
        table.add_column(col)
    for b in snap.boxes:
        rtt = " ".join(f"{p} {b.rtt_ms[p]:.2f}ms" for p in sorted(
            b.rtt_ms, key=lambda p: (PROBE_ORDER.index(p) if p in PROBE_ORDER else 99, p))) or "-"
        if b.maintenance:
            rem = Text(f"maintenance: {b.maintenance.get('reason')}", style="blue")
        elif b.held:
            rem = Text(f"held ({b.held.get('kind')})", style="yellow")
        elif b.halted:
            rem = Text(f"halted ({b.halt_reason or 'cap'})", style="red")
        else:
            rem = Text("-" if b.budget_left is None else f"budget {b.budget_left}")
        state = Text(b.state, style=STATE_STYLES.get(b.state, ""))
        if b.degraded and b.degraded.get("degraded"):
            state.append(" degraded", style="bold yellow")
        table.add_row(b.name, b.kind, state,
                      b.layer if b.layer != Layer.NONE else "-",
                      format_age(now_s - b.since_s) if b.since_s else "-", rtt, rem)
    parts.append(table)
    for b in snap.boxes:
        if b.degraded and b.degraded.get("degraded"):
            parts.append(Text(f"degraded {b.name}: {degraded_text(b.degraded)} (not remediated for that)",
                              style="yellow"))
    freezes = [b for b in snap.boxes if b.open_freeze]
    parts.append(Text("open freezes:", style="bold"))
    if freezes:
        for b in freezes:
            f = b.open_freeze or {}
            line = Text(f"  {b.name}: ", style="bold red")
            line.append(f"{f.get('layer') or '?'} for {format_age(now_s - f['start_s'])}"
                        + (f", evidence {f['evidence']}" if f.get("evidence") else ""))
            parts.append(line)
    else:
        parts.append(Text("  none", style="green"))
    parts.append(Text("last events:", style="bold"))
    parts.extend(Text(f"  {e}") for e in list(events)[-EVENTS_KEPT:])
    if not events:
        parts.append(Text("  none"))
    return Group(*parts)


def _signature(snap: Snapshot) -> list[Any]:
    """What the plain output shows of each box, without the ages."""
    return [snap.source, snap.note, snap.error] + [
        (b.name, b.state, b.layer, (b.open_freeze or {}).get("layer"), (b.held or {}).get("kind"), b.halted,
         b.budget_left, bool((b.degraded or {}).get("degraded"))) for b in snap.boxes]


class LiveView:
    """Draws snapshots: in place with rich on a terminal, else format_status() text whenever it changes."""

    def __init__(self, console: Console | None = None, title: str = "vobox-agent") -> None:
        self.console = console or Console()
        self.title = title
        self.events: deque[str] = deque(maxlen=EVENTS_KEPT)
        self._states: dict[str, str] = {}
        self._live: Live | None = None
        self._last_sig: list[Any] | None = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def note(self, message: str, now_s: float | None = None) -> None:
        """Add a line to the last events (e.g. the demo's "injected l4 into ctr1")."""
        line = f"{_clock(now_s if now_s is not None else time.time())} {message}"
        self.events.append(line)
        if self._live is None:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def update(self, snap: Snapshot | None, now_s: float, waiting: str | None = None) -> None:
        """Draw SNAP (None: WAITING says why there is none); state changes since the last one become events."""
        if snap is not None:
            for b in snap.boxes:
                old = self._states.get(b.name)
                if old is not None and old != b.state:
                    self.note(f"{b.name}: {old} -> {b.state}" + (f" ({b.layer})" if b.layer != Layer.NONE else ""),
                              now_s)
                self._states[b.name] = b.state
        if self._live is not None:
            self._live.update(render(snap, now_s, list(self.events), waiting, self.title), refresh=True)
            return
        text = format_status(snap, now_s) if snap is not None else f"waiting for the agent: {waiting}"
        # ages change every second: print when what a box is changed, not when it got older
        sig = _signature(snap) if snap is not None else [text]
        if sig != self._last_sig:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)
            self._last_sig = sig


def watch(read: Callable[[float], tuple[Snapshot | None, str | None]], interval_s: float = 1.0,
          console: Console | None = None, stop: Callable[[], bool] = lambda: False,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Redraw read(now) every interval_s until stop() or Ctrl-C; read returns (snapshot, why none)."""
    with LiveView(console) as view:
        try:
            while not stop():
                now = time.time()
                snap, why = read(now)
                view.update(snap, now, why)
                sleep(interval_s)
        except KeyboardInterrupt:
            pass
