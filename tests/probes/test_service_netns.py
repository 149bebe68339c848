"""Real service probes (tcp send/expect, http, https, tls) against real servers in a throwaway namespace.

The target namespace runs tests/probes/services.py: a line service that answers, one that
accepts and hangs, one that answers wrong, an HTTP server, and TLS servers with
certificates made here (valid, expiring in 3 days, expired, signed by another CA).
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

import probes
from agent import netns
from probes import HttpSpec, ProbeResult, Target, TcpSpec, TlsSpec
from tests.probes import certs
from tests.probes.conftest import HERE

TIMEOUT_S = 0.8
LINE, HANG, WRONG, HTTP, HTTPS, SOON, EXPIRED, OTHER_CA = range(20001, 20009)


@pytest.fixture(scope="module")
def svc(segment, tmp_path_factory):
    """The segment with services.py running in its target namespace; yields (segment, CA file)."""
    d = tmp_path_factory.mktemp("certs")
    ca, other = certs.make_ca(d, "vobox-test-ca"), certs.make_ca(d, "other-ca")
    now, day = certs.now(), certs.DAY
    addresses = segment.ipv4 + segment.ipv6
    leaf = {
        HTTPS: certs.make_leaf(d, "valid", ca, addresses, now - day, now + 365 * day, dns=("svc.example",)),
        SOON: certs.make_leaf(d, "soon", ca, addresses, now - 30 * day, now + 3 * day),
        EXPIRED: certs.make_leaf(d, "expired", ca, addresses, now - 30 * day, now - day),
        OTHER_CA: certs.make_leaf(d, "other", other, addresses, now - day, now + 365 * day),
    }
    specs = [f"{LINE}:line", f"{HANG}:hang", f"{WRONG}:wrong", f"{HTTP}:http"]
    specs += [f"{port}:http:{c}:{k}" for port, (c, k) in leaf.items()]
    proc = subprocess.Popen(["ip", "netns", "exec", segment.target, sys.executable, str(HERE / "services.py"), *specs],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield segment, str(ca.path)
    finally:
        proc.terminate()
        proc.wait(5)


def sweep(seg, targets: list[Target], timeout_s: float = TIMEOUT_S) -> tuple[list[ProbeResult], float]:
    with netns.entered(seg.monitor):
        start = time.monotonic()
        results = probes.sweep(targets, timeout_s)
        return results, time.monotonic() - start


def outcome(r: ProbeResult) -> tuple:
    return r.ok, r.layer, r.error


def test_tcp_send_expect_fails_hung_and_wrong_services_at_l7_in_one_timeout(svc):
    seg, _ = svc
    a4, a6 = seg.ipv4[0], seg.ipv6[0]
    hello, ping = TcpSpec(expect="^HELLO vobox"), TcpSpec(send="PING\r\n", expect=r"PONG\r\n")
    targets = [
        Target(a4, "tcp", LINE, hello),
        Target(a6, "tcp", LINE, ping),
        Target(a4, "tcp", HANG),                     # connect only: a hung service still accepts
        Target(a4, "tcp", HANG, hello),
        Target(a6, "tcp", HANG, ping),
        Target(a4, "tcp", WRONG, ping),
        Target(a4, "tcp", LINE, TcpSpec(send="HI\r\n", expect="^PONG")),  # answers WHAT, keeps the socket
        Target(a4, "tcp", seg.closed_port, hello),
        Target(seg.absent_ipv4, "tcp", LINE, hello),
        Target(a4, "tcp", HANG, TcpSpec(send="anything")),  # send only: ok once sent
    ]
    results, elapsed = sweep(seg, targets)
    assert [outcome(r) for r in results] == [
        (True, None, None),
        (True, None, None),
        (True, None, None),
        (False, "l7", "no answer (timeout)"),
        (False, "l7", "no answer (timeout)"),
        (False, "l7", r"answer does not match expect (closed): b'ERR nope\r\n'"),
        (False, "l7", r"answer does not match expect (timeout): b'HELLO vobox\r\nWHAT\r\n'"),
        (False, "l4", "refused"),
        (False, "l4", "timeout"),
        (True, None, None),
    ]
    assert elapsed < TIMEOUT_S + 0.5  # every hung target at once: about one timeout
    for r in results:
        assert (r.rtt_ms is not None) == r.ok
        assert r.rtt_ms is None or 0 <= r.rtt_ms < TIMEOUT_S * 1000


def test_http_status_body_host_and_layers(svc):
    seg, _ = svc
    a4, a6 = seg.ipv4[1], seg.ipv6[1]
    targets = [
        Target(a4, "http", HTTP, HttpSpec(path="/ok")),
        Target(a6, "http", HTTP, HttpSpec(path="/ok", body="status: healthy")),
        Target(a4, "http", HTTP, HttpSpec(path="/fail")),
        Target(a4, "http", HTTP, HttpSpec(path="/fail", status=(500,))),
        Target(a4, "http", HTTP, HttpSpec(path="/other", body="healthy")),
        Target(a4, "http", HTTP, HttpSpec(path="/chunked", body="status: healthy$")),
        Target(a4, "http", HTTP, HttpSpec(method="HEAD", path="/ok")),
        Target(a4, "http", HTTP, HttpSpec(path="/host", host="vobox.example", body="^host=vobox.example$")),
        Target(a6, "http", HTTP, HttpSpec(path="/host", body=rf"^host=\[{a6}\]:{HTTP}$")),
        Target(a4, "http", HANG),
        Target(a4, "http", LINE),
        Target(a4, "http", WRONG),
        Target(a4, "http", seg.closed_port),
        Target(a4, "http", HTTP),  # default spec: GET / expecting 2xx
    ]
    results, elapsed = sweep(seg, targets)
    got = [(r.ok, r.layer, r.error, r.status_code) for r in results]
    assert got[:10] == [
        (True, None, None, 200),
        (True, None, None, 200),
        (False, "l7", "status 500", 500),
        (True, None, None, 500),
        (False, "l7", r"body does not match: b'something else\n'", 200),
        (True, None, None, 200),
        (True, None, None, 200),
        (True, None, None, 200),
        (True, None, None, 200),
        (False, "l7", "no answer (timeout)", None),
    ]
    ok, layer, error, status = got[10]  # the greeting, and maybe already answers to the request's lines
    assert (ok, layer, status) == (False, "l7", None) and error.startswith(r"bad response: not HTTP: b'HELLO vobox\r\n")
    assert got[11] == (False, "l7", r"bad response: not HTTP: b'ERR nope\r\n'", None)
    assert got[12:] == [(False, "l4", "refused", None), (True, None, None, 200)]
    assert elapsed < TIMEOUT_S + 0.5


def test_https_verifies_against_the_ca_file_or_not_at_all(svc):
    seg, ca_file = svc
    a4, a6 = seg.ipv4[2], seg.ipv6[2]
    targets = [
        Target(a4, "http", HTTPS, HttpSpec(path="/ok", body="healthy", tls=True, ca_file=ca_file)),
        Target(a6, "http", HTTPS, HttpSpec(path="/ok", tls=True, ca_file=ca_file)),
        Target(a4, "http", HTTPS, HttpSpec(path="/ok", tls=True, ca_file=ca_file, host="svc.example")),
        Target(a4, "http", OTHER_CA, HttpSpec(path="/ok", tls=True, ca_file=ca_file)),
        Target(a4, "http", OTHER_CA, HttpSpec(path="/ok", tls=True, verify=False)),
        Target(a4, "http", HTTPS, HttpSpec(path="/fail", tls=True, ca_file=ca_file)),
        Target(a4, "http", HTTP, HttpSpec(path="/ok", tls=True, ca_file=ca_file)),  # plain HTTP port
        Target(a4, "http", HANG, HttpSpec(tls=True, verify=False)),
    ]
    results, elapsed = sweep(seg, targets)
    got = [outcome(r) for r in results]
    assert got[:3] == [(True, None, None)] * 3
    assert got[3] == (False, "l7", "tls: certificate verify failed: unable to get local issuer certificate")
    assert got[4] == (True, None, None)
    assert got[5] == (False, "l7", "status 500")
    assert got[6][:2] == (False, "l7") and got[6][2].startswith("tls: "), got[6]
    assert got[7] == (False, "l7", "tls: handshake timeout")
    for r in results[:3]:
        assert 364 < r.cert_days_left < 366 and r.cert_not_after_s > time.time() + 364 * 86400
    assert results[3].cert_days_left is None
    assert elapsed < TIMEOUT_S + 0.5


def test_tls_days_left_warning_expired_wrong_ca(svc):
    seg, ca_file = svc
    a4, a6 = seg.ipv4[3], seg.ipv6[3]
    targets = [
        Target(a4, "tls", HTTPS, TlsSpec(ca_file=ca_file, warn_days=14)),
        Target(a6, "tls", SOON, TlsSpec(ca_file=ca_file, warn_days=14)),
        Target(a4, "tls", SOON, TlsSpec(ca_file=ca_file)),  # no threshold: no warning
        Target(a4, "tls", EXPIRED, TlsSpec(ca_file=ca_file, warn_days=14)),
        Target(a4, "tls", EXPIRED, TlsSpec(verify=False)),
        Target(a4, "tls", OTHER_CA, TlsSpec(ca_file=ca_file)),
        Target(a4, "tls", HTTPS, TlsSpec(ca_file=ca_file, server_name="svc.example")),
        Target(a4, "tls", HTTPS, TlsSpec(ca_file=ca_file, server_name="wrong.example")),
        Target(a4, "tls", HANG, TlsSpec(ca_file=ca_file)),
        Target(a4, "tls", seg.closed_port, TlsSpec(ca_file=ca_file)),
        Target(a4, "tls", HTTPS),  # the system CAs do not know the test CA
    ]
    results, elapsed = sweep(seg, targets)
    got = [(r.ok, r.layer, r.error, r.warning) for r in results]
    assert got[0] == (True, None, None, None) and 364 < results[0].cert_days_left < 366
    assert got[1] == (True, None, None, "certificate expires in 3.0 days (< 14)")
    assert 2.9 < results[1].cert_days_left < 3.0
    assert got[2] == (True, None, None, None) and 2.9 < results[2].cert_days_left < 3.0
    assert got[3] == (False, "l7", "tls: certificate verify failed: certificate has expired", None)
    assert got[4] == (False, "l7", "certificate expired 1.0 days ago", None)
    assert -1.01 < results[4].cert_days_left < -0.99
    assert got[5] == (False, "l7", "tls: certificate verify failed: unable to get local issuer certificate", None)
    assert got[6] == (True, None, None, None)
    assert got[7] == (False, "l7", "tls: certificate verify failed: Hostname mismatch, certificate is not valid for "
                      "'wrong.example'.", None)
    assert got[8] == (False, "l7", "tls: handshake timeout", None)
    assert got[9] == (False, "l4", "refused", None)
    assert got[10] == (False, "l7", "tls: certificate verify failed: unable to get local issuer certificate", None)
    assert elapsed < TIMEOUT_S + 0.5


def test_every_failure_carries_its_layer_in_a_mixed_sweep(svc):
    seg, ca_file = svc
    a4 = seg.ipv4[0]
    absent4, absent6 = seg.absent_ipv4, seg.absent_ipv6
    targets = [Target(absent4, "icmp"), Target(absent4, "arp"), Target(absent6, "icmp6"), Target(absent6, "ndp"),
               Target(a4, "tcp", seg.closed_port), Target(a4, "http", HANG), Target(a4, "tls", EXPIRED),
               Target(a4, "icmp"), Target(a4, "tcp", LINE, TcpSpec(expect="HELLO")),
               Target(a4, "tls", HTTPS, TlsSpec(ca_file=ca_file))]
    results, elapsed = sweep(seg, targets)
    assert [(r.probe, r.ok, r.layer) for r in results] == [
        ("icmp", False, "l3"), ("arp", False, "l2"), ("icmp6", False, "l3"), ("ndp", False, "l2"),
        ("tcp", False, "l4"), ("http", False, "l7"), ("tls", False, "l7"),
        ("icmp", True, None), ("tcp", True, None), ("tls", True, None)]
    for r in results[:4]:
        assert r.layer == probes.PROBES[r.probe].LAYER
    assert elapsed < TIMEOUT_S + 0.6
