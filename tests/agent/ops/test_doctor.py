"""doctor: each broken prerequisite is detected, with its fix; a healthy lab passes.

Tests marked `lab` need root, the Docker engine and influxd (the lab).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from agent import netns
from agent.core import config
from agent.ops import doctor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PY = sys.executable


def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


# ------------------------------------------------------------ raw socket

@pytest.mark.lab   # root
def test_raw_socket_passes_with_privilege():
    _root()
    r = doctor.check_raw_socket()
    assert r.ok and r.label == "PASS", r


@pytest.mark.lab   # root
@pytest.mark.parametrize("tool", ["capsh", "setpriv"])
def test_raw_socket_fails_without_cap_net_raw(tool):
    _root()
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool} (libcap2-bin / util-linux)")
    code = ("from agent.ops.doctor import check_raw_socket; r = check_raw_socket(); "
            "print(r.label); print(r.detail); print(r.fix)")
    if tool == "capsh":
        argv = ["capsh", "--drop=cap_net_raw", "--", "-c", f"exec {PY} -c '{code}'"]
    else:
        argv = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", PY, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.splitlines()
    assert out[0] == "FAIL", out
    assert "Operation not permitted" in out[1]
    assert "setcap cap_net_raw,cap_net_admin+ep" in out[2] and "AmbientCapabilities" in out[2]


def test_raw_socket_other_oserror_is_a_failure_with_reason():
    def refuse(*_a):
        raise OSError(97, "Address family not supported by protocol")
    r = doctor.check_raw_socket(refuse)
    assert not r.ok and "Address family not supported" in r.detail


def test_unexpected_errors_escape():
    def boom(*_a):
        raise ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        doctor.check_raw_socket(boom)


# ---------------------------------------------------------------- docker

def test_no_docker_socket(tmp_path):
    import docker

    dead = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()  # the path exists, nobody listens
    for path in (dead, tmp_path / "missing.sock"):
        r, info = doctor.check_docker(lambda p=path: docker.DockerClient(base_url=f"unix://{p}", timeout=3))
        assert not r.ok and info is None
        assert "not reachable" in r.detail and "DOCKER_HOST" in r.fix


def test_no_docker_socket_stops_before_the_box_checks(tmp_path):
    import docker

    cfg = config.loads('[influxdb]\nurl = "http://127.0.0.1:9"\n[[box]]\nname = "b"\nkind = "container"\n'
                       'ipv4 = "192.0.2.10"\ncontainer = "c"\nnetwork = "n"\n')
    results = doctor.run_checks(
        cfg, docker_factory=lambda: docker.DockerClient(base_url=f"unix://{tmp_path}/none.sock", timeout=3),
        exists=lambda _n: False)
    names = [r.name for r in results if not r.ok]
    assert "docker engine" in names and not any(n.startswith("box ") for n in names)
    assert doctor.exit_code(results) == 1


@pytest.mark.parametrize("api, observed, label, text", [
    pytest.param("1.54", [], "PASS", "honours a MAC", id="new-api"),
    pytest.param("1.41", [("b", "198.18.1.11", "02:42:c6:12:01:0b")], "PASS", "MAC follows the IP", id="20.10"),
    pytest.param("1.47", [("b", "198.18.1.11", "5a:1e:00:00:00:01")], "WARN", "random MAC", id="random"),
    pytest.param("1.41", [], "WARN", "no running box", id="unknown"),
])
def test_mac_on_connect(api, observed, label, text):
    r = doctor.check_mac_on_connect(doctor.DockerInfo(None, "x", api), observed)
    assert r.label == label and text in r.detail


# --------------------------------------------------------------- influxdb

@pytest.fixture
def ops_netns():
    """A throwaway namespace with lo up and no route out."""
    _root()
    name = f"vbxops-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.lab
def test_influx_up_missing_database_created_then_down(ops_netns, tmp_path):
    if shutil.which("influxd") is None:
        pytest.skip("needs influxd")
    from lab.influx import InfluxServer

    server = InfluxServer(str(tmp_path / "influx"), netns=ops_netns, http_port=8086)
    server.start()
    influx = config.loads(f'[influxdb]\nurl = "{server.url}"\ndatabase = "opsdb"\n'
                          '[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.9"\n').influxdb
    try:
        with netns.entered(ops_netns):
            missing = doctor.check_influx(influx)
            created = doctor.check_influx(influx, create_database=True)
            present = doctor.check_influx(influx)
        assert [r.label for r in missing] == ["PASS", "PASS", "FAIL"], missing
        assert "'opsdb' does not exist" in missing[2].detail and "--create-database" in missing[2].fix
        assert created[2].ok and "created" in created[2].detail
        assert present[2].ok and "exists" in present[2].detail
        dbs = server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
        assert ["opsdb"] in dbs
    finally:
        server.stop()
    with netns.entered(ops_netns):
        down = doctor.check_influx(influx)
    assert len(down) == 1 and not down[0].ok and down[0].name == "influxdb reachable"
    assert "/ping" in down[0].fix


# ------------------------------------------------------------ lab: boxes

def _lab_cfg(lab, **kw):
    return config.loads(lab.agent_config(**kw))


@pytest.mark.lab
def test_healthy_lab_from_the_monitor_namespace_passes(ops_lab):
    cfg = _lab_cfg(ops_lab)
    with netns.entered(ops_lab.monitor_ns):
        results = doctor.run_checks(cfg)
    text = doctor.format_results(results)
    assert doctor.exit_code(results) == 0, text
    by_name = {r.name: r for r in results}
    trap = by_name[f"macvlan host trap ({ops_lab.network})"]
    assert trap.label == "PASS" and "not in this network namespace" in trap.detail
    assert by_name["docker MAC on connect"].label == "PASS"
    for box in ops_lab.boxes:
        if box.kind == "container":
            assert by_name[f"box {box.name}: attached"].label == "PASS"
            assert box.ipv4 in by_name[f"box {box.name}: attached"].detail


@pytest.mark.lab
def test_missing_container_and_wrong_address(ops_lab):
    ctr = [b for b in ops_lab.boxes if b.kind == "container"]
    text = ops_lab.agent_config().replace(f'container = "{ctr[0].container}"',
                                          'container = "vbxops-no-such-container"')
    text = text.replace(f'ipv4 = "{ctr[1].ipv4}"', 'ipv4 = "198.18.0.250"')
    cfg = config.loads(text)
    with netns.entered(ops_lab.monitor_ns):
        results = doctor.run_checks(cfg)
    failed = {r.name: r for r in results if not r.ok}
    assert set(failed) == {f"box {ctr[0].name}: container", f"box {ctr[1].name}: attached"}, failed
    assert "'vbxops-no-such-container' not found" in failed[f"box {ctr[0].name}: container"].detail
    attached = failed[f"box {ctr[1].name}: attached"]
    assert f"IPv4 {ctr[1].ipv4} (configured 198.18.0.250)" in attached.detail
    assert "docker network connect" in attached.fix


@pytest.mark.lab
def test_a_stopped_container_is_checked_against_its_static_addresses_not_failed(ops_lab):
    """`docker stop` leaves no live address: doctor warns it is stopped, and checks what it gets at start."""
    import subprocess

    ctr = next(b for b in ops_lab.boxes if b.kind == "container")
    subprocess.run(["docker", "stop", "-t", "2", ctr.container], check=True, capture_output=True)
    try:
        with netns.entered(ops_lab.monitor_ns):
            results = doctor.run_checks(config.loads(ops_lab.agent_config()))
        wrong = config.loads(ops_lab.agent_config().replace(f'ipv4 = "{ctr.ipv4}"', 'ipv4 = "198.18.0.250"'))
        with netns.entered(ops_lab.monitor_ns):
            wrong_results = doctor.run_checks(wrong)
    finally:
        subprocess.run(["docker", "start", ctr.container], check=True, capture_output=True)
        ops_lab.wait_box(ctr.name, timeout_s=30)
    by_name = {r.name: r for r in results}
    assert by_name[f"box {ctr.name}: container"].label == "WARN"
    attached = by_name[f"box {ctr.name}: attached"]
    assert attached.label == "PASS", doctor.format_results(results)
    assert ctr.ipv4 in attached.detail and "static, container exited" in attached.detail
    bad = {r.name: r for r in wrong_results}[f"box {ctr.name}: attached"]
    assert bad.label == "FAIL" and f"IPv4 {ctr.ipv4} (configured 198.18.0.250)" in bad.detail


@pytest.mark.lab
def test_agent_on_the_macvlan_host_is_the_trap(ops_lab):
    cfg = _lab_cfg(ops_lab)
    results = doctor.run_checks(cfg)  # the root namespace: the lab's parent link is here
    trap = next(r for r in results if r.name.startswith("macvlan host trap"))
    assert trap.label == "FAIL", doctor.format_results(results)
    parent = ops_lab.parent_link
    assert f"parent {parent}" in trap.detail
    assert f"ip link add vobox-shim link {parent} type macvlan mode bridge" in trap.fix
    assert "ip link set vobox-shim up" in trap.fix
    for box in ops_lab.boxes:
        if box.kind == "container":
            assert f"ip route add {box.ipv4}/32 dev vobox-shim" in trap.fix
            assert f"ip -6 route add {box.ipv6}/128 dev vobox-shim" in trap.fix
        else:
            assert box.ipv4 not in trap.fix  # VMs are not containers on this network
    shim_addr = [line.split()[3] for line in trap.fix.splitlines() if "ip addr add" in line][0]
    assert shim_addr.endswith("/32") and shim_addr[:-3] not in [b.ipv4 for b in ops_lab.boxes]


@pytest.mark.lab
def test_the_printed_shim_commands_fix_the_trap(ops_lab):
    """Apply doctor's commands (with a unique shim name, on the lab's own veth parent) and check again."""
    cfg = _lab_cfg(ops_lab)
    networks = {ops_lab.network: __import__("docker").from_env().networks.get(ops_lab.network).attrs}
    boxes = [b for b in cfg.boxes if b.kind == "container"]
    shim = f"vbxsh{os.getpid() % 100000}"
    cmds = doctor.shim_commands(ops_lab.parent_link, networks[ops_lab.network], boxes, shim=shim)
    try:
        for cmd in cmds:
            subprocess.run(cmd.split(), check=True, capture_output=True, timeout=10)
        results = doctor.check_macvlan_trap(boxes, networks)
        assert [r.label for r in results] == ["PASS"], results
        assert "through a macvlan shim" in results[0].detail
    finally:
        subprocess.run(["ip", "link", "del", shim], check=False, capture_output=True)


def test_free_address_skips_used_ones():
    import ipaddress

    net = ipaddress.ip_network("198.18.5.0/29")
    assert doctor.free_address(net, ["198.18.5.6", "198.18.5.5/29"]) == "198.18.5.4"
    assert doctor.free_address(ipaddress.ip_network("2001:db8::/126"), []) == "2001:db8::3"


@pytest.mark.lab   # root
def test_cli_exit_codes(tmp_path):
    _root()
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nintervall = 3\n")
    p = subprocess.run([PY, "-m", "agent", "doctor", "-c", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and "intervall" in p.stderr
    cfg = tmp_path / "vm.toml"
    cfg.write_text('[influxdb]\nurl = "http://127.0.0.1:9"\n[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.9"\n')
    p = subprocess.run([PY, "-m", "agent", "doctor", "-c", str(cfg)], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 1
    assert "PASS  raw-socket privilege" in p.stdout and "FAIL  influxdb reachable" in p.stdout
    assert "      fix: check [influxdb] url" in p.stdout


def test_trap_check_without_the_ip_tool_warns():
    def no_ip(_addr):
        raise doctor.IpToolMissing("`ip` (iproute2) not found")
    box = config.loads('[[box]]\nname = "b"\nkind = "container"\nipv4 = "198.18.0.11"\ncontainer = "c"\n'
                       'network = "n"\n').boxes
    nets = {"n": {"Driver": "macvlan", "Options": {"parent": "p0"}, "IPAM": {"Config": [{"Subnet": "198.18.0.0/24"}]}}}
    res = doctor.check_macvlan_trap(box, nets, exists=lambda _n: True, route=no_ip)
    assert [r.label for r in res] == ["WARN"] and "iproute2" in res[0].fix
    routed = doctor.check_macvlan_trap(box, nets, exists=lambda _n: True,
                                       route=lambda _a: doctor.Route("vobox-shim", "macvlan", "p0"))
    assert [r.label for r in routed] == ["PASS"]
    wrong_parent = doctor.check_macvlan_trap(box, nets, exists=lambda _n: True,
                                             route=lambda _a: doctor.Route("shim2", "macvlan", "other0"))
    assert [r.label for r in wrong_parent] == ["FAIL"] and "ip route add 198.18.0.11/32 dev vobox-shim" in wrong_parent[0].fix


@pytest.mark.lab
def test_cli_in_the_monitor_namespace_exits_0_and_on_the_host_exits_1(ops_lab, tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(ops_lab.agent_config())
    inside = subprocess.run([PY, "-m", "agent", "--netns", ops_lab.monitor_ns, "doctor", "-c", str(cfg)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert inside.returncode == 0, inside.stdout + inside.stderr
    assert "FAIL" not in inside.stdout and f"PASS  macvlan host trap ({ops_lab.network})" in inside.stdout
    host = subprocess.run([PY, "-m", "agent", "doctor", "-c", str(cfg)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert host.returncode == 1
    assert f"FAIL  macvlan host trap ({ops_lab.network})" in host.stdout and "ip link add vobox-shim" in host.stdout


def test_doctor_names_podman_and_its_mac_on_connect():
    """Podman's compat API reports API 1.41; doctor names the engine from its components and judges the MAC on
    connect by engine (captured `/version` of Podman 4.3.1, trimmed)."""
    version = {"Version": "4.3.1", "ApiVersion": "1.41",
               "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}, {"Name": "Conmon", "Version": "2.1.6"}]}
    client = type("C", (), {"version": lambda _s: version})()
    r, info = doctor.check_docker(lambda: client)
    assert r.ok and "podman 4.3.1, API 1.41" in r.detail
    m = doctor.check_mac_on_connect(info, [("b", "198.18.1.11", "5a:1e:00:00:00:01")])
    assert m.label == "PASS" and "podman applies a MAC" in m.detail and "restart gives a new MAC" in m.detail
