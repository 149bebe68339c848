"""Service-probe specs and answer matching, without sockets: validation, expect, HTTP parsing, certificate dates."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import probes
from probes import HttpSpec, Target, TcpSpec, TlsSpec, tls
from probes.dialogue import Verdict
from probes.http import ResponseReader, host_header, host_name, job_for as http_job
from probes.tcp import ExpectReader, compile_expect
from tests.probes import certs

A = "192.0.2.10"


@pytest.mark.parametrize("target, message", [
    pytest.param(Target(A, "tcp", 1, TcpSpec(expect="(")), "tcp target 192.0.2.10:1: expect: invalid regular "
                 "expression '\\(': missing \\), unterminated subpattern", id="tcp-bad-regex"),
    pytest.param(Target(A, "tcp", 1, TcpSpec(expect=5)), "expect must be a string", id="tcp-expect-not-text"),
    pytest.param(Target(A, "tcp", 1, TcpSpec(send=5)), "send must be a string", id="tcp-send-not-text"),
    pytest.param(Target(A, "http", 80, HttpSpec(method="FETCH")),
                 "http target 192.0.2.10:80: method must be one of GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, "
                 "got 'FETCH'", id="http-method"),
    pytest.param(Target(A, "http", 80, HttpSpec(method="get")), "method must be one of", id="http-method-case"),
    pytest.param(Target(A, "http", 80, HttpSpec(path="status")), "path must start with /", id="http-path"),
    pytest.param(Target(A, "http", 80, HttpSpec(path="/a b")), "path must start with / and hold no spaces",
                 id="http-path-space"),
    pytest.param(Target(A, "http", 80, HttpSpec(status=(200, 700))), "status must be a list of HTTP status codes "
                 "100-599 \\(empty: any 2xx\\), got \\(200, 700\\)", id="http-status-range"),
    pytest.param(Target(A, "http", 80, HttpSpec(status=("200",))), "status must be a list", id="http-status-text"),
    pytest.param(Target(A, "http", 80, HttpSpec(status=(True,))), "status must be a list", id="http-status-bool"),
    pytest.param(Target(A, "http", 80, HttpSpec(status=200)), "status must be a list", id="http-status-scalar"),
    pytest.param(Target(A, "http", 80, HttpSpec(body="[")), "body: invalid regular expression", id="http-body-regex"),
    pytest.param(Target(A, "http", 80, HttpSpec(host="a b")), "host must be a host name", id="http-host"),
    pytest.param(Target(A, "http", 80, HttpSpec(verify=False)), "server_name, ca_file and verify are for tls = true",
                 id="http-tls-option-without-tls"),
    pytest.param(Target(A, "http", 80, HttpSpec(tls="yes")), "tls must be true or false", id="http-tls-not-bool"),
    pytest.param(Target(A, "http", 443, HttpSpec(tls=True, ca_file="/nonexistent/ca.pem")),
                 "ca_file '/nonexistent/ca.pem' is not a file", id="https-ca-missing"),
    pytest.param(Target(A, "tls", 443, TlsSpec(verify="no")), "verify must be true or false", id="tls-verify"),
    pytest.param(Target(A, "tls", 443, TlsSpec(warn_days=-1)), "warn_days must be a number of days >= 0",
                 id="tls-warn-negative"),
    pytest.param(Target(A, "tls", 443, TlsSpec(warn_days="14")), "warn_days must be a number", id="tls-warn-text"),
    pytest.param(Target(A, "tls", 443, TlsSpec(server_name="")), "server_name must be a host name", id="tls-sni"),
    pytest.param(Target(A, "tls", 443, HttpSpec()), "tls target 192.0.2.10: spec must be a TlsSpec or None, "
                 "got HttpSpec", id="spec-of-another-kind"),
    pytest.param(Target(A, "icmp", None, TcpSpec()), "icmp target 192.0.2.10: spec must be none", id="spec-on-icmp"),
    pytest.param(Target(A, "tls"), "tls target 192.0.2.10: port must be an integer 1-65535", id="tls-without-port"),
])
def test_bad_specs_are_errors_naming_the_field(target, message):
    with pytest.raises(ValueError, match=message):
        probes.validate(target)


def test_good_specs_pass_and_stay_hashable(tmp_path):
    ca = certs.make_ca(tmp_path, "ca")
    good = [Target(A, "tcp", 1093), Target(A, "tcp", 1093, TcpSpec(send=b"\x00\x01", expect="^OK")),
            Target(A, "http", 80), Target(A, "http", 80, HttpSpec(method="HEAD", path="/x?y=1", status=[200, 301],
                                                                  body="ok", host="svc.example:8080")),
            Target(A, "http", 443, HttpSpec(tls=True, ca_file=str(ca.path), server_name="svc.example")),
            Target(A, "http", 443, HttpSpec(tls=True, verify=False)),
            Target(A, "tls", 443), Target(A, "tls", 443, TlsSpec(ca_file=str(ca.path), warn_days=14))]
    for t in good:
        probes.validate(t)
    # a status list from a config file becomes a tuple: equal specs are equal targets, probed once
    assert HttpSpec(status=[200]) == HttpSpec(status=(200,))
    assert len({Target(A, "http", 80, HttpSpec(status=[200])), Target(A, "http", 80, HttpSpec(status=(200,)))}) == 1
    assert len({Target(A, "tcp", 1), Target(A, "tcp", 1, TcpSpec())}) == 2  # an empty spec is not "none"


def test_ca_file_with_verify_off_is_an_error(tmp_path):
    ca = certs.make_ca(tmp_path, "ca")
    with pytest.raises(ValueError, match="ca_file is for verify = true"):
        probes.validate(Target(A, "tls", 443, TlsSpec(ca_file=str(ca.path), verify=False)))


@pytest.mark.parametrize("chunks, verdict", [
    pytest.param([b"HELLO vobox\r\n"], Verdict(True), id="match-at-once"),
    pytest.param([b"HEL", b"LO vo", b"box\r\n"], Verdict(True), id="match-across-chunks"),
    pytest.param([b"ERR\r\n", b""], Verdict(False, r"answer does not match expect (closed): b'ERR\r\n'"),
                 id="closed-after-wrong-answer"),
    pytest.param([b""], Verdict(False, "no answer (closed)"), id="closed-silently"),
    pytest.param([b"x" * 65536], Verdict(False, "answer does not match expect (answer too long): b'" + "x" * 40
                                         + "'..."), id="too-long"),
])
def test_expect_reader(chunks, verdict):
    reader = ExpectReader(compile_expect("^HELLO vobox", "expect"))
    got = None
    for chunk in chunks:
        got = reader.feed(chunk)
    assert got == verdict


def test_expect_reader_at_deadline():
    reader = ExpectReader(compile_expect("PONG", "expect"))
    assert reader.at_deadline() == Verdict(False, "no answer (timeout)")
    assert reader.feed(b"PIN") is None
    assert reader.at_deadline() == Verdict(False, "answer does not match expect (timeout): b'PIN'")


def reader_for(spec: HttpSpec) -> ResponseReader:
    job = http_job(Target(A, "http", 8080, spec), tls.Contexts())
    assert isinstance(job.reader, ResponseReader)
    return job.reader


def feed_all(reader: ResponseReader, chunks: list[bytes]) -> Verdict | None:
    got = None
    for chunk in chunks:
        got = reader.feed(chunk)
        if got is not None:
            return got
    return got


OK_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nstatus: healthy\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nstatus\r\na\r\n: healthy\n\r\n0\r\n\r\n"


@pytest.mark.parametrize("spec, chunks, verdict", [
    pytest.param(HttpSpec(), [OK_BODY], Verdict(True, None, 200), id="2xx-default"),
    pytest.param(HttpSpec(), [b"HTTP/1.1 204 No Content\r\n\r\n"], Verdict(True, None, 204), id="204"),
    pytest.param(HttpSpec(), [b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"],
                 Verdict(False, "status 302", 302), id="3xx-not-2xx"),
    pytest.param(HttpSpec(status=(302,)), [b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"],
                 Verdict(True, None, 302), id="3xx-listed"),
    pytest.param(HttpSpec(), [b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"], Verdict(False, "status 500", 500),
                 id="500"),
    pytest.param(HttpSpec(body="healthy$"), [OK_BODY[:30], OK_BODY[30:50], OK_BODY[50:]], Verdict(True, None, 200),
                 id="body-across-chunks"),
    pytest.param(HttpSpec(body="healthy"), [CHUNKED[:52], CHUNKED[52:]], Verdict(True, None, 200), id="chunked"),
    pytest.param(HttpSpec(body="^ok$"), [OK_BODY], Verdict(False, r"body does not match: b'status: healthy\n'", 200),
                 id="body-mismatch"),
    pytest.param(HttpSpec(body="healthy"), [b"HTTP/1.0 200 OK\r\n\r\nstatus: heal", b"thy", b""],
                 Verdict(True, None, 200), id="body-until-close"),
    pytest.param(HttpSpec(), [b""], Verdict(False, "closed without a response"), id="closed-silently"),
    pytest.param(HttpSpec(), [b"SSH-2.0-OpenSSH_9.2\r\n"], Verdict(False, r"bad response: not HTTP: "
                 r"b'SSH-2.0-OpenSSH_9.2\r\n'"), id="not-http"),
    pytest.param(HttpSpec(), [b"HTTP/1.1 2x0 OK\r\n\r\n"], None, id="garbled-status"),
    pytest.param(HttpSpec(), [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b""], Verdict(True, None, 200),
                 id="no-body-regex-decides-at-the-status"),
    pytest.param(HttpSpec(body="abc"), [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b""], None,
                 id="body-cut-short"),
])
def test_response_reader(spec, chunks, verdict):
    got = feed_all(reader_for(spec), chunks)
    if verdict is None:  # a broken answer: h11's words, status kept when it came
        assert got is not None and not got.ok and got.error.startswith("bad response: "), got
    else:
        assert got == verdict


def test_response_reader_head_has_no_body():
    reader = reader_for(HttpSpec(method="HEAD", body="x*"))
    assert reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n") == Verdict(True, None, 200)


def test_response_reader_at_deadline():
    reader = reader_for(HttpSpec(body="healthy"))
    assert reader.at_deadline() == Verdict(False, "no answer (timeout)")
    assert reader.feed(b"HTTP/1.1 200") is None
    assert reader.at_deadline() == Verdict(False, "incomplete response (timeout)")
    assert reader.feed(b" OK\r\nContent-Length: 100\r\n\r\nstat") is None
    assert reader.at_deadline() == Verdict(False, "incomplete body (timeout)", 200)


def test_request_bytes():
    spec = HttpSpec(method="POST", path="/api?x=1", host="svc.example")
    job = http_job(Target(A, "http", 8080, spec), tls.Contexts())
    head = job.request.decode()
    assert head.startswith("POST /api?x=1 HTTP/1.1\r\n")
    for header in ("host: svc.example", "user-agent: vobox-agent", "connection: close", "content-length: 0"):
        assert header in head.lower()
    assert head.endswith("\r\n\r\n") and job.tls is None


@pytest.mark.parametrize("spec, address, port, header", [
    (HttpSpec(), "192.0.2.1", 80, "192.0.2.1"),
    (HttpSpec(), "192.0.2.1", 8080, "192.0.2.1:8080"),
    (HttpSpec(tls=True), "192.0.2.1", 443, "192.0.2.1"),
    (HttpSpec(tls=True), "2001:db8::1", 8443, "[2001:db8::1]:8443"),
    (HttpSpec(host="svc.example"), "192.0.2.1", 8080, "svc.example"),
])
def test_host_header(spec, address, port, header):
    assert host_header(spec, address, port) == header


@pytest.mark.parametrize("host, name", [("svc.example", "svc.example"), ("svc.example:8443", "svc.example"),
                                        ("[2001:db8::1]:8443", "2001:db8::1"), ("2001:db8::1", "2001:db8::1")])
def test_host_name(host, name):
    assert host_name(host) == name


def test_https_server_name_defaults(tmp_path):
    ca = str(certs.make_ca(tmp_path, "ca").path)
    ctxs = tls.Contexts()
    assert http_job(Target(A, "http", 443, HttpSpec(tls=True, ca_file=ca)), ctxs).server_hostname == A
    assert http_job(Target(A, "http", 443, HttpSpec(tls=True, ca_file=ca, host="svc.example:443")),
                    ctxs).server_hostname == "svc.example"
    assert http_job(Target(A, "http", 443, HttpSpec(tls=True, ca_file=ca, host="svc.example", server_name="b.example")),
                    ctxs).server_hostname == "b.example"
    assert http_job(Target(A, "http", 443, HttpSpec(tls=True, verify=False)), ctxs).server_hostname is None


def test_contexts_are_shared_and_a_broken_ca_file_is_a_message(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    ctxs = tls.Contexts()
    assert ctxs.get(None, True) is ctxs.get(None, True)
    message = ctxs.get(str(bad), True)
    assert isinstance(message, str) and message.startswith(f"ca_file {bad}: ")


def der(path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_judge_cert(tmp_path):
    ca = certs.make_ca(tmp_path, "ca")
    now, day = certs.now(), certs.DAY
    now_s = now.timestamp()
    soon = der(certs.make_leaf(tmp_path, "soon", ca, [A], now - day, now + 3 * day)[0])
    expired = der(certs.make_leaf(tmp_path, "expired", ca, [A], now - 30 * day, now - 2 * day)[0])
    future = der(certs.make_leaf(tmp_path, "future", ca, [A], now + day, now + 30 * day)[0])
    error, warning, not_after_s, days = tls.judge_cert(soon, now_s, 14)
    assert (error, warning) == (None, "certificate expires in 3.0 days (< 14)") and abs(days - 3) < 0.01
    assert abs(not_after_s - (now + 3 * day).timestamp()) < 1
    assert tls.judge_cert(soon, now_s, 2)[:2] == (None, None)
    assert tls.judge_cert(soon, now_s, None)[:2] == (None, None)
    assert tls.judge_cert(expired, now_s, 14)[:2] == ("certificate expired 2.0 days ago", None)
    error = tls.judge_cert(future, now_s, 14)[0]
    assert error is not None and error.startswith("certificate not valid before 20")
    assert tls.judge_cert(None, now_s, 14)[0] == "tls: no peer certificate"


def test_server_hostname():
    assert tls.server_hostname("svc.example", A, True) == "svc.example"
    assert tls.server_hostname(None, A, True) == A
    assert tls.server_hostname(None, A, False) is None

