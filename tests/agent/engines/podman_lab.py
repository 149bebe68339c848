"""A minimal rootful Podman set-up for the engine's lab tests, until the lab's own (`vobox-lab up --engine podman`).

Everything is lab-owned and named uniquely per run: a CONTAINERS_CONF file (runc, the ulimits this machine
allows, a file event log and a network config dir of its own; nothing under /etc changes), a
`podman system service` on a socket under /run/vbl-eng-*, a veth whose other end is in a monitor namespace
(no route out), a dual-stack macvlan network on it, a FROM-scratch busybox image. Leftovers of a crashed run
(its pytest process gone) are removed first.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

ROOT = pathlib.Path("/run")
PREFIX = "vbl-eng-"
IMAGE = "localhost/vbl-engine-busybox:3"


def missing() -> str | None:
    """Why this machine cannot run the Podman lab (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("podman", "ip", "nsenter"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install -y --no-install-recommends podman netavark aardvark-dns runc conmon)"
    if not os.path.exists("/bin/busybox"):
        return "needs /bin/busybox (busybox-static)"
    return None


def _run(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, check=check, timeout=120)


@dataclass
class PodmanLab:
    dir: pathlib.Path
    tag: str
    veth: str
    monitor_ns: str
    network: str
    subnet4: str
    subnet6: str
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> str:
        return str(self.dir / "containers.conf")

    @property
    def socket(self) -> str:
        return str(self.dir / "podman.sock")

    @property
    def url(self) -> str:
        return "unix://" + self.socket

    @property
    def env(self) -> dict:
        return dict(os.environ, CONTAINERS_CONF=self.conf)

    def podman(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run("podman", *argv, env=self.env, check=check)

    def address(self, n: int) -> tuple[str, str]:
        """The n-th box's IPv4 and IPv6 on the lab network."""
        return f"{self.subnet4}.{n}", f"{self.subnet6}::{n:x}"

    def run_box(self, n: int, *extra: str, name: str | None = None) -> str:
        ipv4, ipv6 = self.address(n)
        name = name or f"{self.tag}-c{n}"
        self.podman("run", "-d", "--name", name, "--network", self.network, "--ip", ipv4, "--ip6", ipv6,
                    *extra, IMAGE)
        return name

    def start_service(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        with open(self.dir / "service.log", "ab") as log:
            self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], env=self.env,
                                         stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"podman system service did not come up: {(self.dir / 'service.log').read_text()}")
            time.sleep(0.05)

    def stop_service(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def ns(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        """ARGV in the monitor namespace."""
        return _run("ip", "netns", "exec", self.monitor_ns, *argv, check=check)


def _cleanup(state: dict) -> None:
    env = dict(os.environ, CONTAINERS_CONF=state["conf"])
    for line in _run("podman", "ps", "-a", "--format", "{{.Names}}", env=env, check=False).stdout.split():
        if line.startswith(state["tag"] + "-"):
            _run("podman", "rm", "-f", "-t", "0", line, env=env, check=False)
    _run("podman", "network", "rm", "-f", state["network"], env=env, check=False)
    if state.get("pid"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state["pid"], 15)
    _run("ip", "link", "del", state["veth"], check=False)
    _run("ip", "netns", "del", state["monitor_ns"], check=False)
    shutil.rmtree(state["dir"], ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_leftovers() -> None:
    """Remove the labs of earlier runs whose pytest process is gone."""
    for d in ROOT.glob(PREFIX + "*"):
        try:
            state = json.loads((d / "lab.json").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(state.get("owner", 0))):
            _cleanup(state)


@contextlib.contextmanager
def podman_lab():
    """A running Podman lab (PodmanLab); everything removed afterwards."""
    cleanup_leftovers()
    sfx = uuid.uuid4().hex[:6]
    d = ROOT / f"{PREFIX}{sfx}"
    d.mkdir(mode=0o700)
    third = random.randint(100, 250)
    lab = PodmanLab(d, f"vbe{sfx}", f"vbe{sfx}", f"vbe-{sfx}-mon", f"vbe-{sfx}-net", f"198.18.{third}",
                    f"2001:db8:e{third:x}")
    state = {"owner": os.getpid(), "dir": str(d), "tag": lab.tag, "veth": lab.veth, "monitor_ns": lab.monitor_ns,
             "network": lab.network, "conf": lab.conf}
    (d / "lab.json").write_text(json.dumps(state))
    (d / "containers.conf").write_text(
        '[containers]\n'
        '# this machine\'s hard limits are below Podman\'s default ulimits\n'
        'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
        '[engine]\n'
        '# crun refuses this machine\'s hybrid cgroup layout\n'
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{d}/events.log"\n'
        '[network]\n'
        f'network_config_dir = "{d}/networks"\n')
    try:
        if lab.podman("image", "exists", IMAGE, check=False).returncode != 0:
            ctx = d / "image"
            (ctx / "bin").mkdir(parents=True)
            shutil.copy("/bin/busybox", ctx / "bin" / "busybox")
            # RUN-free: the applet links are made here, not by a build container
            for applet in _run("/bin/busybox", "--list").stdout.split():
                if applet != "busybox":
                    os.symlink("busybox", ctx / "bin" / applet)
            (ctx / "Containerfile").write_text(
                'FROM scratch\nCOPY bin/ /bin/\n'
                'CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/"]\n')
            lab.podman("build", "-q", "-t", IMAGE, str(ctx))
        _run("ip", "link", "add", lab.veth, "type", "veth", "peer", "name", lab.veth + "m")
        _run("ip", "netns", "add", lab.monitor_ns)
        _run("ip", "link", "set", lab.veth + "m", "netns", lab.monitor_ns)
        _run("ip", "link", "set", lab.veth, "up")
        lab.ns("ip", "link", "set", "lo", "up", check=True)
        lab.ns("ip", "link", "set", lab.veth + "m", "up", check=True)
        lab.ns("ip", "addr", "add", f"{lab.subnet4}.1/24", "dev", lab.veth + "m", check=True)
        lab.ns("ip", "addr", "add", f"{lab.subnet6}::1/64", "dev", lab.veth + "m", "nodad", check=True)
        lab.podman("network", "create", "-d", "macvlan", "--subnet", f"{lab.subnet4}.0/24", "--gateway",
                   f"{lab.subnet4}.1", "--ipv6", "--subnet", f"{lab.subnet6}::/64", "--gateway", f"{lab.subnet6}::1",
                   "-o", f"parent={lab.veth}", lab.network)
        lab.start_service()
        state["pid"] = lab.proc.pid if lab.proc else None
        (d / "lab.json").write_text(json.dumps(state))
        yield lab
    finally:
        lab.stop_service()
        state["pid"] = None
        _cleanup(state)
