"""Remove labs by run id, found by name (state file or not): containers and networks (in dockerd and in Podman),
namespaces, links, processes (the lab's podman service among them)."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import time

from lab import names, shell, state
from lab.engine import LabEngine, installed

log = logging.getLogger(__name__)


def _lines(argv: list[str]) -> list[str]:
    try:
        proc = shell.run(argv, check=False, timeout_s=60)
    except Exception as exc:  # noqa: BLE001 - a missing tool means nothing of that kind to clean
        log.debug("lab cleanup: %s", exc)
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def list_netns() -> list[str]:
    """Names of all named network namespaces."""
    return [line.split()[0] for line in _lines(["ip", "netns", "list"])]


def list_links() -> list[str]:
    """Interface names in the root namespace."""
    return [line.split()[0].split("@")[0] for line in _lines(["ip", "-br", "link"])]


def _engines(engine: LabEngine | None) -> list[LabEngine]:
    return [engine] if engine is not None else installed()


def list_containers(engine: LabEngine | None = None) -> list[str]:
    """Container names (all states) of ENGINE, or (None) of every installed engine (docker, podman)."""
    return [n for e in _engines(engine) for n in _lines(e.cmd("ps", "-a", "--format", "{{.Names}}"))]


def list_networks(engine: LabEngine | None = None) -> list[str]:
    """Network names of ENGINE, or (None) of every installed engine (docker, podman)."""
    return [n for e in _engines(engine) for n in _lines(e.cmd("network", "ls", "--format", "{{.Name}}"))]


def _pids_of_netns(ns: str) -> list[int]:
    return [int(p) for p in _lines(["ip", "netns", "pids", ns]) if p.isdigit()]


def _pids_using_run_dir(run_id: str) -> list[int]:
    """Processes whose command line names the lab's run dir (influxd, httpd), wherever they run."""
    marker = state.run_dir(run_id).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _unescape_mount(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below directory in this mount namespace, deepest first (FUSE and bind mounts)."""
    prefix = directory.rstrip("/")
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _unescape_mount(line.split()[4])
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _unmount_all(directory: str, removed: list[str]) -> None:
    # Lazy: a mount whose FUSE server is gone (or hung) detaches at once; stacked mounts come off one by one.
    for _round in range(10):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            if shell.ok(["umount", "-l", point], timeout_s=30):
                removed.append(f"mount {point}")


def _release_cvmfs(run_id: str) -> None:
    """Clear every CVMFS fault of the lab first, so operations blocked in its FUSE server return."""
    shutil.rmtree(os.path.join(state.run_dir(run_id), "cvmfs-mode"), ignore_errors=True)


def kill_pids(pids: list[int], what: str, timeout_s: float = 5.0) -> None:
    """SIGTERM (and SIGCONT) the pids, SIGKILL whatever is left after timeout_s."""
    if not pids:
        return
    log.debug("lab cleanup: stopping %s pids %s", what, pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a stopped process (the `hang` fault) acts on SIGTERM only when continued
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if state.process_start_ticks(p) is not None]
        if not alive:
            return
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _match(regex, items: list[str], run_id: str) -> list[str]:
    out = []
    for item in items:
        m = regex.match(item)
        if m and m.group(1) == run_id:
            out.append(item)
    return out


def remove_run(run_id: str) -> list[str]:
    """Remove everything named after run_id; return what was removed (for logs and reports)."""
    names.check_run_id(run_id)
    removed: list[str] = []
    _release_cvmfs(run_id)
    for eng in installed():
        for ctr in _match(names.CONTAINER_RE, list_containers(eng), run_id):
            shell.ok(eng.cmd("unpause", ctr), timeout_s=30)  # a paused container cannot be killed on 20.10
            if shell.ok(eng.rm_force(ctr), timeout_s=60):
                removed.append(f"{eng.name} container {ctr}" if eng.name != "docker" else f"container {ctr}")
        for net in _match(names.NETWORK_RE, list_networks(eng), run_id):
            if shell.ok(eng.cmd("network", "rm", net), timeout_s=60):
                removed.append(f"{eng.name} network {net}" if eng.name != "docker" else f"network {net}")
            else:
                log.warning("lab %s: %s network %s not removed (a container is still on it?)", run_id, eng.name, net)
    namespaces = _match(names.NETNS_RE, list_netns(), run_id)
    for ns in namespaces:
        kill_pids(_pids_of_netns(ns), f"processes in {ns}")
    kill_pids(_pids_using_run_dir(run_id), f"processes of lab {run_id}")
    _unmount_all(state.run_dir(run_id), removed)
    for ns in namespaces:
        if shell.ok(["ip", "netns", "delete", ns]):
            removed.append(f"netns {ns}")
    for link in _match(names.LINK_RE, list_links(), run_id):
        if shell.ok(["ip", "link", "delete", link]):
            removed.append(f"link {link}")
    rdir = state.run_dir(run_id)
    if os.path.isdir(rdir):
        shutil.rmtree(rdir, ignore_errors=True)
        removed.append(f"dir {rdir}")
    if state.read(run_id) is not None:
        removed.append(f"state {state.state_path(run_id)}")
    state.remove(run_id)
    if removed:
        log.info("lab %s removed: %s", run_id, ", ".join(removed))
    return removed


def left_of_run(run_id: str, networks: list[str] | None = None) -> list[str]:
    """What is still there of run_id (containers, networks with the containers still on them, namespaces, links)."""
    left = [f"container {c}" for c in _match(names.CONTAINER_RE, list_containers(), run_id)] if networks is None \
        else []
    for eng in installed():
        mine = _match(names.NETWORK_RE, list_networks(eng), run_id)
        for net in mine if networks is None else [n for n in networks if n in mine]:
            if eng.name == "docker":
                fmt = "{{range .Containers}}{{.Name}} {{end}}"
                proc = shell.run(eng.cmd("network", "inspect", "-f", fmt, net), check=False, timeout_s=60)
                on = proc.stdout.split() if proc.returncode == 0 else []
            else:
                proc = shell.run(eng.cmd("ps", "-a", "--filter", f"network={net}", "--format", "{{.Names}}"),
                                 check=False, timeout_s=60)
                on = proc.stdout.split() if proc.returncode == 0 else []
            cli = eng.name
            left.append(f"network {net}" + (f" (containers not of the lab still on it: {', '.join(on)}; "
                                            f"`{cli} network disconnect -f {net} NAME` or `{cli} rm -f NAME`, "
                                            "then `vobox-lab cleanup`)" if on else ""))
    if networks is None:
        left += [f"netns {n}" for n in _match(names.NETNS_RE, list_netns(), run_id)]
        left += [f"link {n}" for n in _match(names.LINK_RE, list_links(), run_id)]
    return left


def all_run_ids() -> set[str]:
    """Run ids that have anything at all: state file, run dir, namespace, link, container or network."""
    ids = set(state.run_ids())
    with contextlib.suppress(FileNotFoundError):
        ids.update(n for n in os.listdir(state.STATE_DIR) if names.RUN_ID_RE.match(n))
    for regex, items in ((names.NETNS_RE, list_netns()), (names.LINK_RE, list_links()),
                         (names.CONTAINER_RE, list_containers()), (names.NETWORK_RE, list_networks())):
        for item in items:
            m = regex.match(item)
            if m:
                ids.add(m.group(1))
    return {i for i in ids if names.RUN_ID_RE.match(i)}


def is_leftover(run_id: str, include_persistent: bool = False) -> bool:
    """True when a lab may be removed: no live owner, and not a finished persistent lab (unless asked)."""
    st = state.read(run_id)
    if st is None:
        return True  # never recorded: a crash before the state file, or a half-removed lab
    if state.owner_alive(st):
        return False
    # a finished persistent lab stays unless asked
    return not (st.get("persistent") and st.get("complete") and not include_persistent)


def cleanup_leftovers(include_persistent: bool = False) -> list[str]:
    """Remove labs whose owner process is gone (and persistent `lab up` labs too when asked); return run ids."""
    done = []
    with state.locked():
        for run_id in sorted(all_run_ids()):
            if is_leftover(run_id, include_persistent):
                remove_run(run_id)
                done.append(run_id)
    return done


def remove_all() -> list[str]:
    """Remove every lab on this machine, live or not (`lab down --all`); return run ids."""
    with state.locked():
        ids = sorted(all_run_ids())
        for run_id in ids:
            remove_run(run_id)
    return ids
