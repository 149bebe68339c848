"""Container engine events, engine-neutral: the EngineEvent type and the pure rules over them.

Two rules live here, both pure and shared by the live stream and the resync (one reading):

- identity (`follow_names`): a box follows its container by NAME. The container holding a
  name is the one whose create/start/restart/rename (to that name) came last; events of a
  container that no longer holds the name (compose v1 renames the old one to `<id>_<name>`;
  an admin renames it to `<name>.bak`, runs a new one, removes the old one later) concern
  no box.
- intent (`judge_exit`): why a container stopped, from named evidence: an OOM (the `oom`
  event or inspect's OOMKilled), a stop request (`kill` with a stop signal, `stop`) and
  whether our remediation caused it, the exit code read with the cgroup version. A stop no
  one can be named for is a failure. Every decision carries its reason as text.

Each engine's decoder (agent.engines.docker, agent.engines.podman; the registry in
agent.engines) turns its raw events into EngineEvents, so nothing below knows the engine:
Podman's network events name the container in `name` where dockerd's name the network, and
Podman says `remove` where dockerd says `destroy`; the decoders absorb that.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Engine-neutral event kinds (Docker's container actions, network connect/disconnect prefixed).
KINDS = ("create", "start", "restart", "rename", "pause", "unpause", "kill", "die", "oom", "stop", "destroy",
         "health_status", "network_connect", "network_disconnect", "cleanup")
# Kinds that make a container the holder of the name it carries.
TAKES_NAME = frozenset({"create", "start", "restart", "rename"})
# Signals that end a container when sent by `docker kill`/`docker stop` (a kill -HUP to reload does not).
STOP_SIGNALS = frozenset({"9", "15", "2", "3", "SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "KILL", "TERM", "INT",
                          "QUIT"})
# Signal numbers (Linux, signal(7)) named in reasons: exit code 128+n is death by signal n (bash convention,
# which dockerd/containerd follow for the container's PID 1).
SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One container event as any engine reports it (time_s: epoch s).

    kind: one of KINDS; name: the container's name at the event, without a leading slash
    ("" when the engine does not say, as dockerd's network events); attrs: engine-neutral
    strings: `exit_code` (die), `signal` (kill), `old_name` (rename), `network` (network_*),
    `health` (health_status), `action` (the engine's raw action text). attributes: the engine's own
    `Actor.Attributes` as strings (the container's labels among them: discovery reads them).
    """

    kind: str
    container_id: str
    name: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    time_s: float = 0.0
    attributes: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def exit_code(self) -> int | None:
        """The exit code of a die (None when absent or not a number)."""
        text = self.attrs.get("exit_code", "")
        return int(text) if text.isascii() and text.lstrip("-").isdigit() else None


def follow_names(holders: Mapping[str, str], ev: EngineEvent) -> tuple[dict[str, str], frozenset[str]]:
    """Identity by name: (name -> container id after EV, the names EV concerns); pure.

    A create/start/restart/rename makes EV's container the holder of EV's name (a rename also
    gives up its old name); a destroy of the holder frees the name; any other event naming a
    name no one holds yet adopts it. EV concerns the names its container held before it or
    holds after it, so the old container of a replaced box concerns nothing once the new one
    has the name.
    """
    before = {n for n, cid in holders.items() if cid == ev.container_id}
    after = dict(holders)
    if ev.kind == "rename":
        # A container holds one name: a rename gives up whatever it held (Podman's rename event does not
        # name the old one; dockerd's `oldName` is the same name).
        after = {n: cid for n, cid in after.items() if cid != ev.container_id}
    if ev.name and (ev.kind in TAKES_NAME or (ev.kind != "destroy" and ev.name not in after)):
        after[ev.name] = ev.container_id
    if ev.kind == "destroy":
        after = {n: cid for n, cid in after.items() if cid != ev.container_id}
    now = {n for n, cid in after.items() if cid == ev.container_id}
    return after, frozenset(before | now)


@dataclass(frozen=True, slots=True)
class Intent:
    """A judged stop: operator intent (left alone unless restart_stopped) or a failure (remediated), and why."""

    operator: bool
    reason: str


