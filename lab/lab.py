"""The lab: monitor namespace, veth parent, macvlan network of an engine (Docker or Podman), container and VM
boxes, InfluxDB, faults."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING

from agent import netns
from lab import addressing, cleanup, credentials, cvmfs, engine as engines, faults, names, shell, state
from lab.box import LabBox
from lab.errors import LabError, UnknownBoxError
from lab.image import ensure_image

if TYPE_CHECKING:
    import docker

    from lab.influx import InfluxServer  # imported when started: not needed otherwise
    from lab.prometheus import PrometheusStack

log = logging.getLogger(__name__)

DEFAULT_TCP_PORTS = (1093, 8084)
DEFAULT_TLS_PORT = 8443   # container boxes: openssl s_server (HTTP over TLS) with the lab's certificate
DEFAULT_TLS_CERT_DAYS = 365.0
PROXY_PATH = "/tmp/x509up_u0"  # where set_proxy() writes a container box's proxy (root's default proxy file)
CVMFS_MOUNT_TIMEOUT_S = 15.0
INFLUX_DATABASE = "vobox"
CONTAINER_HOST_BASE = 10  # container i gets .1i / ::1i
VM_HOST_BASE = 100        # vm i gets .10i / ::10i


def x509_der(pem: bytes) -> bytes:
    """DER of the first certificate in a PEM text."""
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def _preflight(influx: bool, engine: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"the lab needs root (namespaces, links, {engine}): run as root")
    tools = ["ip", engine, "nft", "nsenter"] + (["influxd"] if influx else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools for the lab: {', '.join(missing)} (run scripts/setup)")
    reason = engines.unavailable_reason(engine)
    if reason:
        raise LabError(f"{reason} (start dockerd, or run scripts/setup)" if engine == "docker" else reason)


class Lab:
    """A running lab, backed by its state file (/run/vobox-lab/<run_id>.json) so any process can drive it."""

    def __init__(self, st: dict) -> None:
        self._st = st
        self._influx: InfluxServer | None = None  # started by this process, if any
        self._prometheus: PrometheusStack | None = None  # started by this process, if any
        self._listeners: dict[str, list[subprocess.Popen]] = {}

    # ----- creation / loading / removal -------------------------------------------------------
    @classmethod
    def create(cls, containers: int = 2, vms: int = 1, tcp_ports: tuple[int, ...] = DEFAULT_TCP_PORTS,
               influx: bool = True, persistent: bool = False, visible: bool = False, ready_timeout_s: float = 60.0,
               tls_port: int = DEFAULT_TLS_PORT, tls_cert_days: float = DEFAULT_TLS_CERT_DAYS,
               box_env: dict[str, dict[str, str]] | None = None, engine: str = engines.DEFAULT_ENGINE) -> Lab:
        """Build a lab and return once every box answers TCP (IPv4 and IPv6) and InfluxDB answers /ping.

        engine: the container engine of the container boxes, "docker" (dockerd, the default) or "podman"
        (rootful Podman behind a lab-owned `podman system service`, see lab.engine); LabError when unknown.

        Container boxes also get a TLS service on tls_port whose certificate expires tls_cert_days from
        now (float, negative = expired; set_tls_cert changes it) and the CVMFS stand-in at /cvmfs.
        box_env: extra environment per container box name (e.g. a planted password for the redaction test).
        """
        if not (0 <= containers <= 89 and 0 <= vms <= 99 and containers + vms >= 1):
            raise ValueError(f"lab wants 0..89 containers and 0..99 vms, at least one box; "
                             f"got containers={containers} vms={vms}")
        ports = tuple(int(p) for p in tcp_ports)
        if not ports or any(not 1 <= p <= 65535 for p in ports):
            raise ValueError(f"tcp_ports must be 1..65535, at least one; got {tcp_ports!r}")
        if not 1 <= int(tls_port) <= 65535 or int(tls_port) in ports:
            raise ValueError(f"tls_port must be 1..65535 and not one of tcp_ports {list(ports)}; got {tls_port!r}")
        engines.check_engine(engine)
        _preflight(influx, engine)
        with state.locked():
            existing = cleanup.all_run_ids()
            run_id = names.new_run_id()
            while run_id in existing:
                run_id = names.new_run_id()
            st = {
                "run_id": run_id,
                "owner_pid": os.getpid(),
                "owner_start": state.process_start_ticks(os.getpid()),
                "persistent": bool(persistent),
                # visible: an operator's lab (the demo) that `vobox-lab status/down` find without --run-id
                "visible": bool(visible or persistent),
                "engine": engine,
                "complete": False,
                "created_s": time.time(),
                "containers": containers,
                "vms": vms,
                "tcp_ports": list(ports),
                "tls_port": int(tls_port),
                "tls_cert_days": float(tls_cert_days),
                "box_env": {str(k): {str(n): str(v) for n, v in e.items()} for k, e in (box_env or {}).items()},
                "influx": {"wanted": bool(influx), "running": False},
                "faults": {},
                "segment_down": False,
                "loss_percent": 0.0,
                "boxes": [],
            }
            state.write(st)
        lab = cls(st)
        t0 = time.monotonic()
        try:
            lab._build(ready_timeout_s)
        except BaseException:
            log.error("lab %s: create failed; removing what was made", run_id)
            lab._stop_own_influx()
            cleanup.remove_run(run_id)
            raise
        with lab._mutating():
            lab._st["complete"] = True
            lab._st["create_s"] = round(time.monotonic() - t0, 3)
        log.info("lab %s up in %.1fs: %d containers, %d vms, %s %s, monitor ns %s", run_id, lab.create_s,
                 containers, vms, lab.ipv4_subnet, lab.ipv6_subnet, lab.monitor_ns)
        return lab

    @classmethod
    def load(cls, run_id: str | None = None, sole: bool = False) -> Lab:
        """The lab with this run id, or (None) the newest lab an operator made: `vobox-lab up`, or a running demo.

        sole: with no run id, LabError unless exactly one such lab is up (for commands that change a lab).
        """
        if run_id is not None:
            names.check_run_id(run_id)
            st = state.read(run_id)
            if st is None:
                raise LabError(f"no lab with run id {run_id!r} (labs: {', '.join(state.run_ids()) or 'none'})")
            return cls(st)
        candidates = [s for s in (state.read(r) for r in state.run_ids()) if s and s.get("complete")]
        persistent = [s for s in candidates
                      if s.get("persistent") or (s.get("visible") and state.owner_alive(s))]
        if not persistent:
            # Labs of running processes (tests) are never picked implicitly: `lab down` must not hit them.
            live = [s["run_id"] for s in candidates if state.owner_alive(s)]
            hint = f" (labs of running processes: {', '.join(live)}; pick one with --run-id)" if live else ""
            raise LabError(f"no lab is up; make one with `vobox-lab up`{hint}")
        persistent.sort(key=lambda s: s.get("created_s", 0), reverse=True)
        if sole and len(persistent) > 1:
            raise LabError(f"{len(persistent)} labs are up ({', '.join(s['run_id'] for s in persistent)}, newest "
                           f"first); say which with --run-id or $VOBOX_LAB_RUN_ID")
        return cls(persistent[0])

    def down(self) -> list[str]:
        """Remove everything this lab made (containers, network, namespaces, links, influxd, files)."""
        self._stop_own_influx()
        self.prometheus_stop()
        for procs in self._listeners.values():
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.kill()
                    proc.wait(5)
        self._listeners.clear()
        with state.locked():
            removed = cleanup.remove_run(self.run_id)
        return removed

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"Lab(run_id={self.run_id!r}, boxes={[b.name for b in self.boxes]}, monitor_ns={self.monitor_ns!r})"

    # ----- names and addresses ----------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """Short hex id carried by every name this lab made."""
        return self._st["run_id"]

    @property
    def monitor_ns(self) -> str:
        """Namespace where everything that probes runs (no route out)."""
        return names.monitor_netns(self.run_id)

    @property
    def monitor_link(self) -> str:
        """The monitor's interface (veth end) inside monitor_ns."""
        return names.monitor_link(self.run_id)

    @property
    def parent_link(self) -> str:
        """Root-side veth end, parent of the macvlan network: the L2 segment."""
        return names.parent_link(self.run_id)

    @property
    def network(self) -> str:
        """The engine's macvlan network."""
        return names.network(self.run_id)

    @property
    def engine(self) -> engines.LabEngine:
        """The container engine of this lab (docker or podman): its command line and its API socket."""
        return engines.for_lab(self._st.get("engine", engines.DEFAULT_ENGINE), self.run_id)

    @property
    def docker_host(self) -> str:
        """DOCKER_HOST of this lab's engine (unix://...): what the agent and docker-py are pointed at."""
        return self.engine.docker_host

    def agent_env(self) -> dict[str, str]:
        """Environment an agent process needs to reach this lab's engine ({} on dockerd's default socket)."""
        return self.engine.agent_env

    def engine_client(self, version: str = "1.41") -> docker.DockerClient:
        """A docker-py client of this lab's engine (the caller closes it)."""
        return self.engine.client(version)

    def engine_restart(self, down_s: float = 0.0) -> None:
        """Restart the engine's API service, leaving the containers running: the lab's podman service is
        stopped, left down for down_s seconds and started again. LabError on dockerd (shared by every
        lab of the machine: never restarted; a test goes through a socket proxy instead)."""
        if self.engine.name != "podman":
            raise LabError(f"lab {self.run_id} runs on {self.engine.name}; only a podman lab restarts its service")
        with self._mutating():
            engines.stop_podman_service(self.run_id, self._st.get("podman_service_pid"))
            self._st["podman_service_pid"] = None
        if down_s > 0:
            time.sleep(down_s)
        self._start_engine_service()

    def _start_engine_service(self) -> None:
        pid = engines.start_podman_service(self.run_id)
        with self._mutating():
            self._st["podman_service_pid"] = pid

    @property
    def run_dir(self) -> str:
        """Directory with this lab's files."""
        return state.run_dir(self.run_id)

    @property
    def ipv4_subnet(self) -> str:
        """The lab's IPv4 /24."""
        return str(addressing.subnets(self._st["subnet_index"])[0])

    @property
    def ipv6_subnet(self) -> str:
        """The lab's IPv6 /64."""
        return str(addressing.subnets(self._st["subnet_index"])[1])

    @property
    def monitor_ipv4(self) -> str:
        """The monitor's IPv4 address (also the Docker network's gateway)."""
        return addressing.host(addressing.subnets(self._st["subnet_index"])[0], 1)

    @property
    def monitor_ipv6(self) -> str:
        """The monitor's IPv6 address (also the Docker network's gateway)."""
        return addressing.host(addressing.subnets(self._st["subnet_index"])[1], 1)

    @property
    def boxes(self) -> tuple[LabBox, ...]:
        """All boxes, containers first."""
        return tuple(LabBox(**{**b, "tcp_ports": tuple(b["tcp_ports"])}) for b in self._st["boxes"])

    def box(self, name: str) -> LabBox:
        """The box called name; UnknownBoxError lists the valid names."""
        for b in self.boxes:
            if b.name == name:
                return b
        raise UnknownBoxError(f"no box {name!r} in lab {self.run_id}; boxes: {', '.join(self.box_names())}")

    def box_names(self) -> list[str]:
        """Names of all boxes."""
        return [b["name"] for b in self._st["boxes"]]

    @property
    def influx_url(self) -> str | None:
        """InfluxDB base URL, reachable from inside monitor_ns; None when the lab has no InfluxDB."""
        return self._st["influx"].get("url")

    @property
    def influx_database(self) -> str:
        """The database the lab creates for the agent."""
        return INFLUX_DATABASE

    @property
    def persistent(self) -> bool:
        """True for labs made by `lab up` (left running after their creator exits)."""
        return bool(self._st.get("persistent"))

    @property
    def create_s(self) -> float | None:
        """Seconds create() took."""
        return self._st.get("create_s")

    def faults(self) -> dict[str, str]:
        """Active faults: box name -> fault kind."""
        return dict(self._st["faults"])

    # ----- state file ------------------------------------------------------------------------
    def _save(self) -> None:
        state.write(self._st)

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Re-read the state under the lab's lock, let the body change it, write it back."""
        with state.locked(self.run_id):
            fresh = state.read(self.run_id)
            if fresh is None:
                raise LabError(f"lab {self.run_id} is gone (no state file {state.state_path(self.run_id)})")
            self._st = fresh
            yield
            self._save()

    # ----- building ---------------------------------------------------------------------------
    def _build(self, ready_timeout_s: float) -> None:
        image = ensure_image(self.engine)
        if self.engine.name == "podman":
            self._start_engine_service()
        os.makedirs(os.path.join(self.run_dir, "www"), exist_ok=True)
        with open(os.path.join(self.run_dir, "www", "index.html"), "w") as f:
            f.write("vobox-lab vm\n")
        with state.locked():
            self._build_segment()
        ports = self._st["tcp_ports"]
        ctr_names = [names.container_box(i) for i in range(1, self._st["containers"] + 1)]
        if ctr_names:
            for name in ctr_names:
                self._write_tls_cert(name, self._st["tls_cert_days"])
            self._start_cvmfs(ctr_names)
        with ThreadPoolExecutor(max_workers=4) as pool:
            ctr_boxes = list(pool.map(lambda i: self._run_container(i, image, ports),
                                      range(1, self._st["containers"] + 1)))
        vm_boxes = [self._make_vm(i, ports) for i in range(1, self._st["vms"] + 1)]
        self._st["boxes"] = [asdict(b) for b in ctr_boxes + vm_boxes]
        self._save()
        if self._st["influx"]["wanted"]:
            self.influx_start()
        self.wait_ready(timeout_s=ready_timeout_s)

    def _build_segment(self) -> None:
        """Veth pair, monitor namespace and Docker network; called under the global lock (subnet choice)."""
        rid, mon, p, m = self.run_id, self.monitor_ns, self.parent_link, self.monitor_link
        shell.run(["ip", "link", "add", p, "type", "veth", "peer", "name", m])
        shell.run(["ip", "netns", "add", mon])
        shell.run(["ip", "link", "set", m, "netns", mon])
        # The root side carries no address and says nothing on the segment.
        shell.ok(["sysctl", "-q", "-w", f"net.ipv6.conf.{p}.disable_ipv6=1"])
        shell.run(["ip", "netns", "exec", mon, "sysctl", "-q", "-w",
                   "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0",
                   "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                   f"net.ipv6.conf.{m}.accept_ra=0", f"net.ipv6.conf.{m}.accept_dad=0"])
        for key in ("net.ipv4.neigh.default.gc_thresh3", "net.ipv6.neigh.default.gc_thresh3"):
            if not shell.ok(["ip", "netns", "exec", mon, "sysctl", "-q", "-w", f"{key}=8192"]):
                log.debug("lab %s: %s is not per-namespace on this kernel; left as is", rid, key)
        shell.run(["ip", "-n", mon, "link", "set", "lo", "up"])
        tried: set[int] = set()
        for _attempt in range(5):
            index = addressing.pick_index(exclude=tried)
            tried.add(index)
            v4, v6 = addressing.subnets(index)
            gw4, gw6 = addressing.host(v4, 1), addressing.host(v6, 1)
            # Podman: bridge is its macvlan default and its option is "mode"; no DNS server (aardvark-dns)
            # for a network whose boxes are reached by address.
            mode = ["-o", "macvlan_mode=bridge"] if self.engine.name == "docker" else ["--disable-dns"]
            proc = shell.run(self.engine.cmd("network", "create", "-d", "macvlan", "-o", f"parent={p}", *mode,
                                             "--subnet", str(v4), "--gateway", gw4,
                                             "--ipv6", "--subnet", str(v6), "--gateway", gw6,
                                             "--label", f"vobox-lab={rid}", self.network), check=False)
            if proc.returncode == 0:
                break
            said = (proc.stderr + proc.stdout).lower()
            if "overlap" not in said and "already used" not in said:
                raise LabError(f"{self.engine.name} network create {self.network} on {p} failed: "
                               f"{proc.stderr.strip()}")
            log.info("lab %s: subnet %s taken meanwhile, trying another", rid, v4)
        else:
            raise LabError(f"lab {rid}: no free subnet after {len(tried)} tries")
        self._st["subnet_index"] = index
        self._save()
        shell.run(["ip", "-n", mon, "addr", "add", f"{gw4}/24", "dev", m])
        shell.run(["ip", "-n", mon, "addr", "add", f"{gw6}/64", "dev", m, "nodad"])
        shell.run(["ip", "-n", mon, "link", "set", m, "up"])
        shell.run(["ip", "link", "set", p, "up"])

    def _addresses(self, host_number: int) -> tuple[str, str]:
        v4, v6 = addressing.subnets(self._st["subnet_index"])
        return addressing.host(v4, host_number), addressing.host(v6, host_number)

    def _container_spec(self, name: str) -> dict:
        """How a container box runs (one place for `ENGINE run` and recreate_container): env, binds, sysctls, labels."""
        return {"env": {"LAB_TLS_PORT": str(self._st["tls_port"]), **self._st.get("box_env", {}).get(name, {})},
                "binds": {self._tls_dir(name): "/lab/tls", self._cvmfs_box_dir(name): "/cvmfs"},
                "sysctls": {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"},
                "labels": {"vobox-lab": self.run_id, "vobox-lab-box": name}}

    def _run_args(self, name: str, ctr: str, ipv4: str, ipv6: str) -> list[str]:
        """`ENGINE run -d` of container box NAME as container CTR (without the image and its ports)."""
        spec = self._container_spec(name)
        args = [*self.engine.cmd("run"), "-d", "--name", ctr, "--hostname", name, "--network", self.network,
                "--ip", ipv4, "--ip6", ipv6, "--restart", "no"]
        for k, v in spec["labels"].items():
            args += ["--label", f"{k}={v}"]
        for k, v in spec["env"].items():
            args += ["-e", f"{k}={v}"]
        for host, inside in spec["binds"].items():
            args += ["-v", f"{host}:{inside}:ro"]
        for k, v in spec["sysctls"].items():
            args += ["--sysctl", f"{k}={v}"]
        return args

    def run_replacement(self, name: str) -> str:
        """Run a NEW container for box NAME under its container name, as the lab runs it (the old one must be
        stopped and renamed or removed first: same name, same IPs); its id."""
        from lab.image import ensure_image

        b = self.box(name)
        out = shell.run([*self._run_args(name, b.container_name, b.ipv4, b.ipv6), ensure_image(self.engine),
                         *map(str, b.tcp_ports)], timeout_s=120)
        return out.stdout.strip()

    def _run_container(self, index: int, image: str, ports: list[int]) -> LabBox:
        name, ctr = names.container_box(index), names.container(self.run_id, index)
        ipv4, ipv6 = self._addresses(CONTAINER_HOST_BASE + index)
        tls_port = self._st["tls_port"]
        shell.run([*self._run_args(name, ctr, ipv4, ipv6), image, *map(str, ports)], timeout_s=120)
        mac = self.container_mac(ctr) or ""
        log.info("lab %s: box %s is container %s at %s %s %s", self.run_id, name, ctr, ipv4, ipv6, mac)
        return LabBox(name=name, kind="container", ipv4=ipv4, ipv6=ipv6, mac=mac, tcp_ports=tuple(ports),
                      container=ctr, network=self.network, tls_port=tls_port)

    def recreate_container(self, name: str, mac: str) -> None:
        """Remove container box NAME and run it again as the lab does (same IPs, env, mounts) with MAC.

        dockerd through the Engine API: the docker CLI sends the MAC per network, which engine 20.10 (API 1.41)
        refuses; API 1.41 takes it as the container's MacAddress. Podman through its CLI (`--mac-address`):
        its compat API ignores the container-level MacAddress. Returns at once: with a new MAC, neighbour
        caches on the segment are stale (the real failure this stands for), so the box may not answer yet.
        """
        from lab.image import ensure_image

        b = self.box(name)
        spec = self._container_spec(name)
        image = ensure_image(self.engine)
        if self.engine.name == "podman":
            # Podman's compat API ignores the container-level MacAddress; its CLI takes --mac-address.
            shell.run(self.engine.rm_force(b.container_name), timeout_s=60)
            shell.run([*self._run_args(name, b.container_name, b.ipv4, b.ipv6), "--mac-address", mac, image,
                       *map(str, b.tcp_ports)], timeout_s=120)
            return
        client = self.engine_client("1.41")
        try:
            api = client.api
            api.remove_container(b.container_name, force=True)
            host = api.create_host_config(restart_policy={"Name": "no"}, network_mode=b.network,
                                          sysctls=spec["sysctls"],
                                          binds={h: {"bind": i, "mode": "ro"} for h, i in spec["binds"].items()})
            endpoint = api.create_endpoint_config(ipv4_address=b.ipv4, ipv6_address=b.ipv6)
            # types-docker types the argument as one EndpointConfig; docker-py takes {network: EndpointConfig}
            net = api.create_networking_config({b.container_network: endpoint})  # type: ignore[arg-type]
            ctr = api.create_container(image, [str(p) for p in b.tcp_ports], name=b.container,
                                       hostname=name, mac_address=mac, labels=spec["labels"],
                                       environment=spec["env"], host_config=host, networking_config=net)
            api.start(ctr["Id"])
        finally:
            client.close()

    def container_mac(self, ctr: str) -> str | None:
        """The MAC Docker reports for container CTR on the lab's network (lower case), or None."""
        proc = shell.run(self.engine.cmd("inspect", "-f", "{{json .NetworkSettings.Networks}}", ctr), check=False)
        try:
            nets = json.loads(proc.stdout or "null") or {}
        except json.JSONDecodeError:
            return None
        mac = (nets.get(self.network) or {}).get("MacAddress")
        return mac.lower() if mac else None

    def container_pid(self, name: str) -> int:
        """Host pid of a container box's init process (for nsenter into its namespace)."""
        b = self.box(name)
        proc = shell.run(self.engine.cmd("inspect", "-f", "{{.State.Pid}}", b.container_name))
        pid = int(proc.stdout.strip() or 0)
        if pid <= 0:
            raise LabError(f"container {b.container} of box {name} is not running")
        return pid

    # ----- TLS service, proxy file, CVMFS stand-in (container boxes) ------------------------------
    def _tls_dir(self, name: str) -> str:
        return os.path.join(self.run_dir, "tls", name)

    def _write_tls_cert(self, name: str, days: float) -> bytes:
        """Write a new certificate and key for a box's TLS service (read by it at its next start)."""
        addresses: tuple[str, ...] = ()
        for b in self._st.get("boxes", []):
            if b["name"] == name:
                addresses = (b["ipv4"], b["ipv6"])
        cert, key = credentials.host_cert(name, days, addresses)
        tdir = self._tls_dir(name)
        os.makedirs(tdir, exist_ok=True)
        for fname, data in (("key.pem", key), ("cert.pem", cert)):
            tmp = os.path.join(tdir, f".{fname}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(tdir, fname))
        return cert

    def _container_box(self, name: str) -> LabBox:
        b = self.box(name)
        if b.kind != "container":
            raise LabError(f"box {name} is a {b.kind}; only container boxes have a TLS service, proxy and /cvmfs")
        return b

    def set_tls_cert(self, name: str, days: float, timeout_s: float = 15.0) -> bytes:
        """Give a container box's TLS service a new certificate expiring `days` from now (may be < 0); its PEM.

        The service (openssl s_server) is restarted; returns once it serves the new certificate.
        """
        b = self._container_box(name)
        pem = self._write_tls_cert(name, days)
        want = x509_der(pem)
        shell.run(self.engine.cmd("exec", b.container_name, "sh", "-c", "kill $(pidof openssl) 2>/dev/null; true"))
        deadline = time.monotonic() + timeout_s
        while self.tls_peer_cert(b.ipv4, b.container_tls_port) != want:
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.run_id}: box {name} does not serve its new certificate on "
                               f"{b.ipv4}:{b.tls_port} after {timeout_s:.0f}s")
            time.sleep(0.2)
        return pem

    def tls_peer_cert(self, address: str, port: int, timeout_s: float = 2.0) -> bytes | None:
        """DER of the certificate served on address:port (TLS handshake from the monitor namespace), or None."""
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with netns.entered(self.monitor_ns):
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect((address, port))
            with ctx.wrap_socket(sock) as tls:
                return tls.getpeercert(binary_form=True)
        except OSError:
            return None
        finally:
            sock.close()

    def set_proxy(self, name: str, days: float, path: str = PROXY_PATH) -> bytes:
        """Write a grid proxy (proxy cert, key, user cert) expiring `days` from now into a container box; its PEM."""
        b = self._container_box(name)
        pem = credentials.proxy_pem(days)
        shell.run(self.engine.cmd("exec", "-i", b.container_name, "sh", "-c",
                                  'umask 077 && cat > "$1.tmp" && mv "$1.tmp" "$1"', "sh", path),
                  input_text=pem.decode())
        return pem

    @property
    def cvmfs_mode_dir(self) -> str:
        """Where the CVMFS stand-in reads each box's fault (see lab.cvmfs)."""
        return os.path.join(self.run_dir, "cvmfs-mode")

    def _cvmfs_box_dir(self, name: str) -> str:
        """Host directory bind-mounted at a container box's /cvmfs (the repository is a submount in it)."""
        return os.path.join(self.run_dir, "cvmfs", name)

    def _start_cvmfs(self, boxes: list[str]) -> None:
        """Start the lab's CVMFS stand-in (one FUSE server) and bind each box's repository under its /cvmfs dir."""
        fuse_dir = os.path.join(self.run_dir, "cvmfs-fuse")
        os.makedirs(fuse_dir, exist_ok=True)
        os.makedirs(self.cvmfs_mode_dir, exist_ok=True)
        log_path = os.path.join(self.run_dir, "cvmfs.log")
        with open(log_path, "ab") as logf:
            proc = subprocess.Popen([sys.executable, "-m", "lab.cvmfs", fuse_dir, self.cvmfs_mode_dir, ",".join(boxes)],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + CVMFS_MOUNT_TIMEOUT_S
        while fuse_dir not in cleanup.mounts_under(self.run_dir):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-1500:]
                raise LabError(f"lab {self.run_id}: the CVMFS stand-in did not mount {fuse_dir} "
                               f"(needs Debian's libfuse2 and fusepy; run scripts/setup): {tail.strip()}")
            time.sleep(0.05)
        self._st["cvmfs"] = {"pid": proc.pid, "fuse_dir": fuse_dir}
        for name in boxes:
            repo = os.path.join(self._cvmfs_box_dir(name), cvmfs.REPOSITORY)
            os.makedirs(repo, exist_ok=True)
            shell.run(["mount", "--bind", "-o", "ro", os.path.join(fuse_dir, name), repo])
        log.info("lab %s: CVMFS stand-in pid %d at %s", self.run_id, proc.pid, fuse_dir)

    def _make_vm(self, index: int, ports: list[int]) -> LabBox:
        name, ns, link = names.vm_box(index), names.vm_netns(self.run_id, index), names.vm_link(self.run_id, index)
        mac = names.vm_mac(self.run_id, index)
        ipv4, ipv6 = self._addresses(VM_HOST_BASE + index)
        shell.run(["ip", "netns", "add", ns])
        shell.run(["ip", "link", "add", link, "link", self.parent_link, "address", mac,
                   "type", "macvlan", "mode", "bridge"])
        shell.run(["ip", "link", "set", link, "netns", ns])
        shell.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                   "net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                   f"net.ipv6.conf.{link}.accept_dad=0", f"net.ipv6.conf.{link}.keep_addr_on_down=1",
                   f"net.ipv6.conf.{link}.accept_ra=0"])
        shell.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.vm_addresses(ns, link, ipv4, ipv6)
        shell.run(["ip", "-n", ns, "link", "set", link, "up"])
        box = LabBox(name=name, kind="vm", ipv4=ipv4, ipv6=ipv6, mac=mac, tcp_ports=tuple(ports),
                     netns=ns, link=link)
        self.start_vm_listeners(box)
        log.info("lab %s: box %s is vm netns %s at %s %s %s", self.run_id, name, ns, ipv4, ipv6, mac)
        return box

    @staticmethod
    def vm_addresses(ns: str, link: str, ipv4: str, ipv6: str) -> None:
        """(Re)assign a VM stand-in's IPv4 /24 and IPv6 /64 on LINK inside namespace NS."""
        shell.run(["ip", "-n", ns, "addr", "replace", f"{ipv4}/24", "dev", link])
        shell.run(["ip", "-n", ns, "addr", "replace", f"{ipv6}/64", "dev", link, "nodad"])

    def start_vm_listeners(self, box: LabBox) -> list[int]:
        """Start one busybox httpd per TCP port inside a VM box's namespace; return their pids."""
        busybox = shutil.which("busybox") or "/bin/busybox"
        www = os.path.join(self.run_dir, "www")
        procs = []
        for port in box.tcp_ports:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", box.vm_netns, busybox, "httpd", "-f", "-p", str(port), "-h", www],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True))
        self._listeners.setdefault(box.name, []).extend(procs)
        return [p.pid for p in procs]

    def stop_vm_listeners(self, box: LabBox) -> None:
        """Kill every process in a VM box's namespace (its listeners)."""
        pids = [int(p) for p in shell.run(["ip", "netns", "pids", box.vm_netns]).stdout.split() if p.isdigit()]
        cleanup.kill_pids(pids, f"listeners of box {box.name}")
        for proc in self._listeners.pop(box.name, []):
            with contextlib.suppress(Exception):
                proc.wait(2)

    # ----- readiness --------------------------------------------------------------------------
    def tcp_ok(self, address: str, port: int, timeout_s: float = 0.5) -> bool:
        """True when a TCP connect from the monitor namespace to address:port succeeds."""
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        with netns.entered(self.monitor_ns):
            sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect((address, port))
            return True
        except OSError:
            return False
        finally:
            sock.close()

    def box_answers(self, name: str, timeout_s: float = 0.5) -> bool:
        """True when every TCP port of the box accepts over IPv4 and IPv6 from the monitor namespace."""
        b = self.box(name)
        return all(self.tcp_ok(addr, port, timeout_s) for addr in (b.ipv4, b.ipv6) for port in b.tcp_ports)

    def wait_box(self, name: str, timeout_s: float = 30.0) -> None:
        """Wait until every TCP port and the TLS port of the box accept; LabError naming what does not otherwise."""
        b = self.box(name)
        deadline = time.monotonic() + timeout_s
        ports = b.tcp_ports + ((b.tls_port,) if b.tls_port else ())
        pending = [(a, p) for a in (b.ipv4, b.ipv6) for p in ports]
        while pending:
            pending = [(a, p) for a, p in pending if not self.tcp_ok(a, p, 0.5)]
            if not pending:
                return
            if time.monotonic() > deadline:
                where = ", ".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in pending)
                raise LabError(f"lab {self.run_id}: box {name} does not accept TCP on {where} "
                               f"from {self.monitor_ns} after {timeout_s:.0f}s")
            time.sleep(0.1)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until every box answers and InfluxDB (when wanted and running) answers /ping."""
        deadline = time.monotonic() + timeout_s
        for b in self.boxes:
            if b.name not in self._st["faults"]:
                self.wait_box(b.name, max(1.0, deadline - time.monotonic()))
        if self._st["influx"]["running"] and not self._influx_server().ping(timeout_s=2.0):
            raise LabError(f"lab {self.run_id}: InfluxDB at {self.influx_url} in {self.monitor_ns} does not answer /ping")

    # ----- faults -----------------------------------------------------------------------------
    def fault(self, name: str, kind: str) -> None:
        """Inject a reversible fault (see faults.FAULT_HELP) into a box; an active one is cleared first.

        LabError when the kind is unknown or not made for this kind of box (e.g. pause on a vm).
        """
        b = self.box(name)
        faults.check_kind(kind, b.kind)
        with self._mutating():
            current = self._st["faults"].get(name)
            if current == kind:
                return
            if current is not None:
                faults.clear(self, b, current)
                del self._st["faults"][name]
                self._save()
            faults.apply(self, b, kind)
            self._st["faults"][name] = kind
        log.info("lab %s: box %s fault %s injected", self.run_id, name, kind)

    def clear(self, name: str, wait: bool = True, timeout_s: float = 30.0) -> None:
        """Undo the active fault of a box (no-op without one); wait until it answers again when asked."""
        b = self.box(name)
        with self._mutating():
            current = self._st["faults"].get(name)
            if current is not None:
                faults.clear(self, b, current)
                del self._st["faults"][name]
        if current is not None:
            log.info("lab %s: box %s fault %s cleared", self.run_id, name, current)
            target = faults.box_loss_target(self, b) if self.loss_percent else None
            if target is not None:   # a box that came back on a new link or namespace gets the loss again
                faults.set_loss(*target, self.loss_percent)
        if wait and not self._st.get("segment_down"):
            self.wait_box(name, timeout_s)

    def clear_all(self, wait: bool = True) -> None:
        """Clear every box fault and bring the segment and InfluxDB (when wanted) back."""
        if self._st.get("segment_down"):
            self.segment_up()
        if (state.read(self.run_id) or self._st).get("loss_percent"):   # another process may have set it
            self.loss(0)
        for name in list(self.faults()):
            self.clear(name, wait=False)
        if self.engine.name == "podman":   # a box restarted behind the lab's back came back with another MAC
            for b in self.boxes:
                if b.kind == "container":
                    faults.restore_mac(self, b)
        if self._st["influx"]["wanted"] and not self._st["influx"]["running"]:
            self.influx_start()
        if wait:
            self.wait_ready()

    def segment_down(self) -> None:
        """Take the whole L2 segment (the macvlan parent) down: every box freezes at once."""
        with self._mutating():
            shell.run(["ip", "link", "set", self.parent_link, "down"])
            self._st["segment_down"] = True
        log.info("lab %s: segment %s down", self.run_id, self.parent_link)

    def segment_up(self) -> None:
        """Bring the L2 segment back up."""
        with self._mutating():
            shell.run(["ip", "link", "set", self.parent_link, "up"])
            self._st["segment_down"] = False
        log.info("lab %s: segment %s up", self.run_id, self.parent_link)

    @property
    def loss_percent(self) -> float:
        """The random loss share (%) on the segment, per direction; 0 when off."""
        return float((state.read(self.run_id) or self._st).get("loss_percent") or 0.0)

    def loss(self, percent: float) -> None:
        """Drop about PERCENT % of the frames on the segment in each direction (nft numgen); 0 = off.

        Each end drops a share of what it receives (the monitor link, every box's link), inside the lab's
        namespaces only, so the sender never learns of a drop, as on a lossy wire; a ping round trip loses
        about 1 - (1 - p)^2. clear() sets it again on a box that came back. LabError when not 0..100.
        """
        value = faults.check_loss_percent(percent)
        with self._mutating():
            faults.set_loss(["ip", "netns", "exec", self.monitor_ns], self.monitor_link, value)
            for b in self.boxes:
                target = faults.box_loss_target(self, b)
                if target is not None:
                    faults.set_loss(*target, value)
            self._st["loss_percent"] = value
        log.info("lab %s: random loss %g %% each way on the segment", self.run_id, value)

    def loss_counters(self) -> dict[str, tuple[int, int]]:
        """Frames (seen, dropped) on receipt, by where: "monitor" (box -> monitor) and each box name (monitor ->
        box); {} when the loss is off."""
        out = {}
        mon = faults.loss_counters(["ip", "netns", "exec", self.monitor_ns])
        if mon is not None:
            out["monitor"] = mon
        for b in self.boxes:
            target = faults.box_loss_target(self, b)
            got = faults.loss_counters(target[0]) if target is not None else None
            if got is not None:
                out[b.name] = got
        return out

    # ----- InfluxDB ---------------------------------------------------------------------------
    def _influx_server(self):
        from lab.influx import InfluxServer

        if self._influx is None:
            self._influx = InfluxServer(os.path.join(self.run_dir, "influx"), netns=self.monitor_ns)
        return self._influx

    def influx_start(self, timeout_s: float = 30.0) -> None:
        """Start the lab's influxd in the monitor namespace (data kept across stop/start)."""
        server = self._influx_server()
        server.start(timeout_s=timeout_s)
        server.create_database(INFLUX_DATABASE)
        with self._mutating():
            self._st["influx"].update(running=True, url=server.url, pid=server.pid, base_dir=server.base_dir)
        log.info("lab %s: influxd pid %s at %s in %s", self.run_id, server.pid, server.url, self.monitor_ns)

    def influx_stop(self) -> None:
        """Stop the lab's influxd (an InfluxDB outage); influx_start() brings it back with its data."""
        from lab.influx import kill_stale

        if self._influx is not None and self._influx.running:
            self._influx.stop()
        else:
            kill_stale(os.path.join(self.run_dir, "influx"))
        with self._mutating():
            self._st["influx"].update(running=False, pid=None)
        log.info("lab %s: influxd stopped", self.run_id)

    def _stop_own_influx(self) -> None:
        if self._influx is not None:
            with contextlib.suppress(Exception):
                self._influx.stop()

    # ----- Prometheus + Alertmanager ----------------------------------------------------------
    def prometheus_start(self, target: str, webhook_url: str, token_file: str, interval_s: float = 1.0,
                         timeout_s: float = 30.0, tls: dict[str, str] | None = None, scrape: dict | None = None,
                         target_labels: dict[str, str] | None = None):
        """Start Prometheus (scraping the agent's /metrics at target) and Alertmanager (posting VoboxBoxFrozen
        to webhook_url with the bearer token in token_file, and tls as its tls_config) in the monitor namespace;
        scrape: more keys of the scrape config (e.g. authorization), target_labels: the target's labels; return
        the stack."""
        from lab.prometheus import PrometheusStack

        self.prometheus_stop()
        stack = PrometheusStack(os.path.join(self.run_dir, "prometheus"), self.monitor_ns, target, webhook_url,
                                token_file, interval_s=interval_s, tls=tls, scrape=scrape,
                                target_labels=target_labels)
        stack.start(timeout_s=timeout_s)
        self._prometheus = stack
        return stack

    def prometheus_stop(self) -> None:
        """Stop the lab's Prometheus and Alertmanager (also those a crashed run left, via their pidfiles)."""
        from lab.prometheus import kill_stale

        stack, self._prometheus = self._prometheus, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.stop()
        kill_stale(os.path.join(self.run_dir, "prometheus"))

    # ----- reporting --------------------------------------------------------------------------
    def status(self) -> dict:
        """What the lab is and how each box is doing right now (docker state, link, listeners, fault)."""
        st = state.read(self.run_id) or self._st
        self._st = st
        boxes = []
        for b in self.boxes:
            entry = {**asdict(b), "tcp_ports": list(b.tcp_ports), "fault": st["faults"].get(b.name)}
            if b.kind == "container":
                proc = shell.run(self.engine.cmd("inspect", "-f", "{{.State.Status}}", b.container_name), check=False)
                entry["state"] = proc.stdout.strip() or "missing"
                entry["mac_now"] = self.container_mac(b.container_name)
            else:
                proc = shell.run(["ip", "-n", b.vm_netns, "-br", "link", "show", b.vm_link], check=False)
                fields = proc.stdout.split()
                entry["state"] = fields[1].lower() if len(fields) > 1 else "missing"
                pids = shell.run(["ip", "netns", "pids", b.vm_netns], check=False).stdout.split()
                entry["listeners"] = len(pids)
            boxes.append(entry)
        influx = dict(st["influx"])
        if influx.get("running"):
            influx["answers"] = self._influx_server().ping(timeout_s=1.0)
        return {
            "run_id": self.run_id,
            "persistent": self.persistent,
            "owner_pid": st.get("owner_pid"),
            "create_s": st.get("create_s"),
            "monitor_ns": self.monitor_ns,
            "monitor_link": self.monitor_link,
            "monitor_ipv4": self.monitor_ipv4,
            "monitor_ipv6": self.monitor_ipv6,
            "parent_link": self.parent_link,
            "segment": "down" if st.get("segment_down") else "up",
            "loss_percent": float(st.get("loss_percent") or 0.0),
            "network": self.network,
            "engine": self.engine.name,
            "docker_host": self.docker_host,
            "ipv4_subnet": self.ipv4_subnet,
            "ipv6_subnet": self.ipv6_subnet,
            "influx": influx,
            "boxes": boxes,
        }

    def agent_config(self, **overrides) -> str:
        """TOML for the agent with this lab's boxes filled in; overrides replace [agent]/[freeze]/[influxdb] keys."""
        from lab.agent_config import render

        return render(self, **overrides)
