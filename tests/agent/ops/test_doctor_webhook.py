"""doctor, topic webhook: the TLS certificate and key (readable, matching, days left) and the client CAs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.core import config
from agent.ops import doctor
from tests.pki import CA

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def rem(tmp_path, listen="127.0.0.1:9787", **keys):
    """The [remediation] section of a config with these webhook keys (files not checked: doctor sees them)."""
    lines = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    text = (f'[agent]\nstate_dir = "{tmp_path}/state"\n[remediation]\nenabled = true\nwebhook_listen = "{listen}"\n'
            f'webhook_token_file = "/t"\n{lines}[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    return config.loads(text).remediation


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "pki", "site")


def one(results, name):
    [r] = [r for r in results if r.name == name]
    return r


def test_good_certificate_and_ca_file_pass(tmp_path, ca):
    cert, key = ca.issue("vobox.example.org", days=200)
    results = doctor.check_webhook(rem(tmp_path, webhook_cert_file=cert, webhook_key_file=key,
                                       webhook_client_ca_file=ca.pem, webhook_verify_client="required"))
    c, a = one(results, "webhook certificate"), one(results, "webhook client CAs")
    assert c.label == "PASS" and "CN=vobox.example.org" in c.detail and "key matches" in c.detail
    assert "199 days left" in c.detail or "200 days left" in c.detail
    assert a.label == "PASS" and "1 CA certificate(s), clients required" in a.detail


@pytest.mark.parametrize("case, label, detail, fix", [
    pytest.param("expiring", "WARN", "10 days left", "systemctl reload vobox-agent", id="expiring"),
    pytest.param("expired", "FAIL", "expired 3 days ago", "systemctl reload vobox-agent", id="expired"),
    pytest.param("mismatch", "FAIL", "does not match the certificate", "the key the certificate was issued for",
                 id="key-of-another-certificate"),
    pytest.param("unreadable", "FAIL", "cannot read", "readable by the agent's user", id="key-missing"),
    pytest.param("not-pem", "FAIL", "not a PEM certificate", "webhook_cert_file", id="cert-not-pem"),
])
def test_certificate_problems_each_have_their_fix(tmp_path, ca, case, label, detail, fix):
    cert, key = ca.issue("vobox", days={"expiring": 10.5, "expired": -3.2}.get(case, 100))
    if case == "mismatch":
        key = ca.issue("someone-else")[1]
    elif case == "unreadable":
        key = str(tmp_path / "missing.key")
    elif case == "not-pem":
        (tmp_path / "c.pem").write_text("hello\n")
        cert = str(tmp_path / "c.pem")
    r = one(doctor.check_webhook(rem(tmp_path, webhook_cert_file=cert, webhook_key_file=key)), "webhook certificate")
    assert (r.label, detail in r.detail, fix in (r.fix or "")) == (label, True, True), r


def test_ca_directory_hashed_or_not(tmp_path, ca):
    cert, key = ca.issue("vobox")
    keys = {"webhook_cert_file": cert, "webhook_key_file": key, "webhook_verify_client": "optional"}
    plain = ca.plain_dir()
    r = one(doctor.check_webhook(rem(tmp_path, webhook_client_ca_file=plain, **keys)), "webhook client CAs")
    assert r.label == "FAIL" and "no hashed CA names" in r.detail and f"openssl rehash {plain}" in r.fix
    subprocess.run(["openssl", "rehash", plain], check=True, capture_output=True)
    r = one(doctor.check_webhook(rem(tmp_path, webhook_client_ca_file=plain, **keys)), "webhook client CAs")
    assert r.label == "PASS" and "1 hashed CA certificates, clients optional" in r.detail


@pytest.mark.parametrize("listen, label", [pytest.param("127.0.0.1:9787", "PASS", id="loopback"),
                                           pytest.param("192.0.2.5:9787", "WARN", id="on-the-network")])
def test_plain_http_is_a_warning_off_loopback(tmp_path, listen, label):
    [r] = doctor.check_webhook(rem(tmp_path, listen=listen))
    assert r.label == label and (label == "PASS" or "crosses the network in clear" in r.detail)


def test_doctor_command_shows_the_webhook_lines(tmp_path, ca):
    """The whole command: `vobox-agent doctor` prints the webhook topic (before Docker, which may stop the run)."""
    cert, key = ca.issue("vobox", days=12)
    token = tmp_path / "token"
    token.write_text("x\n")
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n[influxdb]\nurl = "http://127.0.0.1:9"\n'
                    f'[remediation]\nenabled = true\nwebhook_listen = "127.0.0.1:9787"\n'
                    f'webhook_token_file = "{token}"\nwebhook_cert_file = "{cert}"\nwebhook_key_file = "{key}"\n'
                    f'webhook_verify_client = "required"\nwebhook_client_ca_file = "{ca.hashed_dir()}"\n'
                    '[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    out = subprocess.run([sys.executable, "-m", "agent", "doctor", "-c", str(path)], capture_output=True, text=True,
                         cwd=REPO, timeout=120).stdout
    assert "WARN  webhook certificate: CN=vobox, key matches, 11 days left" in out or \
        "WARN  webhook certificate: CN=vobox, key matches, 12 days left" in out, out
    assert "PASS  webhook client CAs: directory" in out, out


def test_doctor_names_a_missing_webhook_certificate_once(tmp_path):
    """The webhook's TLS files are said by the webhook topic, not a second time by "config files"."""
    token = tmp_path / "token"
    token.write_text("x\n")
    missing = tmp_path / "gone-cert.pem"
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n[influxdb]\nurl = "http://127.0.0.1:9"\n'
                    f'[remediation]\nenabled = true\nwebhook_listen = "127.0.0.1:9787"\n'
                    f'webhook_token_file = "{token}"\nwebhook_cert_file = "{missing}"\n'
                    f'webhook_key_file = "{missing}"\n'
                    '[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    out = subprocess.run([sys.executable, "-m", "agent", "doctor", "-c", str(path)], capture_output=True, text=True,
                         cwd=REPO, timeout=120).stdout
    lines = [line for line in out.splitlines() if str(missing) in line]
    assert len(lines) == 1 and lines[0].startswith("FAIL  webhook certificate"), out
