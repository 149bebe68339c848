"""The webhook over TLS on the real agent: client certificates required against a hashed CA directory (as
/etc/grid-security/certificates), no plain listener, the certificate reloaded on SIGHUP while the agent runs,
and Debian's Alertmanager (http_config.tls_config + the bearer token) delivering VoboxBoxFrozen so the agent
restarts the container.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from agent import netns
from tests.agent.agent_proc import AgentProc, errors_in_log, free_port, query, write_config
from tests.pki import CA

pytestmark = pytest.mark.lab

TOKEN = "lab-tls-token-0b5e55ed"
PAYLOAD = json.dumps({"status": "firing", "alerts": [{"status": "firing",
                                                      "labels": {"alertname": "VoboxBoxFrozen", "box": "ctr2"}}]})


def _started_at(container: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Status}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()


def _connect(lab, port: int) -> socket.socket:
    with netns.entered(lab.monitor_ns):   # the agent's webhook listens on the monitor namespace's loopback
        return socket.create_connection(("127.0.0.1", port), timeout=10)


def tls_post(lab, port: int, ctx: ssl.SSLContext, token: str | None = TOKEN) -> int | None:
    """The HTTP status of one POST /webhook over TLS; None when the TLS connection is refused (no HTTP answer)."""
    raw = _connect(lab, port)
    try:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            s.sendall((f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"
                       f"Content-Length: {len(PAYLOAD)}\r\nConnection: close\r\n\r\n{PAYLOAD}").encode())
            head = s.recv(64)
    except (ssl.SSLError, ConnectionError, OSError):
        return None
    finally:
        raw.close()
    return int(head.split()[1]) if head.startswith(b"HTTP/") else None


def served_cert(lab, port: int, client: tuple[str, str]) -> bytes:
    """The DER certificate the agent presents to a new connection (our client certificate shown, theirs not checked)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(*client)
    raw = _connect(lab, port)
    with ctx.wrap_socket(raw) as sock:
        return sock.getpeercert(binary_form=True)


