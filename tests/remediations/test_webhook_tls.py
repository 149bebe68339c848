"""The webhook over TLS on a real server object (loopback): server certificate reload, client certificates
(CA file and hashed CA directory), the token/certificate matrix, failed authentications limited (429) and
logged with the peer, never with the token. Certificates are made here (tests/pki.py)."""
from __future__ import annotations

import http.client
import json
import logging
import shutil
import socket
import ssl
import subprocess

import pytest

from agent.tls import (
    TLSFileError,
    server as server_tls,  # the webhook's agent.tls.TLSSettings
)
from remediations import RequestResult
from remediations.webhook import AuthLimiter, WebhookReceiver, cert_subject
from tests.pki import CA

TOKEN = "tls-test-token"
PLANTED = "PLANTED-s3cret-4b1d-never-log-me"
PAYLOAD = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "VoboxBoxFrozen",
                                                                             "box": "ctr1"}}]}


@pytest.fixture
def pki(tmp_path):
    """(the CA, a server cert, a client cert, a wrong CA's client cert, an expired client cert of the CA)."""
    good, other = CA(tmp_path / "pki", "good"), CA(tmp_path / "pki", "other")
    return {"ca": good, "server": good.issue("webhook-server"),
            "client": good.issue("alertmanager", client=True, org="vobox-test"),
            "wrong_ca": other.issue("intruder", client=True),
            "expired": good.issue("old-alertmanager", client=True, days=-1)}


@pytest.fixture
def serve():
    """serve(tls=..., token=..., limiter=...) -> (receiver, calls); every receiver is stopped at the end."""
    made = []

    def start(tls=None, token=TOKEN, limiter=None, token_file=None):
        calls = []

        def submit(box, action):
            calls.append((box, action))
            return RequestResult(box, action or "restart_container", True, "queued")

        rx = WebhookReceiver("127.0.0.1", 0, token, ["ctr1"], submit, tls=tls, limiter=limiter,
                             token_file=token_file)
        rx.start()
        made.append(rx)
        return rx, calls

    yield start
    for rx in made:
        rx.stop()


