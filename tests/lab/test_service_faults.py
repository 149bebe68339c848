"""Faults a connect-only probe cannot see, measured from the monitor namespace as they really are.

pause / hang: the kernel still answers ARP and ping and completes TCP handshakes into each listen
backlog until it is full (busybox httpd listens with a backlog of 9: 10 connects succeed, then SYNs
are dropped and connects time out; openssl s_server's backlog outlasts the test); no byte is ever
answered. cvmfs-hang / cvmfs-error: the network is healthy, /cvmfs inside the container blocks or fails.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509

from tests.lab_fixtures import arp_answers, box_symptoms, ping_ok

pytestmark = pytest.mark.lab

HEALTHY = dict(arp=True, ndp=True, ping4=True, ping6=True, tcp4=True, tcp6=True)
VERSION = "/cvmfs/alice.cern.ch/etc/version"
SILENCE_S = 2.0


def _connect(lab, address: str, port: int, timeout_s: float = 1.0) -> socket.socket | None:
    from agent import netns

    with netns.entered(lab.monitor_ns):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect((address, port))
        return sock
    except OSError:
        sock.close()
        return None


def _http_answer(lab, address: str, port: int, wait_s: float) -> bytes | None:
    """Connect, send a GET, return what comes back within wait_s (b"" = nothing); None when connect fails."""
    sock = _connect(lab, address, port)
    if sock is None:
        return None
    try:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.settimeout(wait_s)
        try:
            return sock.recv(200)
        except TimeoutError:
            return b""
    finally:
        sock.close()


def _tls_handshake(lab, address: str, port: int, wait_s: float) -> str:
    """'ok', 'no-connect' or 'silent' (connected, no handshake answer within wait_s)."""
    sock = _connect(lab, address, port)
    if sock is None:
        return "no-connect"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    sock.settimeout(wait_s)
    try:
        with ctx.wrap_socket(sock):
            return "ok"
    except TimeoutError:
        return "silent"
    finally:
        sock.close()


def _docker_state(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", container],
                          capture_output=True, text=True).stdout.strip()


def _connects_until_refused(lab, address: str, port: int, tries: int = 20) -> list[bool]:
    out = []
    for _ in range(tries):
        sock = _connect(lab, address, port, timeout_s=0.5)
        out.append(sock is not None)
        if sock is not None:
            sock.close()
    return out


@pytest.mark.parametrize("kind, box", [("pause", "ctr1"), ("hang", "ctr1"), ("hang", "vm1")])
def test_frozen_service_accepts_until_its_backlog_is_full_and_never_answers(clean_lab, kind, box):
    lab = clean_lab
    b = lab.box(box)
    assert _http_answer(lab, b.ipv4, b.tcp_ports[0], SILENCE_S).startswith(b"HTTP/")
    lab.fault(box, kind)
    if b.kind == "container":
        assert _docker_state(b.container) == {"pause": "paused", "hang": "running"}[kind]
    assert arp_answers(lab, b.ipv4) and ping_ok(lab, b.ipv4) and ping_ok(lab, b.ipv6)
    # The first connect succeeds (the kernel completes the handshake), yet nothing answers.
    t0 = time.monotonic()
    assert _http_answer(lab, b.ipv6, b.tcp_ports[0], SILENCE_S) == b""
    assert time.monotonic() - t0 >= SILENCE_S
    # Then the backlog fills: busybox httpd (backlog 9) takes 10 handshakes in all, later SYNs are dropped.
    seen = _connects_until_refused(lab, b.ipv4, b.tcp_ports[0])
    assert seen == [True] * 9 + [False] * 11, seen
    other = b.tcp_ports[1]
    assert _http_answer(lab, b.ipv4, other, 0.5) == b""
    if b.tls_port:
        assert _tls_handshake(lab, b.ipv4, b.tls_port, SILENCE_S) == "silent"
    lab.clear(box)
    assert _http_answer(lab, b.ipv4, b.tcp_ports[0], SILENCE_S).startswith(b"HTTP/")
    if b.tls_port:
        assert _tls_handshake(lab, b.ipv6, b.tls_port, SILENCE_S) == "ok"


def test_l4_drops_the_service_ports_of_a_running_unpaused_container(clean_lab):
    lab = clean_lab
    b = lab.box("ctr1")
    lab.fault("ctr1", "l4")
    assert _docker_state(b.container) == "running"
    assert box_symptoms(lab, "ctr1") == dict(HEALTHY, tcp4=False, tcp6=False)
    assert _connect(lab, b.ipv6, b.tls_port, 0.5) is None
    # The service itself runs: it answers inside the container, only the network path is dropped.
    inside = subprocess.run(["docker", "exec", b.container, "wget", "-qO-", f"http://127.0.0.1:{b.tcp_ports[0]}/"],
                            capture_output=True, text=True, timeout=10)
    assert inside.stdout.strip() == "vobox-lab-box", inside
    lab.clear("ctr1")
    assert box_symptoms(lab, "ctr1") == HEALTHY


def _in_container(lab, box: str, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(["docker", "exec", lab.box(box).container, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_cvmfs_is_served_in_every_container_box(clean_lab):
    for b in clean_lab.boxes:
        if b.kind != "container":
            continue
        out = subprocess.run(["docker", "exec", b.container, "cat", VERSION], capture_output=True, text=True)
        assert (out.returncode, out.stdout) == (0, "2.11.5.0\n"), out


def test_cvmfs_hang_blocks_every_operation_until_cleared(clean_lab):
    lab = clean_lab
    lab.fault("ctr1", "cvmfs-hang")
    blocked = [_in_container(lab, "ctr1", *argv)
               for argv in (["stat", VERSION], ["cat", VERSION], ["ls", "/cvmfs/alice.cern.ch"],
                            ["stat", "/cvmfs/alice.cern.ch"])]
    try:
        time.sleep(SILENCE_S)
        assert [p.poll() for p in blocked] == [None] * len(blocked), "an operation on a hung /cvmfs returned"
        # Invisible to the network layers, and the other box's /cvmfs is fine.
        assert box_symptoms(lab, "ctr1") == HEALTHY
        other = subprocess.run(["docker", "exec", lab.box("ctr2").container, "cat", VERSION], capture_output=True,
                               text=True, timeout=10)
        assert other.stdout == "2.11.5.0\n"
        t0 = time.monotonic()
        lab.clear("ctr1")
        results = [p.communicate(timeout=10) + (p.returncode,) for p in blocked]
        released_s = time.monotonic() - t0
    finally:
        for p in blocked:
            if p.poll() is None:
                p.kill()
    assert [r[2] for r in results] == [0, 0, 0, 0], results
    assert results[1][0] == "2.11.5.0\n"
    assert released_s < 5.0


def test_cvmfs_error_is_transport_endpoint_not_connected(clean_lab):
    lab = clean_lab
    lab.fault("ctr2", "cvmfs-error")
    message = os.strerror(errno.ENOTCONN)
    assert message == "Transport endpoint is not connected"
    for argv in (["stat", VERSION], ["cat", VERSION], ["stat", "/cvmfs/alice.cern.ch"]):
        out = subprocess.run(["docker", "exec", lab.box("ctr2").container, *argv], capture_output=True, text=True,
                             timeout=10)
        assert out.returncode != 0 and message in out.stderr, (argv, out)
    assert box_symptoms(lab, "ctr2") == HEALTHY
    lab.clear("ctr2")
    out = subprocess.run(["docker", "exec", lab.box("ctr2").container, "cat", VERSION], capture_output=True, text=True)
    assert out.stdout == "2.11.5.0\n"


def _served_cert(lab, box: str) -> x509.Certificate:
    b = lab.box(box)
    der = lab.tls_peer_cert(b.ipv6, b.tls_port)
    assert der is not None, f"no TLS answer from {box}"
    return x509.load_der_x509_certificate(der)


def _days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def test_tls_service_serves_the_certificate_the_test_sets(clean_lab):
    lab = clean_lab
    b = lab.box("ctr2")
    assert 364 < _days_left(_served_cert(lab, "ctr2")) <= 365
    try:
        pem = lab.set_tls_cert("ctr2", -1.5)
        cert = _served_cert(lab, "ctr2")
        assert cert == x509.load_pem_x509_certificate(pem)
        assert -1.51 < _days_left(cert) < -1.49
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} == {b.ipv4, b.ipv6}
        assert _tls_handshake(lab, b.ipv4, b.tls_port, SILENCE_S) == "ok"  # expired, still served
    finally:
        lab.set_tls_cert("ctr2", 365)


def test_set_proxy_writes_a_proxy_with_the_chosen_lifetime(clean_lab):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from lab.lab import PROXY_PATH

    lab = clean_lab
    lab.set_proxy("ctr1", 0.5)
    c = lab.box("ctr1").container
    text = subprocess.run(["docker", "exec", c, "cat", PROXY_PATH], capture_output=True, text=True).stdout
    mode = subprocess.run(["docker", "exec", c, "stat", "-c", "%a", PROXY_PATH], capture_output=True, text=True)
    assert mode.stdout.strip() == "600"
    proxy, user = x509.load_pem_x509_certificates(text.encode())
    assert 0.49 < _days_left(proxy) < 0.51 and _days_left(user) > 300
    assert proxy.issuer == user.subject and proxy.subject.rdns[:-1] == user.subject.rdns
    assert proxy.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")).critical
    key = load_pem_private_key(text.encode(), None)
    assert key.public_key() == proxy.public_key()
    lab.set_proxy("ctr1", -3)
    text = subprocess.run(["docker", "exec", c, "cat", PROXY_PATH], capture_output=True, text=True).stdout
    assert -3.01 < _days_left(x509.load_pem_x509_certificates(text.encode())[0]) < -2.99


def test_create_takes_the_certificate_lifetime(lab_available):
    if lab_available:
        pytest.skip(lab_available)
    from lab import Lab

    with Lab.create(containers=1, vms=0, influx=False, tls_cert_days=3) as small:
        assert 2.99 < _days_left(_served_cert(small, "ctr1")) <= 3
    with pytest.raises(ValueError, match="tls_port"):
        Lab.create(containers=1, vms=0, influx=False, tcp_ports=(1093, 8443))
