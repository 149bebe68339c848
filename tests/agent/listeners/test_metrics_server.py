"""issue 31 item 2: /metrics complete and conventional, scraped from a running server (TLS, bearer and basic auth),
checked by Debian's `promtool check metrics`; the new gauges from the pipeline's events and the bus."""
from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.checks import x509 as x509_check
from agent.checks.types import Check, CheckResult
from agent.core.config import ConfigError, loads
from agent.core.events import BoxObserved, CycleEvents
from agent.listeners.metrics import MetricsListener, MetricsServer, ScrapeAuth, add_runtime_collectors
from agent.tls import server as tls_server
from probes import ProbeResult
from remediations.engine import BoxStatus
from remediations.model import RemediationStatus
from tests.agent.listeners.test_metrics import make, run
from tests.agent.test_pipeline import config_text
from tests.pki import CA

TOKEN = "metrics-scrape-token-1"


def _get(url: str, *, ctx: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], str]:
    handlers: list = [urllib.request.ProxyHandler({})]
    if ctx is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _promtool_check(text: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing (apt-get install prometheus; scripts/setup does)")
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_a_real_scrape_over_tls_with_a_bearer_token_passes_promtool_check_metrics(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    add_runtime_collectors(metrics.registry)
    run(pipeline, script, [(), ("a",), ("a",), (), ()])   # a freeze of box a, opened and closed
    ca = CA(tmp_path / "pki", "metrics")
    cert, key = ca.issue("metrics-server", days=30)
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n")
    server = MetricsServer(metrics.registry, "127.0.0.1", 0, tls=tls_server(cert, key),
                           auth=ScrapeAuth(token_file=str(token_file)),
                           on_certificate=lambda f: metrics.set_server_certificate("metrics", f))
    server.start()
    ctx = ssl.create_default_context(cafile=ca.pem)
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        status, headers, _ = _get(url, ctx=ctx)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert _get(url, ctx=ctx, headers={"Authorization": "Bearer wrong"})[0] == 401
        status, _, body = _get(url, ctx=ctx, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        # plain HTTP to the TLS-only listener gets no exposition
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            _get(f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        server.stop()
    proc = _promtool_check(body)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fams = _families(body)
    (info,) = fams["vobox_build_info"]
    assert info.value == 1 and set(info.labels) == {"version", "python", "vobox_site"} and info.labels["python"]
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_start_time_seconds",
                 "python_info", "python_gc_objects_collected"):
        assert name in fams, name
    from cryptography import x509

    with open(cert, "rb") as fh:
        not_after = x509.load_pem_x509_certificate(fh.read()).not_valid_after_utc.timestamp()
    (own,) = fams["vobox_agent_certificate_expiry_timestamp_seconds"]
    assert own.labels == {"server": "metrics", "vobox_site": "test"} and own.value == pytest.approx(not_after, abs=1)
    ratio = {s.labels["box"]: s.value for s in fams["vobox_box_state_change_ratio"]}
    pct = {s.labels["box"]: s.value for s in fams["vobox_box_percent_state_change"]}
    assert set(ratio) == {"a", "b", "c"} and ratio == {b: pytest.approx(v / 100) for b, v in pct.items()}
    assert {s.labels["box"]: s.value for s in fams["vobox_box_remediation_halted"]} == {"a": 0, "b": 0, "c": 0}


def test_basic_auth_and_a_rotated_password_file_on_sighup(tmp_path, caplog):
    metrics = MetricsListener({"a": "vm"}, "lab")
    password = tmp_path / "pw"
    password.write_text("first-password\n")
    server = MetricsServer(metrics.registry, "127.0.0.1", 0,
                           auth=ScrapeAuth(username="prometheus", password_file=str(password)))
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"

    def basic(pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"prometheus:{pw}".encode()).decode()}

    try:
        status, headers, _ = _get(url)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
        assert _get(url, headers=basic("first-password"))[0] == 200
        assert _get(url, headers={"Authorization": "Bearer first-password"})[0] == 401
        password.write_text("second-password\n")
        assert server.reload()
        assert _get(url, headers=basic("first-password"))[0] == 401
        assert _get(url, headers=basic("second-password"))[0] == 200
        password.unlink()
        assert not server.reload()                                   # kept: the previous password still applies
        assert _get(url, headers=basic("second-password"))[0] == 200
    finally:
        server.stop()
    assert "first-password" not in caplog.text and "second-password" not in caplog.text


def test_an_unusable_credential_file_stops_the_agent_at_start_with_one_line(tmp_path):
    from agent import wiring

    token = tmp_path / "t"
    token.write_text("")
    cfg = loads(config_text(str(tmp_path / "state")) + f'[metrics]\nlisten = "127.0.0.1:9"\ntoken_file = "{token}"\n')
    with pytest.raises(wiring.SetupError, match=r"^metrics.listen: cannot serve /metrics: .* is empty$"):
        wiring.build_metrics(cfg, None, {})


def _observed(box: str, results: tuple) -> CycleEvents:
    ev = BoxObserved(box, 1_800_000_000.0, True, "none", "up", 1, (), None, "none", results)
    return CycleEvents((ev,))


def test_certificate_and_proxy_expiry_come_from_the_results_that_carry_a_not_after():
    m = MetricsListener({"ctr": "container"}, "lab")
    t = 1_800_000_000.0
    results = (ProbeResult("192.0.2.10", "tls", 8443, True, 1.0, None, None, t, cert_not_after_s=t + 9 * 86400),
               ProbeResult("2001:db8::10", "tls", 8443, True, 1.0, None, None, t, cert_not_after_s=t + 8 * 86400),
               ProbeResult("192.0.2.10", "tcp", 1093, True, 1.0, None, None, t),
               CheckResult("/etc/grid-security/hostcert.pem", "check:x509", None, True, 1.0, None, None, t,
                           cert_not_after_s=t + 300 * 86400),
               CheckResult("/tmp/x509up_u0", "check:x509", None, True, 1.0, None, None, t,
                           cert_not_after_s=t + 3600, proxy=True))
    m.on_events(_observed("ctr", results).events)
    got = m.registry.get_sample_value
    base = {"box": "ctr", "kind": "container", "vobox_site": "lab"}
    cert = "vobox_certificate_expiry_timestamp_seconds"
    assert got(cert, {**base, "probe": "tls", "target": "8443"}) == t + 8 * 86400   # the earliest of the addresses
    assert got(cert, {**base, "probe": "check:x509", "target": "/etc/grid-security/hostcert.pem"}) == t + 300 * 86400
    assert got(cert, {**base, "probe": "check:x509", "target": "/tmp/x509up_u0"}) is None   # a proxy: its own gauge
    assert got("vobox_proxy_expiry_timestamp_seconds", {**base, "path": "/tmp/x509up_u0"}) == t + 3600
    # a cycle whose tls probe got no certificate (down) keeps the last known notAfter
    m.on_events(_observed("ctr", (ProbeResult("192.0.2.10", "tls", 8443, False, None, "timeout", None, t),)).events)
    assert got(cert, {**base, "probe": "tls", "target": "8443"}) == t + 8 * 86400


def test_the_state_change_ratio_is_the_percent_over_100():
    m = MetricsListener({"a": "vm"}, "lab")
    ev = BoxObserved("a", 1.0, True, "none", "up", 1, (), None, "none", (), percent_state_change=37.5)
    m.on_events((ev,))
    labels = {"box": "a", "kind": "vm", "vobox_site": "lab"}
    assert m.registry.get_sample_value("vobox_box_state_change_ratio", labels) == 0.375
    assert m.registry.get_sample_value("vobox_box_percent_state_change", labels) == 37.5   # kept for one release


def test_halted_follows_the_remediation_status_on_the_bus():
    from agent.bus import Bus

    m = MetricsListener({"a": "container", "b": "vm"}, "lab")
    bus = Bus()
    bus.add(m)

    def st(box: str, capped: str | None) -> BoxStatus:
        return BoxStatus(box, True, "l2", 0, None, None, 3, capped)

    bus.publish(RemediationStatus(time.time(), {"a": st("a", "max_per_box_per_hour (3) reached"), "b": st("b", None),
                                                "gone": st("gone", "x")}))
    got = m.registry.get_sample_value
    assert got("vobox_box_remediation_halted", {"box": "a", "kind": "container", "vobox_site": "lab"}) == 1
    assert got("vobox_box_remediation_halted", {"box": "b", "kind": "vm", "vobox_site": "lab"}) == 0
    assert got("vobox_box_remediation_halted", {"box": "gone", "kind": "container", "vobox_site": "lab"}) is None
    bus.publish(RemediationStatus(time.time(), {"a": st("a", None)}))
    assert got("vobox_box_remediation_halted", {"box": "a", "kind": "container", "vobox_site": "lab"}) == 0


@pytest.mark.parametrize("site_label, names", [
    pytest.param("vobox_site", {"box", "kind", "vobox_site"}, id="default"),
    pytest.param("site", {"box", "kind", "site"}, id="old-name"),
    pytest.param("", {"box", "kind"}, id="none: the site on the targets"),
])
def test_the_site_label_is_named_by_the_config_or_left_out(site_label, names):
    m = MetricsListener({"a": "vm"}, "lab", site_label=site_label, interval_s=10)
    fams = _families(__import__("prometheus_client").generate_latest(m.registry).decode())
    assert {frozenset(s.labels) for s in fams["vobox_box_up"]} == {frozenset(names)}
    agent = {frozenset(s.labels) for s in fams["vobox_agent_boxes"]}
    assert agent == {frozenset(names - {"box", "kind"})}
    proc = _promtool_check(__import__("prometheus_client").generate_latest(m.registry).decode())
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("keys, error", [
    pytest.param('site_label = "instance"', 'metrics.site_label: "instance" is a label of the metrics themselves or '
                                            "of every Prometheus target", id="target-label"),
    pytest.param('site_label = "box"', 'metrics.site_label: "box" is a label', id="own-label"),
    pytest.param('site_label = "__site"', "metrics.site_label: expected a Prometheus label name", id="reserved"),
    pytest.param('site_label = "site-name"', "metrics.site_label: expected a Prometheus label name", id="dash"),
    pytest.param('key_file = "/k"', "metrics.key_file: needs metrics.cert_file", id="key-without-cert"),
    pytest.param('basic_auth_username = "p"', "metrics.basic_auth_password_file: missing", id="user-without-pw"),
    pytest.param('token_file = "/t"\nbasic_auth_username = "p"\nbasic_auth_password_file = "/p"',
                 "metrics.token_file: give token_file or basic_auth_", id="both-credentials"),
])
def test_metrics_config_keys_say_what_is_wrong(tmp_path, keys, error):
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        loads(config_text(str(tmp_path / "s")) + f'[metrics]\nlisten = "127.0.0.1:9788"\n{keys}\n')


def test_the_x509_check_tells_a_proxy_from_a_certificate(tmp_path):
    """RFC 3820 proxies (the lab's, as voms-proxy-init writes them) are proxies; a host certificate is not."""
    from lab.credentials import proxy_pem

    check = Check("x509", path="/tmp/x509up_u0")
    now = time.time()
    proxy = x509_check.judge(check, 0, proxy_pem(2.0), now)
    assert proxy.ok and proxy.proxy and proxy.not_after_s == pytest.approx(now + 2 * 86400, abs=120)
    cert, _ = CA(tmp_path, "host").issue("vobox.example.org", days=30)
    with open(cert, "rb") as fh:
        host = x509_check.judge(check, 0, fh.read(), now)
    assert host.ok and not host.proxy
    assert os.path.exists(cert)