def client_context(ca: CA | None, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca.pem if ca else None)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def post(rx, ctx: ssl.SSLContext | None, token: str | None = TOKEN, address: str = "127.0.0.1",
         path: str = "/webhook") -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one POST; ssl.SSLError/OSError when the handshake is refused."""
    port = rx.address[1]
    conn = (http.client.HTTPSConnection(address, port, context=ctx, timeout=10) if ctx is not None
            else http.client.HTTPConnection(address, port, timeout=10))
    if address != "127.0.0.1":
        conn.source_address = (address, 0)
    try:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        conn.request("POST", path, body=json.dumps(PAYLOAD).encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null"), dict(resp.getheaders())
    finally:
        conn.close()


def served_cert(rx) -> bytes:
    """The DER certificate the receiver presents now (a fresh connection, no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(rx.address, timeout=10) as raw, ctx.wrap_socket(raw) as s:
        return s.getpeercert(binary_form=True)


def refused(rx, ctx) -> bool:
    """The TLS client is refused: the handshake or the first read fails, no HTTP answer comes."""
    try:
        post(rx, ctx)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return True
    return False


# --- the token/certificate matrix ----------------------------------------------------------------

def test_tls_without_client_certificates_still_needs_the_token(pki, serve):
    rx, calls = serve(server_tls(*pki["server"]))
    assert post(rx, client_context(pki["ca"]), token=None)[0] == 401
    assert post(rx, client_context(pki["ca"]))[0] == 202 and calls == [("ctr1", None)]


@pytest.mark.parametrize("ca_kind", ["file", "hashed-directory"])
def test_required_client_certificate_is_the_credential(pki, serve, ca_kind, caplog):
    ca = pki["ca"].pem if ca_kind == "file" else pki["ca"].hashed_dir()
    rx, calls = serve(server_tls(*pki["server"], client_ca=ca, verify_client="required"), token=None)
    with caplog.at_level(logging.INFO, logger="remediations.webhook"):
        assert refused(rx, client_context(pki["ca"]))                       # no certificate
        assert refused(rx, client_context(pki["ca"], pki["wrong_ca"]))      # another CA's
        assert refused(rx, client_context(pki["ca"], pki["expired"]))       # expired
        assert refused(rx, client_context(pki["ca"], pki["server"]))        # serverAuth only: not for clients
        assert calls == []
        assert post(rx, client_context(pki["ca"], pki["client"]), token=None)[0] == 202
    assert calls == [("ctr1", None)]
    refusals = [r.getMessage() for r in caplog.records if "refused TLS client 127.0.0.1" in r.getMessage()]
    assert len(refusals) == 4, caplog.text
    assert any("expired" in m for m in refusals) and any("unsuitable certificate purpose" in m for m in refusals)


def test_required_client_certificate_and_a_token_file_need_both(pki, serve):
    rx, calls = serve(server_tls(*pki["server"], client_ca=pki["ca"].pem, verify_client="required"))
    assert refused(rx, client_context(pki["ca"]))                           # the token alone is not enough
    assert post(rx, client_context(pki["ca"], pki["client"]), token=None)[0] == 401
    assert post(rx, client_context(pki["ca"], pki["client"]))[0] == 202 and len(calls) == 1


def test_optional_client_certificate_is_verified_when_sent_and_the_token_is_still_needed(pki, serve, caplog):
    rx, calls = serve(server_tls(*pki["server"], client_ca=pki["ca"].pem, verify_client="optional"))
    assert refused(rx, client_context(pki["ca"], pki["wrong_ca"]))
    with caplog.at_level(logging.WARNING, logger="remediations.webhook"):
        assert post(rx, client_context(pki["ca"], pki["client"]), token=PLANTED)[0] == 401
    assert post(rx, client_context(pki["ca"]))[0] == 202                       # no certificate, the token
    assert post(rx, client_context(pki["ca"], pki["client"]))[0] == 202        # both
    assert len(calls) == 2
    # the refusal names the peer and its certificate's subject, never the token it sent
    assert "127.0.0.1 (/O=vobox-test/CN=alertmanager)" in caplog.text and PLANTED not in caplog.text


def test_an_unhashed_ca_directory_verifies_nothing(pki, serve):
    """OpenSSL's CApath finds CAs by hashed name only (a server on it refuses every client certificate: see
    tests/agent/test_tls.py): the one TLS type refuses such a directory, so the webhook never serves with one."""
    d = pki["ca"].plain_dir()
    with pytest.raises(TLSFileError, match=r"has no hashed CA names .*openssl rehash"):
        serve(server_tls(*pki["server"], client_ca=d, verify_client="required"), token=None)
    subprocess.run(["openssl", "rehash", d], check=True, capture_output=True)
    rx2, calls = serve(server_tls(*pki["server"], client_ca=d, verify_client="required"), token=None)
    assert post(rx2, client_context(pki["ca"], pki["client"]), token=None)[0] == 202 and calls


def test_a_plain_request_to_the_tls_port_gets_nothing(pki, serve, caplog):
    """A token sniffed from a plain request is useless: no plain listener exists when TLS is configured."""
    rx, calls = serve(server_tls(*pki["server"]))
    with caplog.at_level(logging.INFO, logger="remediations.webhook"):
        try:
            status = post(rx, None)[0]      # plain HTTP, the right token
        except (http.client.HTTPException, ConnectionError, OSError):
            status = None
    assert status is None or status >= 400
    assert calls == []
    assert TOKEN not in caplog.text and "TLS handshake with 127.0.0.1 failed" in caplog.text


def test_empty_token_without_required_client_certificates_is_refused(pki):
    with pytest.raises(ValueError, match="token must not be empty"):
        WebhookReceiver("127.0.0.1", 0, None, ["ctr1"], lambda b, a: None,
                        tls=server_tls(*pki["server"], client_ca=pki["ca"].pem, verify_client="optional"))


# --- reload (SIGHUP) -----------------------------------------------------------------------------

def test_reload_serves_the_new_certificate_to_new_connections(pki, serve, tmp_path, caplog):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki["server"][0], cert)
    shutil.copy(pki["server"][1], key)
    rx, calls = serve(server_tls(str(cert), str(key)))
    first = served_cert(rx)
    # an open connection keeps going across the reload
    keep = http.client.HTTPSConnection("127.0.0.1", rx.address[1], context=client_context(pki["ca"]), timeout=10)
    keep.request("GET", "/healthz")
    assert keep.getresponse().read() == b'{"status": "ok"}'
    renewed = pki["ca"].issue("webhook-server-renewed", days=90)
    shutil.copy(renewed[0], cert)
    shutil.copy(renewed[1], key)
    assert served_cert(rx) == first                    # nothing changes before the reload
    assert rx.reload() is True
    second = served_cert(rx)
    assert second != first
    with open(renewed[0], "rb") as f:
        assert ssl.PEM_cert_to_DER_cert(f.read().decode()) == second
    keep.request("GET", "/healthz")
    assert keep.getresponse().status == 200
    keep.close()
    # a broken renewal: the reload fails loudly, the previous certificate is still served
    cert.write_text("not a certificate\n")
    with caplog.at_level(logging.ERROR, logger="remediations.webhook"):
        assert rx.reload() is False
    assert "TLS reload failed, still serving the previous certificate" in caplog.text
    assert served_cert(rx) == second
    assert post(rx, client_context(pki["ca"]))[0] == 202 and calls


