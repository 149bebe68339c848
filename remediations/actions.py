"""Remediation actions (reconnect_network, restart_container, exec, command) and the ACTIONS registry."""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import string
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.engines import ENGINES, EngineTraits, identify_client
from agent.engines.client import NoEngineSocket, client_factory
from remediations import announce
from remediations.model import ActionOutcome, PlannedAction, RemediationPolicy, RemediationTarget

log = logging.getLogger(__name__)

DETAIL_MAX_CHARS = 500
PLACEHOLDERS = ("box", "ipv4", "ipv6", "container")


def same_address(a: str | None, b: str | None) -> bool:
    """Whether two IP addresses are the same address (any spelling: case, zeros, ::); None/"" equal only each other."""
    if not a or not b:
        return not a and not b
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


def canonical_address(a: str | None) -> str | None:
    """A's canonical spelling (2001:DB8::0010 -> 2001:db8::10); unparsable or empty as given."""
    if not a:
        return a or None
    try:
        return str(ipaddress.ip_address(a))
    except ValueError:
        return a


def canonical_mac(mac: str | None) -> str | None:
    """MAC as lower-case colon-separated pairs (02-42-AC-11-00-02, 0242.ac11.0002 -> 02:42:ac:11:00:02); None for empty."""
    if not mac:
        return None
    digits = "".join(c for c in mac.lower() if c in "0123456789abcdef")
    if len(digits) != 12:
        return mac.lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def template_errors(arg: str, available: Iterable[str] = PLACEHOLDERS) -> list[str]:
    """What is wrong with one command argument template ([] when fine); AVAILABLE: the placeholders that have a value.

    Syntax: {box} {ipv4} {ipv6} {container} are replaced; {{ and }} are a literal { and }.
    """
    shown = json.dumps(arg, ensure_ascii=False)   # quoted, and one line whatever the argument holds
    try:
        parsed = list(string.Formatter().parse(arg))
    except ValueError as exc:
        return [f"bad placeholder syntax in {shown}: {exc} (write {{{{ and }}}} for a literal {{ and }})"]
    errors = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            errors.append(f"unknown placeholder {{{name}}} in {shown} "
                          f"(valid: {', '.join(f'{{{p}}}' for p in PLACEHOLDERS)}; {{{{ and }}}} for a literal {{ and }})")
        elif spec or conv:
            errors.append(f"placeholder {{{name}}} in {shown} takes no conversion or format spec")
        elif name not in available:
            errors.append(f"placeholder {{{name}}} but the box has no {name}")
    return errors


def expand_template(arg: str, values: dict[str, str | None]) -> str:
    """ARG with its placeholders replaced by VALUES and {{ }} made literal braces; ValueError naming a problem."""
    errors = template_errors(arg, [k for k, v in values.items() if v is not None])
    if errors:
        raise ValueError("; ".join(errors))
    return "".join(literal + (values[name] or "" if name is not None else "")
                   for literal, name, _, _ in string.Formatter().parse(arg))


class ActionError(Exception):
    """An expected failure of an action; its message is the record's detail."""


class DockerUnavailable(Exception):
    """The Docker daemon could not be reached: nothing was done, retry later."""


