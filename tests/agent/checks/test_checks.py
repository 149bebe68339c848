"""In-container checks: what each kind makes of its output, the killable runner, and the config that asks for them."""
from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.checks import CHECKS, Check, disk, path, x509 as x509_check
from agent.checks.runner import BoxChecks, CheckRunner, run_killable
from agent.core import config
from agent.core.cycle import classify
from agent.storage import points as P
from probes import ProbeResult

NOW_S = 1_800_000_000.0


def _pem(days: float) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "box")])
    now = dt.datetime.fromtimestamp(NOW_S, dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("days, ok, warned", [
    pytest.param(30, True, False, id="fine"),
    pytest.param(3, True, True, id="warning-below-warn-days"),
    pytest.param(-1, False, False, id="expired-fails"),
])
def test_x509_days_left(days, ok, warned):
    got = x509_check.judge(Check("x509", "/tmp/x509up_u0", warn_days=7), 0, _pem(days), NOW_S)
    assert got.ok is ok and (got.warning is not None) is warned
    assert got.days_left == pytest.approx(days, abs=1e-6)


def test_x509_unreadable_or_garbage_fails():
    chk = Check("x509", "/tmp/x")
    assert not x509_check.judge(chk, 1, b"", NOW_S).ok
    bad = x509_check.judge(chk, 0, b"not a certificate", NOW_S)
    assert not bad.ok and "no PEM certificate" in bad.error


def test_disk_percent_as_df_and_warning():
    # avail 100, total 1000, free 150 -> used 850, used/(used+avail) = 89.47 %
    got = disk.judge(Check("disk", "/", warn_percent=80), 0, b"100 1000 150\n", NOW_S)
    assert got.ok and got.percent == pytest.approx(89.47, abs=0.01) and "89.5 % full" in got.warning
    assert disk.judge(Check("disk", "/", warn_percent=95), 0, b"100 1000 150\n", NOW_S).warning is None
    assert not disk.judge(Check("disk", "/"), 0, b"garbage", NOW_S).ok


def test_path_and_exec_are_exit_codes():
    assert path.judge(Check("path", "/cvmfs"), 0, b"", NOW_S).ok
    assert not path.judge(Check("path", "/cvmfs"), 1, b"", NOW_S).ok
    assert not CHECKS["exec"].judge(Check("exec", argv=("false",)), 1, b"", NOW_S).ok


def test_run_killable_kills_the_process_group_at_the_timeout():
    t0 = time.monotonic()
    code, out, took_s, left = run_killable(["sh", "-c", "sleep 30 & sleep 30; echo never"], 0.3)
    assert code is None and out == b"" and left is None
    assert 0.3 <= took_s < 1.5 and time.monotonic() - t0 < 1.5


class _Pids:
    def __init__(self, pid):
        self.value = pid

    def pid(self, container):
        from agent.checks.runner import CheckSetupError
        if isinstance(self.value, str):
            raise CheckSetupError(self.value)
        return self.value


def test_runner_results_are_l7_failures_and_a_hang_costs_one_timeout():
    # Without nsenter (the argv runs in our own mount namespace): the runner's own logic, real processes.
    checks = (Check("exec", argv=("true",)), Check("exec", argv=("false",)), Check("exec", argv=("sleep", "30")))
    runner = CheckRunner([BoxChecks("b", "ctr", checks)], _Pids(1), 0.3, clock=lambda: NOW_S,
                         wrap=lambda pid, argv: list(argv))
    t0 = time.monotonic()
    res = runner.run(["b", "unknown"])["b"]
    assert time.monotonic() - t0 < 1.5
    assert [(r.probe, r.ok, r.layer) for r in res] == [("check:exec", True, None), ("check:exec", False, "l7"),
                                                        ("check:exec", False, "l7")]
    assert res[2].error.startswith("hung") and classify(res) == (False, "l7")
    runner.close()


def test_runner_container_not_running_fails_every_check():
    runner = CheckRunner([BoxChecks("b", "ctr", (Check("path", "/x"),))], _Pids("container ctr is not running"), 0.3)
    (r,) = runner.run(["b"])["b"]
    assert not r.ok and r.layer == "l7" and "not running" in r.error
    runner.close()


def test_classify_takes_each_results_layer():
    fail = ProbeResult("192.0.2.5", "tcp", 8084, False, None, "no answer", None, NOW_S, "l7")
    assert classify([fail]) == (False, "l7")
    assert classify([dataclasses.replace(fail, layer=None)]) == (False, "l4")   # the kind's LAYER


BOX = '''
[[box]]
name = "a"
kind = "container"
container = "c"
network = "n"
ipv4 = "192.0.2.5"
ipv6 = "2001:db8::5"
'''


def test_config_maps_probes_to_targets_on_every_address_and_checks_to_check():
    cfg = config.loads(BOX + '''
[[box.probe]]
kind = "tcp"
port = 1093
send = "hello"
expect = "^ok"
[[box.probe]]
kind = "tls"
port = 8443
warn_days = 14
verify = false
[[box.check]]
kind = "disk"
path = "/"
warn_percent = 90
[[box.check]]
kind = "exec"
argv = ["/usr/bin/true"]
timeout = 2
''')
    from agent.core.cycle import box_targets
    svc = [t for t in box_targets(cfg.boxes[0]) if t.port]
    assert [(t.address, t.probe, t.port) for t in svc] == [("192.0.2.5", "tcp", 1093), ("2001:db8::5", "tcp", 1093),
                                                            ("192.0.2.5", "tls", 8443), ("2001:db8::5", "tls", 8443)]
    assert svc[0].spec.send == "hello" and svc[2].spec.warn_days == 14
    assert cfg.boxes[0].checks == (Check("disk", "/", warn_percent=90), Check("exec", argv=("/usr/bin/true",),
                                                                             timeout_s=2.0))


@pytest.mark.parametrize("table, error", [
    pytest.param('[[box.probe]]\nkind = "http"\nport = 80\nsend = "x"',
                 '[[box]] "a" (#1, line 2).probe[0].send: only for kind = "tcp" (this probe is "http")',
                 id="key-of-another-kind"),
    pytest.param('[[box.probe]]\nkind = "http"\nport = 80\nmethod = "FETCH"',
                 "[[box]] \"a\" (#1, line 2).probe[0]: method must be",
                 id="spec-check"),
    pytest.param('[[box.probe]]\nkind = "udp"\nport = 80',
                 '[[box]] "a" (#1, line 2).probe[0].kind: expected one of "tcp", "http"',
                 id="unknown-kind"),
    pytest.param('[[box.probe]]\nkind = "tls"\nport = 8443\nwarn_dayz = 3',
                 "[[box]] \"a\" (#1, line 2).probe[0].warn_dayz: unknown key (did you mean 'warn_days'?", id="typo"),
    pytest.param('[[box.check]]\nkind = "x509"', '[[box]] "a" (#1, line 2).check[0].path: missing (required for kind = "x509")',
                 id="check-missing-path"),
    pytest.param('[[box.check]]\nkind = "path"\npath = "/x"\nwarn_days = 3',
                 '[[box]] "a" (#1, line 2).check[0].warn_days: only for kind = "x509" (this check is "path")', id="check-key"),
    pytest.param('[[box.check]]\nkind = "path"\npath = "relative"',
                 "[[box]] \"a\" (#1, line 2).check[0].path: expected an absolute path",
                 id="check-relative-path"),
    pytest.param('[[box.check]]\nkind = "path"\npath = "/x"\ntimeout = 20',
                 "[[box]] \"a\" (#1, line 2).check[0].timeout: must be less than agent.interval", id="check-timeout"),
])
def test_config_errors_name_the_key_path(table, error):
    with pytest.raises(config.ConfigError) as exc:
        config.loads(BOX + table)
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_checks_only_for_containers():
    with pytest.raises(config.ConfigError) as exc:
        config.loads('[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.9"\n[[box.check]]\nkind = "path"\npath = "/"')
    assert exc.value.errors[0].startswith('[[box]] "v" (#1, line 1).check: only for kind = "container"')


def test_runtime_errors_name_the_probe_key_path():
    cfg = config.loads(BOX)
    bad = dataclasses.replace(cfg.boxes[0], probes=(config.ServiceProbe("tcp", 0),))
    errors = config.runtime_errors(dataclasses.replace(cfg, boxes=(bad,)))
    assert errors and all(e.startswith("[[box]] \"a\" (#1, line 2).probe[0]: ") for e in errors), errors
    assert not any("tcp_ports" in e for e in errors)


def test_points_carry_layer_status_and_days_and_warnings_are_their_own_points():
    line = P.probe_point("a", "container", "s", "http", "192.0.2.5", 8084, False, None, "status 500", None, NOW_S,
                         layer="l7", status_code=500).to_line()
    assert 'layer="l7"' in line and "status_code=500i" in line
    line = P.probe_point("a", "container", "s", "tls", "192.0.2.5", 8443, True, 1.0, None, None, NOW_S,
                         cert_days_left=3.5).to_line()
    assert "cert_days_left=3.5" in line and "layer" not in line
    w = P.warning_point("a", "container", "s", "check:x509", "/tmp/x509up_u0", "expires in 3.0 days", NOW_S,
                        days_left=3.0).to_line()
    assert w.startswith("warning,box=a,check=check:x509,kind=container,site=s,target=/tmp/x509up_u0 ")
    assert 'message="expires in 3.0 days"' in w and "days_left=3.0" in w
