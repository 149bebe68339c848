"""InfluxDB over HTTPS: the lab's real InfluxDB 1.6 with HTTPS and a CA made here; v2 and client certificates
against a local TLS server (no InfluxDB 2.x and no client-certificate-checking 1.6 can run here)."""
from __future__ import annotations

import http.server
import logging
import ssl
import threading

import pytest

from agent import netns
from agent.core import config
from agent.core.config import ConfigError
from agent.storage import SinkError, Storage, V1Writer, V2Writer, query
from agent.storage.influx import make_writer
from agent.storage.points import probe_point
from agent.tls import client as client_tls  # InfluxDB's agent.tls.TLSSettings
from tests.pki import CA

DB = "vobox"


@pytest.fixture
def pki(tmp_path):
    good, bad = CA(tmp_path / "pki", "good"), CA(tmp_path / "pki", "other")
    return good, bad


@pytest.fixture
def https_influx(throwaway_netns, tmp_path, pki):
    """The lab's real influxd serving HTTPS with a certificate from the `good` CA."""
    from lab.influx import InfluxServer

    good, _ = pki
    server = InfluxServer(str(tmp_path / "influx"), netns=throwaway_netns, http_port=8086,
                          tls=good.issue("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def batch(n: int, start: int) -> list:
    return [probe_point(f"b{i % 10}", "vm", "T", "icmp", "192.0.2.1", None, True, 0.1, None, None,
                        1_700_000_000 + (start + i) / 1000) for i in range(n)]


def count(server, ca: str) -> int:
    with netns.entered(server.netns):
        rows = query(server.url, 'SELECT count("ok") FROM "probe"', db=DB, tls=client_tls(ca_file=ca))
    return rows[0]["count"] if rows else 0


def config_text(state_dir, url: str, **influx) -> str:
    lines = [f'{k} = {v!r}'.replace("'", '"') if not isinstance(v, bool) else f"{k} = {str(v).lower()}"
             for k, v in influx.items()]
    return (f'[agent]\nstate_dir = "{state_dir}"\n[influxdb]\nurl = "{url}"\nretry_min = 0.1\nretry_max = 0.2\n'
            + "\n".join(lines) + '\n[[box]]\nname = "b1"\nkind = "vm"\nipv4 = "192.0.2.10"\n')


# --- v1 against the real InfluxDB 1.6 with HTTPS -------------------------------------------------

@pytest.mark.parametrize("as_dir", [pytest.param(False, id="ca-file"), pytest.param(True, id="ca-directory")])
def test_v1_https_with_the_right_ca_writes(https_influx, pki, tmp_path, as_dir):
    good, _ = pki
    ca = good.hashed_dir() if as_dir else good.pem
    cfg = config.loads(config_text(tmp_path / "state", https_influx.url, ca_file=ca))
    with netns.entered(https_influx.netns):
        st = Storage.from_config(cfg)
        st.write(batch(200, 0))
        assert st.flush()
        st.close()
    assert count(https_influx, good.pem) == 200
    assert st.counters().written == 200


def test_v1_https_wrong_ca_one_error_spooled_then_delivered_after_fix(https_influx, pki, tmp_path, caplog):
    good, other = pki
    state = tmp_path / "state"
    wrong = config.loads(config_text(state, https_influx.url, ca_file=other.pem))
    with netns.entered(https_influx.netns), caplog.at_level(logging.DEBUG, logger="agent.storage"):
        st = Storage.from_config(wrong)
        for k in range(5):
            st.write(batch(100, k * 100))
            assert not st.flush()
        c = st.counters()
        st.close(timeout_s=5)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "certificate verify failed" in errors[0] and "influxdb.ca_file" in errors[0] and other.pem in errors[0]
    assert c.spool_points == 500 and c.written == 0 and c.dropped == 0 and c.write_errors >= 1
    fixed = config.loads(config_text(state, https_influx.url, ca_file=good.pem))
    with netns.entered(https_influx.netns):
        st = Storage.from_config(fixed)              # the agent restarted with the fixed config
        assert st.counters().spool_points == 500
        assert st.flush()
        st.close()
    assert count(https_influx, good.pem) == 500


def test_v1_https_without_ca_fails_against_system_cas(https_influx, pki):
    with netns.entered(https_influx.netns), pytest.raises(SinkError) as exc:
        V1Writer(https_influx.url, DB, timeout_s=2).send(b"m f=1i 1\n")
    assert exc.value.kind == "tls" and "the system CAs" in str(exc.value)


def test_insecure_skip_verify_writes_and_warns_at_every_start(https_influx, tmp_path, caplog):
    cfg = config.loads(config_text(tmp_path / "state", https_influx.url, insecure_skip_verify=True))
    with netns.entered(https_influx.netns), caplog.at_level(logging.WARNING):
        for _ in range(2):                                   # two starts, two warnings
            st = Storage.from_config(cfg)
            st.write(batch(10, 0))
            assert st.flush()
            st.close()
    warns = [r for r in caplog.records if "insecure_skip_verify" in r.getMessage()]
    assert len(warns) == 2 and all(r.levelno == logging.WARNING for r in warns)
    assert "NOT verified" in warns[0].getMessage()


# --- client certificates and v2 (a local TLS server: no such InfluxDB can run here) -------------

class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        peer = self.connection.getpeercert()
        self.server.requests.append((self.path, body, peer))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server(pki):
    """HTTPS on 127.0.0.1 with a `good` server certificate, requiring a client certificate from `good`."""
    good, _ = pki
    cert, key = good.issue("local-server")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=good.pem)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.requests = []
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    srv.url = f"https://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_client_certificate_is_shown_and_required(tls_server, pki, api):
    good, other = pki
    cert, key = good.issue("agent-client", client=True)

    def writer(tls):
        if api == "v1":
            return V1Writer(tls_server.url, DB, timeout_s=2, tls=tls)
        return V2Writer(tls_server.url, "tok", "org", "bucket", timeout_s=2, tls=tls)

    w = writer(client_tls(ca_file=good.pem, client_cert=cert, client_key=key))
    w.send(b"m f=1i 1\n")
    w.close()
    path, body, peer = tls_server.requests[-1]
    assert body.strip() == b"m f=1i 1"
    assert ("commonName", "agent-client") in [item for rdn in peer["subject"] for item in rdn]
    assert path.startswith("/write" if api == "v1" else "/api/v2/write")
    n = len(tls_server.requests)
    for tls in (client_tls(ca_file=good.pem),                                   # no client certificate
                client_tls(ca_file=other.pem, client_cert=cert, client_key=key)):  # wrong CA
        w = writer(tls)
        with pytest.raises(SinkError) as exc:
            w.send(b"m f=1i 2\n")
        w.close()
        assert exc.value.retryable
        if tls.ca_file == other.pem:
            assert exc.value.kind == "tls" and "certificate verify failed" in str(exc.value)
    assert len(tls_server.requests) == n


def test_v2_make_writer_from_config_over_https(tls_server, pki, tmp_path):
    good, _ = pki
    cert, key = good.issue("agent-v2", client=True)
    token = tmp_path / "token"
    token.write_text("tok\n")
    text = config_text(tmp_path / "s", tls_server.url, ca_file=good.pem, client_cert=cert, client_key=key)
    text = text.replace("[influxdb]\n", f'[influxdb]\napi = "v2"\norg = "o"\nbucket = "b"\ntoken_file = "{token}"\n')
    st = Storage.from_config(config.loads(text))
    st.write(batch(3, 0))
    assert st.flush()
    st.close()
    assert sum(body.count(b"\n") for path, body, _ in tls_server.requests if "/api/v2/write" in path) == 3


# --- password_file and config errors -----------------------------------------------------------

def test_password_file_is_read_by_the_writer_not_kept_in_config(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-from-file\n")
    cfg = config.loads(config_text(tmp_path / "s", "http://127.0.0.1:8086", username="agent", password_file=str(pw)))
    assert cfg.influxdb.password is None and "s3cret-from-file" not in repr(cfg)
    w = make_writer(cfg.influxdb)
    assert (w.username, w.password) == ("agent", "s3cret-from-file")
    w.close()


@pytest.mark.parametrize("keys,expected", [
    pytest.param({"ca_file": "/nonexistent/ca.pem"}, "influxdb.ca_file: no such file or directory", id="ca-missing"),
    pytest.param({"ca_file": "GARBAGE"}, "influxdb.ca_file: .* holds no usable PEM", id="ca-garbage"),
    pytest.param({"client_key": "KEY"}, "influxdb.client_key: needs influxdb.client_cert", id="key-without-cert"),
    pytest.param({"client_cert": "/nonexistent/c.pem"}, "influxdb.client_cert: no such file", id="cert-missing"),
    pytest.param({"client_cert": "CLIENT_CERT_ONLY"}, "influxdb.client_cert: cannot load", id="cert-without-key"),
    pytest.param({"ca_file": "CA", "insecure_skip_verify": True}, "influxdb.insecure_skip_verify: give ca_file or",
                 id="ca-and-insecure"),
    pytest.param({"username": "u", "password": "p", "password_file": "PW"},
                 "influxdb.password_file: give password or password_file", id="password-twice"),
    pytest.param({"username": "u", "password_file": "/nonexistent/pw"}, "influxdb.password_file: cannot read",
                 id="password-file-missing"),
    pytest.param({"insecure_skip_verify": "yes"}, "influxdb.insecure_skip_verify: expected true or false",
                 id="insecure-not-bool"),
])
def test_config_errors_name_the_key(tmp_path, pki, keys, expected):
    good, _ = pki
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    pw = tmp_path / "pw"
    pw.write_text("x")
    cert, _ = good.issue("c-only", client=True)
    subst = {"GARBAGE": str(garbage), "KEY": str(tmp_path / "k"), "CLIENT_CERT_ONLY": cert, "CA": good.pem,
             "PW": str(pw)}
    keys = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in keys.items()}
    with pytest.raises(ConfigError) as exc:   # the files are checked as `load` does (file_errors)
        config.loads(config_text(tmp_path / "s", "https://127.0.0.1:8086", **keys), check_files=True)
    assert any(__import__("re").match(expected, e) for e in exc.value.errors), exc.value.errors


def test_tls_keys_need_an_https_url(tmp_path, pki):
    good, _ = pki
    with pytest.raises(ConfigError) as exc:
        config.loads(config_text(tmp_path / "s", "http://127.0.0.1:8086", ca_file=good.pem))
    assert exc.value.errors == ('influxdb.ca_file: only used with an https:// url (url is "http://127.0.0.1:8086")',)