def client_ctx(ca: CA, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca.pem)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def test_tls_webhook_with_client_certificates_alertmanager_and_reload(clean_lab, agents, tmp_path):
    lab, db = clean_lab, "t_webhook_tls"
    site, other = CA(tmp_path / "pki", "site"), CA(tmp_path / "pki", "intruder")
    # the grid layout: host certificate and key, and a CA directory with hashed names (openssl rehash)
    hostcert, hostkey = tmp_path / "hostcert.pem", tmp_path / "hostkey.pem"
    first = site.issue("vobox-agent-webhook")
    shutil.copy(first[0], hostcert)
    shutil.copy(first[1], hostkey)
    certificates = tmp_path / "certificates"
    certificates.mkdir()
    shutil.copy(site.pem, certificates / "site-ca.pem")
    subprocess.run(["openssl", "rehash", str(certificates)], check=True, capture_output=True)
    am_cert = site.issue("alertmanager", client=True, org="vobox-lab")
    token_file = tmp_path / "webhook.token"
    token_file.write_text(TOKEN + "\n")

    port, metrics_port = free_port(lab.monitor_ns), free_port(lab.monitor_ns)
    cfg = write_config(
        lab, str(tmp_path), database=db,
        sections={"remediation": {"enabled": True, "auto": False, "cooldown": 1, "verify": 3, "stop_timeout": 2,
                                  "webhook_listen": f"127.0.0.1:{port}", "webhook_token_file": str(token_file),
                                  "webhook_cert_file": str(hostcert), "webhook_key_file": str(hostkey),
                                  "webhook_client_ca_file": str(certificates), "webhook_verify_client": "required",
                                  "webhook_auth_failures_max": 10, "webhook_auth_failures_window": 60},
                  "metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
        box_keys={"ctr1": {"remediate": ["restart_container"], "restart_stopped": True},
                  "ctr2": {"remediate": ["restart_container"], "restart_stopped": True}})
    agent = AgentProc(lab, cfg, os.path.join(tmp_path, "agent.log"))
    agents.append(agent)
    agent.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 30)
    ctr2_before = _started_at(lab.box("ctr2").container)

    # Refused: no client certificate (the token alone is not enough), another CA's, a plain request with the token.
    assert tls_post(lab, port, client_ctx(site)) is None
    assert tls_post(lab, port, client_ctx(site, other.issue("intruder", client=True))) is None
    raw = _connect(lab, port)
    try:
        raw.sendall((f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(PAYLOAD)}\r\n\r\n{PAYLOAD}").encode())
        try:
            answer = raw.recv(64)
        except ConnectionError:
            answer = b""
    finally:
        raw.close()
    assert not answer.startswith(b"HTTP/"), answer     # no plain listener: the sniffed token buys nothing
    # With the certificate but a wrong token: 401 (required certificates and a token file: both are needed).
    assert tls_post(lab, port, client_ctx(site, am_cert), token="PLANTED-wrong-token") == 401
    time.sleep(0.5)
    log = agent.log_text()
    assert log.count("refused TLS client 127.0.0.1: client certificate not accepted") == 2, log[-3000:]
    assert "TLS handshake with 127.0.0.1 failed: HTTP_REQUEST" in log
    assert "refused request from 127.0.0.1 (/O=vobox-lab/CN=alertmanager): missing or wrong bearer token" in log
    assert TOKEN not in log and "PLANTED-wrong-token" not in log
    assert _started_at(lab.box("ctr2").container) == ctr2_before

    # SIGHUP: the renewed certificate is served to new connections, the agent keeps running.
    with open(first[0], "rb") as f:
        assert served_cert(lab, port, am_cert) == ssl.PEM_cert_to_DER_cert(f.read().decode())
    renewed = site.issue("vobox-agent-webhook-renewed", days=90)
    shutil.copy(renewed[0], hostcert)
    shutil.copy(renewed[1], hostkey)
    with open(renewed[0], "rb") as f:
        renewed_der = ssl.PEM_cert_to_DER_cert(f.read().decode())
    os.kill(agent.pid, signal.SIGHUP)
    deadline = time.monotonic() + 15
    while served_cert(lab, port, am_cert) != renewed_der:
        assert agent.alive() and time.monotonic() < deadline, agent.log_text()[-3000:]
        time.sleep(0.2)
    agent.wait_cycles(2)
    assert agent.alive() and "webhook: TLS certificate" in agent.log_text()

    # Debian's Alertmanager with tls_config (the site CA, its client certificate) and the bearer token.
    stack = lab.prometheus_start(f"127.0.0.1:{metrics_port}", f"https://127.0.0.1:{port}/webhook", str(token_file),
                                 interval_s=1.0, tls={"ca_file": site.pem, "cert_file": am_cert[0],
                                                      "key_file": am_cert[1]})
    deadline = time.monotonic() + 20
    while not any(t["health"] == "up" for t in stack.targets()):
        assert time.monotonic() < deadline, f"prometheus never scraped the agent: {stack.targets()}"
        time.sleep(0.2)
    ctr = lab.box("ctr1").container
    before = _started_at(ctr)
    lab.fault("ctr1", "stop")
    fault_t = time.monotonic()
    while _started_at(ctr) == before or not _started_at(ctr).endswith("running"):
        assert time.monotonic() < fault_t + 60, (
            f"ctr1 not restarted 60 s after the fault; alerts {stack.alerts()}\nalertmanager log:\n"
            f"{stack.log_tail('prometheus-alertmanager')}\nagent log:\n{agent.log_text()[-3000:]}")
        time.sleep(0.1)
    print(f"\nalert path over TLS with a client certificate: fault -> restart {time.monotonic() - fault_t:.1f} s")
    agent.wait_state("ctr1", "up", timeout_s=30)
    assert "webhook: box ctr1 action restart_container queued" in agent.log_text()
    rows = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not rows:
        rows = query(lab, "SELECT * FROM remediation", db)
        time.sleep(0.3)
    assert [(r["box"], r["action"], r["trigger"], r["ok"]) for r in rows] == [("ctr1", "restart_container",
                                                                                 "alert", 1)], rows
    assert agent.stop() == 0
    text = agent.log_text()
    assert errors_in_log(text) == [] and TOKEN not in text
    lab.prometheus_stop()