def at(time_s: float | None) -> str:
    """TIME_S as the UTC text reasons use ("2025-11-03T02:14:07Z"; "an unknown time" for None)."""
    if time_s is None:
        return "an unknown time"
    return datetime.fromtimestamp(time_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_meaning(exit_code: int | None, oom: bool, cgroup_version: int | None) -> str:
    """What an exit code says by itself ("exit 137, killed (OOM or SIGKILL)").

    137 = 128 + SIGKILL. On cgroup v1 dockerd learns of an OOM kill from the memory cgroup's
    event and sets OOMKilled, so 137 without it is a plain SIGKILL; on cgroup v2 (EL9) an OOM
    kill of PID 1 is reported as 137 with OOMKilled false (moby/moby#38352,
    hashicorp/nomad#13119), so 137 alone may be either.
    """
    if exit_code is None:
        return "exit code unknown"
    if oom:
        return f"exit {exit_code}, OOM-killed"
    if exit_code == 0:
        return "exit 0 (ended on its own)"
    if exit_code == 137:
        if cgroup_version == 1:
            return "exit 137, killed (SIGKILL; not an OOM kill: cgroup v1 reports those)"
        return "exit 137, killed (OOM or SIGKILL)"
    if 128 < exit_code <= 128 + 64:
        sig = exit_code - 128
        return f"exit {exit_code}, killed by signal {sig}" + (f" ({SIGNAL_NAMES[sig]})" if sig in SIGNAL_NAMES else "")
    return f"exit {exit_code}"


@dataclass(frozen=True, slots=True)
class ExitEvidence:
    """What is known of one container exit (times: epoch s).

    request: what asked the container to stop before it died ("docker stop", "docker kill
    (signal 9)", None: nothing seen); ours: that request falls in a window our remediation
    opened; unseen: (from_s, to_s) when the exit happened while the agent did not see the
    engine's events (its stream was down, or the agent was not running) and the engine's own
    history (a hint only: dockerd keeps its last 256 events, none from before its restart)
    named no request.
    """

    exit_code: int | None
    finished_s: float | None
    oom: bool = False
    request: str | None = None
    ours: bool = False
    cgroup_version: int | None = None
    unseen: tuple[float, float] | None = None


def judge_exit(e: ExitEvidence) -> Intent:
    """The one reading of a container's exit; pure. Rules, first match wins:

    1. OOM (event or OOMKilled): failure. 2. A stop request our remediation made: not
    operator intent (the ladder goes on). 3. A stop request from anyone else: operator.
    4. Anything else, whatever the exit code (a service may exit 0 or 143 on SIGTERM): a
    failure, as no one can be named for it; an exit inside a span the agent did not see
    says so (an engine stop or restart stops containers the way `docker stop` does).
    """
    when = at(e.finished_s)
    meaning = exit_meaning(e.exit_code, e.oom, e.cgroup_version)
    if e.oom:
        return Intent(False, f"failed: {meaning} at {when}")
    if e.request and e.ours:
        return Intent(False, f"stopped by the agent's remediation: {e.request} at {when} ({meaning})")
    if e.request:
        return Intent(True, f"stopped by operator: {e.request} at {when} ({meaning})")
    unseen = ""
    if e.unseen is not None:
        unseen = (f", while the agent did not see the engine's events ({at(e.unseen[0])} to {at(e.unseen[1])}) "
                  f"and the engine's history names no stop request (engine stop or restart?)")
    return Intent(False, f"failed: {meaning} at {when}{unseen}")


# A kill whose signal the engine does not report (Podman 4.3) is a stop request only for an exit this soon after it:
# a SIGKILL's die follows in milliseconds (measured on Podman 4.3.1: 47 ms), a reload signal leaves it running.
UNREPORTED_KILL_WINDOW_S = 5.0
UNREPORTED_SIGNAL = "(signal not reported by the engine)"


# Podman 4.3 often records no `stop` event for a `podman stop` (CLI or compat API: libpod's stop returns early when
# conmon's cleanup process won the race), but its stop handler (pkg/domain/infra/abi ContainerStop) runs the
# container's Cleanup itself, besides the one conmon's exit command runs: a stop leaves TWO `cleanup` events after
# its exit, a crash, an OOM kill or a `podman kill` ONE (measured on 4.3.1: 9 of 9 stops, CLI and compat API,
# exit 0 and SIGKILL after the timeout, 14-85 ms after the exit; 3 of 3 exits on their own and kills: one).
# Only a cleanup this soon after the exit counts (REQUEST_AFTER_EXIT_S in the watcher bounds it as well).
CLEANUPS_OF_A_STOP = 2
SECOND_CLEANUP = ("(its second cleanup event after the exit: `podman stop` cleans up besides conmon; "
                  "Podman 4.3 records no stop event)")


def cleanup_request(ev: EngineEvent, cleanups_seen: int) -> str | None:
    """The stop request a `cleanup` EV is, given CLEANUPS_SEEN cleanups of the same exit before it (pure).

    "podman stop (its second cleanup event ...)" for the CLEANUPS_OF_A_STOP-th cleanup of one exit, None
    otherwise (the first is conmon's, after any exit). Source: Podman 4.3 pkg/domain/infra/abi ContainerStop,
    measured here (see CLEANUPS_OF_A_STOP).
    """
    if ev.kind != "cleanup" or cleanups_seen + 1 < CLEANUPS_OF_A_STOP:
        return None
    return f"{ev.attrs.get('engine') or 'podman'} stop {SECOND_CLEANUP}"


def stop_request(ev: EngineEvent) -> str | None:
    """The stop request EV is, if any: "docker stop" for a stop, "docker kill (signal N)" for a stopping kill,
    "podman kill (signal not reported by the engine)" for a kill of an engine that does not say its signal;
    named by the engine that reported it (attrs `engine`: "podman stop" on Podman)."""
    cli = ev.attrs.get("engine") or "docker"   # the decoder's engine: the command the operator typed
    if ev.kind == "stop":
        return f"{cli} stop"
    if ev.kind == "kill":
        if ev.attrs.get("signal_reported") == "no":
            return f"{cli} kill {UNREPORTED_SIGNAL}"
        sig = ev.attrs.get("signal") or "9"
        if sig in STOP_SIGNALS:
            return f"{cli} kill (signal {sig})"
    return None


def docker_time(text: Any) -> float | None:
    """Epoch s of Docker's RFC 3339 time with nanoseconds (None for the zero time or garbage)."""
    if not text or str(text).startswith("0001-"):
        return None
    main, _, frac = str(text).rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(main + "+00:00").timestamp()
    except ValueError:
        return None
    return base + (float("0." + frac[:9]) if frac[:9].isdigit() else 0.0)


def sorted_for_replay(events: Iterable[EngineEvent]) -> list[EngineEvent]:
    """EVENTS in engine order: by time, and at one time kill/oom before die before stop before destroy.

    dockerd stamps a stop's die and stop alike (the compose case: both at ...001000000).
    """
    rank = {"kill": 0, "oom": 0, "die": 1, "stop": 2, "cleanup": 2, "destroy": 3}
    return sorted(events, key=lambda e: (e.time_s, rank.get(e.kind, 1)))

