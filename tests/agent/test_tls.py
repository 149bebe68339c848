"""agent.tls: the one TLS type. What problems() says is what context() does; each problem names its field."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest

from agent import tls
from tests.pki import CA


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki", "site")


def test_good_server_and_client_settings_have_no_problems_and_build_contexts(ca):
    cert, key = ca.issue("server")
    s = tls.server(cert, key, client_ca=ca.hashed_dir(), verify_client="required")
    assert s.problems() == []
    ctx = s.context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    c = tls.client(ca_file=ca.pem)
    assert c.problems() == [] and c.context().verify_mode == ssl.CERT_REQUIRED and c.requests_verify == ca.pem
    insecure = tls.client(insecure_skip_verify=True)
    assert insecure.insecure_skip_verify and insecure.requests_verify is False
    assert insecure.context().verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("case, field, text", [
    pytest.param("cert-missing", "cert_file", "no such file: ", id="cert-missing"),
    pytest.param("key-missing", "key_file", "no such file: ", id="key-missing"),
    pytest.param("key-of-another", "cert_file", "cannot load the certificate and key", id="key-mismatch"),
    pytest.param("ca-missing", "ca_file", "no such file or directory", id="ca-missing"),
    pytest.param("ca-garbage", "ca_file", "holds no usable PEM CA certificate", id="ca-garbage"),
    pytest.param("ca-unhashed", "ca_file", "has no hashed CA names (<hash>.0); run `openssl rehash ", id="unhashed"),
])
def test_each_unusable_file_is_one_problem_naming_its_field_and_context_refuses_the_same(tmp_path, ca, case, field,
                                                                                        text):
    cert, key = ca.issue("server")
    ca_file = ca.pem
    if case == "cert-missing":
        cert = str(tmp_path / "gone.pem")
    elif case == "key-missing":
        key = str(tmp_path / "gone.key")
    elif case == "key-of-another":
        key = ca.issue("other")[1]
    elif case == "ca-missing":
        ca_file = str(tmp_path / "no-ca")
    elif case == "ca-garbage":
        (tmp_path / "garbage.pem").write_text("hello\n")
        ca_file = str(tmp_path / "garbage.pem")
    elif case == "ca-unhashed":
        ca_file = ca.plain_dir()
    s = tls.server(cert, key, client_ca=ca_file, verify_client="optional")
    [problem] = s.problems()
    assert problem.field == field and text in problem.message, problem
    with pytest.raises(tls.TLSFileError) as exc:
        s.context()
    assert (exc.value.field, exc.value.message) == (problem.field, problem.message)


def test_settings_that_cannot_go_together_are_a_value_error(ca):
    cert, key = ca.issue("server")
    with pytest.raises(ValueError, match="needs a client CA"):
        tls.server(cert, key, verify_client="required").context()
    with pytest.raises(ValueError, match="expected one of none, optional, required"):
        tls.server(cert, key, client_ca=ca.pem, verify_client="require").context()


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bool:
    """A TLS handshake over a socket pair; True when both sides completed it."""
    a, b = socket.socketpair()
    ok = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
            ok["server"] = True
        except (ssl.SSLError, OSError):
            ok["server"] = False

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="127.0.0.1") as c:
            c.sendall(b"x")
    except (ssl.SSLError, OSError):
        pass
    t.join(10)
    return ok.get("server", False)


def test_why_an_unhashed_directory_is_refused_openssl_finds_no_ca_in_it(ca):
    """OpenSSL's CApath looks CAs up by <subject hash>.N only: a server on an unhashed directory refuses every
    client certificate (the reason problems() refuses such a directory, and the webhook never serves with one)."""
    cert, key = ca.issue("server")
    client_cert, client_key = ca.issue("alertmanager", client=True)
    client = ssl.create_default_context(cafile=ca.pem)
    client.load_cert_chain(client_cert, client_key)
    raw = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    raw.load_cert_chain(cert, key)
    raw.verify_mode = ssl.CERT_REQUIRED
    raw.load_verify_locations(capath=ca.plain_dir())      # OpenSSL accepts the directory ...
    assert not _handshake(raw, client)                    # ... and then verifies nothing against it
    good = tls.server(cert, key, client_ca=ca.hashed_dir(), verify_client="required").context()
    assert _handshake(good, client)