def docker_unreachable_reason(exc: BaseException) -> str | None:
    """Reason string when EXC means the daemon is unreachable (not that a call failed), else None."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, DockerUnavailable):
        return str(exc)
    if isinstance(exc, NoEngineSocket):
        return str(exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"docker daemon unreachable: {_why(exc)}"
    if (isinstance(exc, docker.errors.DockerException) and not isinstance(exc, docker.errors.APIError)
            and "Error while fetching server API version" in str(exc)):
        return f"docker daemon unreachable: {_why(exc)}"
    return None


# The words of the OS or of http.client that say why a connection failed, in the order they are looked for.
_WHY = ("Connection refused", "timed out", "No such file or directory", "Permission denied", "Name or service not known",
        "No route to host", "Remote end closed connection", "BadStatusLine", "Connection reset", "Expecting value",
        "Expecting property name")


def _why(exc: BaseException) -> str:
    """Why the engine could not be asked, in a few words (issue 33: one line a person reads, not urllib3's repr
    with the request's URL): the first of _WHY found in the error's text, else its first 120 characters."""
    text = " ".join(str(exc).split())
    for words in _WHY:
        if words in text:
            return {"BadStatusLine": "the answer is not HTTP", "Expecting value": "the answer is not JSON",
                    "Expecting property name": "the answer is not JSON"}.get(words, words)
    return text[:120]


def default_docker_factory(base_url: str | None = None, timeout_s: float = 60.0) -> Callable[[], Any]:
    """A factory returning an engine client for BASE_URL (default: agent.engines.client's choice of socket)."""
    return client_factory(base_url, timeout_s)


def engine_traits(client: Any) -> EngineTraits:
    """The differences of CLIENT's engine (one `/version` request); dockerd's when it cannot be told."""
    try:
        return identify_client(client).traits
    except Exception as exc:  # noqa: BLE001 - docker/requests errors: the action's own request will say why
        log.info("engine not identified (%s); acting as on dockerd", exc)
        return ENGINES["docker"].traits


def _macs(ctr: Any) -> dict[str, str | None]:
    """network name -> the container's MAC on it (canonical), from its inspect."""
    nets = (ctr.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {name: canonical_mac((ep or {}).get("MacAddress")) for name, ep in nets.items()}


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What actions get from outside: a docker client factory, the policy, the announce switch, and
    known_macs: box -> {address: the MAC ARP/NDP last answered from} (the agent's MAC memory), or None."""

    docker_factory: Callable[[], Any] = field(default_factory=default_docker_factory)
    policy: RemediationPolicy = field(default_factory=RemediationPolicy)
    known_macs: Callable[[str], Mapping[str, str]] | None = None

    def client(self) -> Any:
        """A docker client; DockerUnavailable when the daemon cannot be reached."""
        try:
            return self.docker_factory()
        except Exception as exc:  # classified, re-raised when not "unreachable"
            reason = docker_unreachable_reason(exc)
            if reason:
                raise DockerUnavailable(reason) from exc
            raise


class Action(ABC):
    """One remediation action; `run` returns a detail string or raises ActionError/DockerUnavailable."""

    name: ClassVar[str]
    needs_container: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()   # RemediationTarget fields the action cannot run without
    skip_layers: ClassVar[frozenset[str]] = frozenset()  # freeze layers this action cannot fix

    def unusable_reason(self, target: RemediationTarget) -> str | None:
        """Why this action cannot run on TARGET at all (None when it can): a field of `needs` not configured."""
        for key in ("container",) * self.needs_container + self.needs:
            if not getattr(target, key):
                return f"box {target.box!r} has no {key} configured; {self.name} refused"
        return None

    def suits(self, layer: str) -> bool:
        """Whether this action can fix a freeze of LAYER (the one place that rule lives)."""
        return layer not in self.skip_layers

    def describe(self, target: RemediationTarget, ctx: ActionContext) -> str:
        """What the action would do, for dry-run records."""
        return f"would run {self.name} on box {target.box!r}"

    @abstractmethod
    def run(self, target: RemediationTarget, ctx: ActionContext) -> str:
        """Do it; return the detail for the record."""


def _get_container(client: Any, target: RemediationTarget) -> Any:
    import docker.errors

    try:
        return client.containers.get(target.container)
    except docker.errors.NotFound:
        raise ActionError(f"container {target.container!r} not found") from None


def _endpoint(ctr: Any, network_name: str) -> dict | None:
    return (ctr.attrs.get("NetworkSettings", {}).get("Networks") or {}).get(network_name)


def _announce(ctr: Any, mac: str | None, ipv4: str | None, ipv6: str | None) -> str:
    """Gratuitous ARP / unsolicited NA for the addresses at MAC from the container's namespace; what was done."""
    pid = int((ctr.attrs.get("State") or {}).get("Pid") or 0)
    if pid <= 0 or not mac:
        return "not announced (no running process)"
    try:
        # An NA for a tentative address is not sent, nor would the verification after it reach the box.
        dad = f" ({announce.wait_ipv6_usable(pid, ipv6)})" if ipv6 else ""
        return "announced " + ",".join(announce.announce_from_pid(pid, mac, ipv4, ipv6)) + dad
    except OSError as exc:
        return f"announce failed: {exc}"


class ReconnectNetwork(Action):
    """Disconnect + connect the container to its configured network with the same addresses, then announce."""

    name = "reconnect_network"
    needs_container = True
    needs = ("network",)
    skip_layers = frozenset({"l4", "l7"})   # the network answers: ports accept (l4 dead) or answer (l7)

    def describe(self, target: RemediationTarget, ctx: ActionContext) -> str:
        return (f"would disconnect container {target.container!r} from network {target.network!r} and "
                f"connect it again with ipv4={target.ipv4} ipv6={target.ipv6}")

    def run(self, target: RemediationTarget, ctx: ActionContext) -> str:
        import docker.errors

        client = ctx.client()
        ctr = _get_container(client, target)
        try:
            net = client.networks.get(target.network)
        except docker.errors.NotFound:
            raise ActionError(f"network {target.network!r} not found") from None
        before = _endpoint(ctr, net.name)
        ipv4, ipv6, aliases, old_mac = target.ipv4, target.ipv6, [], None
        if before:
            ipam = before.get("IPAMConfig") or {}
            ipv4 = ipam.get("IPv4Address") or before.get("IPAddress") or ipv4
            ipv6 = ipam.get("IPv6Address") or before.get("GlobalIPv6Address") or ipv6
            # Docker adds the short id itself on connect; passing it again would duplicate it.
            aliases = [a for a in (before.get("Aliases") or []) if a not in (ctr.id[:12], ctr.id)]
            old_mac = canonical_mac(before.get("MacAddress"))
        # Addresses are compared and passed as addresses: an engine may echo them as the user typed them.
        ipv4, ipv6 = canonical_address(ipv4), canonical_address(ipv6)
        mac_from = "its endpoint"
        if old_mac is None and ctx.known_macs is not None:
            # Found disconnected: the MAC the box answered ARP/NDP from before (an engine that picks a MAC at
            # every connect, as Podman does, would otherwise give it a new one).
            seen = {canonical_address(a): canonical_mac(m) for a, m in ctx.known_macs(target.box).items()}
            old_mac = seen.get(ipv4) or seen.get(ipv6)
            mac_from = "the MAC last seen answering ARP/NDP"
        if not ipv4 and not ipv6:
            raise ActionError(f"no address known for container {target.container!r} on {net.name!r}")
        extra: dict[str, Any] = {}
        # By engine, not by API version: Podman applies a MAC passed on connect while reporting API 1.41;
        # dockerd from API 1.54 (agent.engines: TRAITS.mac_on_connect_min_api).
        traits = engine_traits(client)
        mac_passed = bool(old_mac and traits.honours_mac_on_connect(str(client.api.api_version)))
        if mac_passed:
            extra["mac_address"] = old_mac
        if before:
            net.disconnect(ctr, force=True)
        for attempt in (1, 2):
            try:
                net.connect(ctr, ipv4_address=ipv4, ipv6_address=ipv6, aliases=aliases or None, **extra)
                break
            except docker.errors.APIError as exc:
                if attempt == 2:
                    raise ActionError(f"connect {target.container} to {net.name} with ipv4={ipv4} ipv6={ipv6} "
                                      f"failed twice, container left disconnected: {exc}") from None
                log.warning("box %s: connect to %s failed (%s); retrying once", target.box, net.name, exc)
                time.sleep(0.5)
        ctr.reload()
        after = _endpoint(ctr, net.name)
        if not after:
            raise ActionError(f"container {target.container!r} not on network {net.name!r} after connect")
        got4 = canonical_address(after.get("IPAddress") or None)
        got6 = canonical_address(after.get("GlobalIPv6Address") or None)
        new_mac = canonical_mac(after.get("MacAddress"))
        problems = []
        if ipv4 and not same_address(got4, ipv4):
            problems.append(f"ipv4 {got4} != {ipv4}")
        if ipv6 and not same_address(got6, ipv6):
            problems.append(f"ipv6 {got6} != {ipv6}")
        parts = [f"reconnected {target.container} to {net.name} ipv4={got4} ipv6={got6}"]
        if aliases:
            parts.append(f"aliases={','.join(aliases)}")
        if old_mac is None:
            parts.append(f"mac={new_mac} (previous unknown: was disconnected)")
        elif new_mac == old_mac:
            parts.append(f"mac unchanged {new_mac}" + (f" (passed on connect, verified; from {mac_from})"
                                                        if mac_passed else ""))
        elif mac_passed:
            parts.append(f"MAC CHANGED {old_mac} -> {new_mac} ({traits.name} did not apply the MAC passed on connect;"
                         f" from {mac_from})")
        else:
            parts.append(f"MAC CHANGED {old_mac} -> {new_mac} ({traits.name} at API {client.api.api_version} "
                         "ignores a MAC passed on connect)")
        if problems:
            raise ActionError("; ".join(parts + ["address mismatch: " + ", ".join(problems)]))
        if ctx.policy.announce:
            parts.append(_announce(ctr, new_mac, got4, got6))
        return "; ".join(parts)


class RestartContainer(Action):
    """Unpause the container if paused, then restart it with the policy's stop timeout.

    The MAC of each network is compared before and after: an engine may give a new one at every start
    (Podman with netavark: agent.engines.podman); a changed MAC is said in the detail (the change is ours)
    and, with the policy's announce, announced by gratuitous ARP / unsolicited NA from the container.
    """

    name = "restart_container"
    needs_container = True

    def describe(self, target: RemediationTarget, ctx: ActionContext) -> str:
        return (f"would unpause (if paused) and restart container {target.container!r} "
                f"with stop timeout {ctx.policy.stop_timeout_s:g} s")

    def run(self, target: RemediationTarget, ctx: ActionContext) -> str:
        client = ctx.client()
        ctr = _get_container(client, target)
        parts = []
        if ctr.attrs.get("State", {}).get("Paused"):
            ctr.unpause()
            parts.append("unpaused")
        before = _macs(ctr)
        ctr.restart(timeout=max(0, int(round(ctx.policy.stop_timeout_s))))
        ctr.reload()
        status = ctr.attrs.get("State", {}).get("Status")
        if status != "running":
            raise ActionError("; ".join(parts + [f"restarted {target.container}, but status is {status}"]))
        parts.append(f"restarted {target.container} (stop timeout {ctx.policy.stop_timeout_s:g} s), running")
        nets = (ctr.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        pid = int((ctr.attrs.get("State") or {}).get("Pid") or 0)
        for name, mac in sorted(_macs(ctr).items()):
            old = before.get(name)
            ep = nets.get(name) or {}
            ipv4 = canonical_address(ep.get("IPAddress") or None)
            ipv6 = canonical_address(ep.get("GlobalIPv6Address") or None)
            source = ""
            if old and not mac and pid > 0:
                # Podman 4.3 may inspect a restarted container without its MAC (measured): read it in its namespace.
                try:
                    mac = canonical_mac(announce.mac_of_address(pid, ipv4, ipv6))
                except OSError as exc:
                    parts.append(f"MAC on {name} unknown after the restart (inspect has none; namespace: {exc})")
                    continue
                source = " (read in the container's namespace: the engine's inspect has none)"
            if ipv6 and pid > 0:
                # Verification follows at once: a tentative address (netavark leaves DAD on) answers nothing yet.
                dad = announce.wait_ipv6_usable(pid, ipv6)
                if not dad.endswith(" usable"):
                    parts.append(dad)
            if not old or not mac or old == mac:
                continue
            parts.append(f"MAC CHANGED on {name} {old} -> {mac} by the restart (ours){source}")
            if ctx.policy.announce:
                parts.append(_announce(ctr, mac, ipv4, ipv6))
        return "; ".join(parts)


def expand_command(target: RemediationTarget, key: str = "command") -> list[str]:
    """The box's argv template KEY ("command" or "exec") expanded (see expand_template; no shell involved);
    ActionError naming the argument."""
    values = {"box": target.box, "ipv4": target.ipv4, "ipv6": target.ipv6, "container": target.container}
    argv = []
    for i, arg in enumerate(getattr(target, key)):
        try:
            argv.append(expand_template(arg, values))
        except ValueError as exc:
            raise ActionError(f"{key}[{i}] {arg!r} of box {target.box!r}: {exc}") from None
    return argv


def _truncate(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


class Command(Action):
    """Run the box's argv template (no shell) with a timeout; exit status 0 is success."""

    name = "command"
    needs = ("command",)

    def describe(self, target: RemediationTarget, ctx: ActionContext) -> str:
        return f"would run {expand_command(target)} (timeout {ctx.policy.command_timeout_s:g} s)"

    def run(self, target: RemediationTarget, ctx: ActionContext) -> str:
        argv = expand_command(target)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=ctx.policy.command_timeout_s,
                                  check=False)
        except FileNotFoundError:
            raise ActionError(f"command not found: {argv[0]!r}") from None
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace")
            raise ActionError(f"{argv} killed after timeout {ctx.policy.command_timeout_s:g} s; "
                              f"output: {_truncate(out)}") from None
        out = _truncate(proc.stdout.decode(errors="replace"))
        detail = f"{argv} exit {proc.returncode}; output: {out}"
        if proc.returncode != 0:
            raise ActionError(detail)
        return detail


EXEC_POLL_S = 0.2     # how often a running exec is asked whether it has ended
EXEC_REAP_S = 2.0     # how long a killed exec is given to be seen ended


def _descendants(pid: int) -> list[int]:
    """PID and every process below it (host PIDs, from /proc/PID/task/*/children); [] when PID is gone."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as fh:
                    todo += [int(c) for c in fh.read().split()]
            except (OSError, ValueError):
                continue
    return out


def _in_container(pid: int, container_id: str) -> bool:
    """Whether host PID runs in the container CONTAINER_ID (its cgroup path names the full ID, as Docker's
    cgroupfs and systemd drivers both do). A PID read in another PID namespace, or reused, names another
    process: it must never be killed."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="ascii", errors="replace") as fh:
            return bool(container_id) and container_id in fh.read()
    except OSError:
        return False


def _kill_tree(pid: int, container_id: str) -> str:
    """SIGKILL PID and its descendants that run in CONTAINER_ID (children first found, then killed); what was done."""
    if pid <= 0:
        return "no process id known"
    if not _in_container(pid, container_id):
        return (f"process {pid} is not one of container {container_id[:12]}'s here (the agent needs the "
                "host's PID namespace); nothing killed")
    pids = [p for p in _descendants(pid) if _in_container(p, container_id)]
    killed = 0
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            continue
        except PermissionError as exc:
            return f"cannot kill process {p}: {exc.strerror} (the agent needs the host's PID namespace)"
    return f"killed {killed} process(es) (pid {pid})" if killed else f"process {pid} not visible here"


def _exec_started(info: Mapping[str, Any]) -> bool:
    """Whether an exec inspect (GET /exec/{id}/json) shows the exec begun: running, or with a process id."""
    return bool(info.get("Running")) or int(info.get("Pid") or 0) > 0


def _exec_ended(info: Mapping[str, Any], started: bool, reading: bool) -> bool:
    """Whether the exec has ended: not running, and either an exit code of an exec seen started or its output
    stream closed (READING False: exec_start returned).

    dockerd reports ExitCode null until the exec ends; Podman 4.3's compat API reports a created, not yet
    started exec as Running false, ExitCode 0, Pid 0 (measured here), so an exit code alone before the
    exec was seen started means nothing (agent.engines.podman).
    """
    if info.get("Running"):
        return False
    return (info.get("ExitCode") is not None and started) or not reading


class Exec(Action):
    """Run the box's `exec` argv inside its container (Docker exec, no shell) with a hard timeout; exit 0 is success.

    At the timeout the exec's process and its descendants are killed (SIGKILL to their host PIDs, read
    from the exec's inspect) and the action fails: a hung command never holds the remediation worker.
    """

    name = "exec"
    needs_container = True
    needs = ("exec",)
    skip_layers = frozenset({"l2", "l3"})   # the box cannot be reached; a command inside fixes no network

    def describe(self, target: RemediationTarget, ctx: ActionContext) -> str:
        return (f"would run {expand_command(target, 'exec')} in container {target.container!r} "
                f"(timeout {ctx.policy.exec_timeout_s:g} s)")

    def run(self, target: RemediationTarget, ctx: ActionContext) -> str:
        import docker.errors

        argv = expand_command(target, "exec")
        timeout_s = ctx.policy.exec_timeout_s
        api = ctx.client().api
        try:
            created = api.exec_create(target.container, argv, stdout=True, stderr=True, stdin=False, tty=False)
        except docker.errors.NotFound:
            raise ActionError(f"container {target.container!r} not found") from None
        except docker.errors.APIError as exc:   # 409: not running, or paused
            raise ActionError(_truncate(f"exec {argv} in {target.container}: {exc.explanation or exc}")) from None
        exec_id = created["Id"]
        chunks: list[bytes] = []

        def read() -> None:
            # The output only: whether the exec ended is asked of exec_inspect, so a read timeout or a
            # child that keeps stdout open cannot make a finished command look hung, or a hung one finished.
            try:
                for chunk in api.exec_start(exec_id, stream=True):
                    chunks.append(chunk)
            except Exception as exc:  # noqa: BLE001 - output is best effort; the exit code decides
                chunks.append(f"\n[output lost: {type(exc).__name__}]".encode())

        reader = threading.Thread(target=read, name=f"exec-{target.box}", daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        info = api.exec_inspect(exec_id)
        started = _exec_started(info)
        while not _exec_ended(info, started, reader.is_alive()):
            if time.monotonic() >= deadline:
                killed = _kill_tree(int(info.get("Pid") or 0), str(info.get("ContainerID") or ""))
                end = time.monotonic() + EXEC_REAP_S
                while time.monotonic() < end and api.exec_inspect(exec_id).get("Running"):
                    time.sleep(EXEC_POLL_S)
                reader.join(EXEC_POLL_S)
                out = _truncate(b"".join(chunks).decode(errors="replace"))
                raise ActionError(f"exec {argv} in {target.container} killed after timeout {timeout_s:g} s "
                                  f"({killed}); output: {out}")
            time.sleep(EXEC_POLL_S)
            info = api.exec_inspect(exec_id)
            started = started or _exec_started(info)
        reader.join(EXEC_REAP_S)
        code = info.get("ExitCode")
        detail = (f"exec {argv} in {target.container} exit {code}; "
                  f"output: {_truncate(b''.join(chunks).decode(errors='replace'))}")
        if code != 0:
            raise ActionError(detail)
        return detail


ACTIONS: dict[str, Action] = {a.name: a for a in (ReconnectNetwork(), Exec(), RestartContainer(), Command())}


def get_action(name: str) -> Action:
    """The action called NAME; ValueError listing the valid names otherwise."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise ValueError(f"unknown remediation action {name!r}; valid: {', '.join(ACTIONS)}") from None


def applicable_steps(ladder: Iterable[str], layer: str) -> list[str]:
    """The steps of LADDER that suit a freeze of LAYER, in order; ValueError for an unknown action name."""
    return [name for name in ladder if get_action(name).suits(layer)]


def execute(plan: PlannedAction, ctx: ActionContext, clock: Callable[[], float] = time.time) -> ActionOutcome:
    """Run PLAN (or only describe it under dry-run); expected failures come back as data."""
    import docker.errors
    import requests.exceptions

    action = get_action(plan.action)
    started_s = clock()
    t0 = time.monotonic()

    def outcome(ok: bool, detail: str, deferred: str | None = None) -> ActionOutcome:
        return ActionOutcome(ok=ok, detail=detail, duration_s=round(time.monotonic() - t0, 3),
                             started_s=started_s, deferred_reason=deferred)

    unusable = action.unusable_reason(plan.target)
    if unusable:
        return ActionOutcome(ok=False, detail=unusable, duration_s=0.0, started_s=started_s, refused_reason=unusable)
    try:
        if plan.dry_run:
            return outcome(True, "dry-run: " + action.describe(plan.target, ctx))
        detail = action.run(plan.target, ctx)
    except ActionError as exc:
        log.warning("box %s: action %s failed: %s", plan.box, plan.action, exc)
        return outcome(False, str(exc))
    except (DockerUnavailable, docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        reason = docker_unreachable_reason(exc)
        if reason:
            log.warning("box %s: action %s deferred: %s", plan.box, plan.action, reason)
            return outcome(False, f"deferred: {reason}", deferred=reason)
        log.warning("box %s: action %s failed: docker: %s", plan.box, plan.action, exc)
        return outcome(False, _truncate(f"docker error: {exc}"))
    log.info("box %s: action %s done: %s", plan.box, plan.action, detail)
    return outcome(True, detail)