def test_reload_reads_a_rotated_token(pki, serve, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    rx, _ = serve(server_tls(*pki["server"]), token_file=str(token_file))
    token_file.write_text("rotated-token\n")
    assert post(rx, client_context(pki["ca"]))[0] == 202
    rx.reload()
    assert post(rx, client_context(pki["ca"]))[0] == 401
    assert post(rx, client_context(pki["ca"]), token="rotated-token")[0] == 202


# --- failed authentications: 429 per peer, logged with the peer and never the token --------------

def test_failed_authentications_are_limited_per_peer_with_retry_after(pki, serve, caplog):
    rx, calls = serve(server_tls(*pki["server"]), limiter=AuthLimiter(3, 60.0))
    ctx = client_context(pki["ca"])
    with caplog.at_level(logging.DEBUG, logger="remediations.webhook"):
        assert [post(rx, ctx, token=PLANTED)[0] for _ in range(3)] == [401, 401, 401]
        status, body, headers = post(rx, ctx)             # the right token, but too late
    assert status == 429 and "too many failed authentications" in body["error"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert calls == []
    # another peer address is not affected (127.0.0.2 is loopback too)
    other = server_tls(*pki["ca"].issue("webhook-server-2", addresses=("127.0.0.2",)))
    calls2: list[str] = []
    rx2 = WebhookReceiver("127.0.0.2", 0, TOKEN, ["ctr1"], lambda b, a: calls2.append(b) or
                          RequestResult(b, "restart_container", True, "queued"), tls=other,
                          limiter=rx._server.limiter)
    rx2.start()
    try:
        assert post(rx2, ctx, address="127.0.0.2")[0] == 202 and calls2 == ["ctr1"]
    finally:
        rx2.stop()
    text = caplog.text
    assert PLANTED not in text and TOKEN not in text
    assert text.count("refused request from 127.0.0.1: missing or wrong bearer token") == 3
    assert "127.0.0.1 locked out for 60 s after 3 failed authentications" in text


def test_refused_client_certificates_count_as_failed_authentications(pki, serve):
    rx, _ = serve(server_tls(*pki["server"], client_ca=pki["ca"].pem, verify_client="optional"),
                  limiter=AuthLimiter(2, 60.0))
    assert refused(rx, client_context(pki["ca"], pki["wrong_ca"]))
    assert refused(rx, client_context(pki["ca"], pki["expired"]))
    status, _, headers = post(rx, client_context(pki["ca"], pki["client"]))
    assert status == 429 and int(headers["Retry-After"]) > 0


def test_auth_limiter_fixed_window():
    now = [100.0]
    lim = AuthLimiter(3, 60.0, now=lambda: now[0])
    assert [lim.failed("a") for _ in range(3)] == [False, False, True]
    assert lim.retry_after_s("a") == 60.0 and lim.retry_after_s("b") == 0.0
    now[0] += 45
    assert lim.retry_after_s("a") == 15.0
    now[0] += 15                     # the window (from the first failure) ended
    assert lim.retry_after_s("a") == 0.0
    assert lim.failed("a") is False and lim.retry_after_s("a") == 0.0   # a new window, one failure in it


def test_cert_subject_one_line_form():
    assert cert_subject({"subject": ((("domainComponent", "ch"),), (("domainComponent", "cern"),),
                                     (("organizationalUnitName", "computers"),), (("commonName", "vobox.cern.ch"),))}
                        ) == "/DC=ch/DC=cern/OU=computers/CN=vobox.cern.ch"
    assert cert_subject({}) is None and cert_subject(None) is None

