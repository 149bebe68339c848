"""[remediation] webhook TLS keys: what goes together (parse), the files (check-config/run), the agent's wiring."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.core import config
from agent.core.config import ConfigError
from tests.pki import CA

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def text(tmp_path, **rem) -> str:
    keys = {"enabled": True, "webhook_listen": "127.0.0.1:9787", **rem}
    lines = "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}\n"
                    for k, v in keys.items() if v is not None)
    return (f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[remediation]\n{lines}'
            '[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')


@pytest.fixture
def files(tmp_path):
    ca = CA(tmp_path / "pki", "site")
    cert, key = ca.issue("webhook")
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    return {"ca": ca, "cert": cert, "key": key, "token": str(token)}


@pytest.mark.parametrize("keys, error", [
    pytest.param({"webhook_key_file": "/k"}, "remediation.webhook_key_file: needs remediation.webhook_cert_file",
                 id="key-without-cert"),
    pytest.param({"webhook_client_ca_file": "/ca"}, "remediation.webhook_client_ca_file: needs "
                 "remediation.webhook_cert_file", id="ca-without-tls"),
    pytest.param({"webhook_verify_client": "required"}, 'remediation.webhook_verify_client: "required" needs '
                 "remediation.webhook_cert_file (client certificates need TLS)", id="client-certs-without-tls"),
    pytest.param({"webhook_cert_file": "/c", "webhook_verify_client": "optional"},
                 'remediation.webhook_client_ca_file: missing (webhook_verify_client is "optional")',
                 id="verify-without-ca"),
    pytest.param({"webhook_cert_file": "/c", "webhook_client_ca_file": "/ca"},
                 'remediation.webhook_client_ca_file: unused while webhook_verify_client = "none"',
                 id="ca-without-verify"),
    pytest.param({"webhook_verify_client": "require"}, 'remediation.webhook_verify_client: expected one of '
                 '"none", "optional", "required", got "require"', id="verify-value"),
    pytest.param({"webhook_auth_failures_max": 0}, "remediation.webhook_auth_failures_max: expected an integer >= 1",
                 id="failures-max"),
    pytest.param({"webhook_auth_failures_window": 0}, "remediation.webhook_auth_failures_window: expected a number > 0",
                 id="failures-window"),
])
def test_keys_that_go_together(tmp_path, keys, error):
    with pytest.raises(ConfigError) as exc:
        config.loads(text(tmp_path, webhook_token_file="/t", **keys))
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_required_client_certificates_need_no_token_file(tmp_path, files):
    cfg = config.loads(text(tmp_path, webhook_cert_file=files["cert"], webhook_key_file=files["key"],
                            webhook_client_ca_file=files["ca"].hashed_dir(), webhook_verify_client="required"))
    assert cfg.remediation.webhook_token_file is None and config.file_errors(cfg) == []
    assert (cfg.remediation.webhook_auth_failures_max, cfg.remediation.webhook_auth_failures_window_s) == (5, 60.0)


def _write(tmp_path, files, **rem) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(text(tmp_path, webhook_token_file=files["token"], **rem))
    return str(path)


@pytest.mark.parametrize("case, error", [
    pytest.param("cert-missing", "remediation.webhook_cert_file: no such file: ", id="cert-missing"),
    pytest.param("key-of-another-cert", "remediation.webhook_cert_file: cannot load the certificate and key",
                 id="key-mismatch"),
    pytest.param("ca-not-pem", "remediation.webhook_client_ca_file: ", id="ca-not-pem"),
    pytest.param("ca-dir-unhashed", "has no hashed CA names (<hash>.0); run `openssl rehash ", id="ca-dir-unhashed"),
])
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_unusable_files_are_one_clear_line_and_exit_2(tmp_path, files, case, error, command):
    keys = {"webhook_cert_file": files["cert"], "webhook_key_file": files["key"],
            "webhook_client_ca_file": files["ca"].pem, "webhook_verify_client": "optional"}
    if case == "cert-missing":
        keys["webhook_cert_file"] = str(tmp_path / "nope.pem")
    elif case == "key-of-another-cert":
        keys["webhook_key_file"] = files["ca"].issue("other")[1]
    elif case == "ca-not-pem":
        (tmp_path / "ca.pem").write_text("junk\n")
        keys["webhook_client_ca_file"] = str(tmp_path / "ca.pem")
    else:
        keys["webhook_client_ca_file"] = files["ca"].plain_dir()
    proc = subprocess.run([sys.executable, "-m", "agent", command, "-c", _write(tmp_path, files, **keys)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert error in proc.stderr and "Traceback" not in proc.stderr


def test_check_config_accepts_the_files(tmp_path, files):
    path = _write(tmp_path, files, webhook_cert_file=files["cert"], webhook_key_file=files["key"],
                  webhook_client_ca_file=files["ca"].pem, webhook_verify_client="optional")
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", path], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
