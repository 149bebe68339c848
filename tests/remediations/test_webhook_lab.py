"""The alert webhook over real HTTP (inside the lab's monitor namespace), acting on real lab containers."""
from __future__ import annotations

import http.client
import json
import threading
import time

import docker
import pytest

from remediations import (
    ActionContext,
    RemediationPolicy,
    RemediationService,
    RemediationTarget,
    Remediator,
    RequestResult,
    WebhookReceiver,
    default_docker_factory,
    read_token,
)
from remediations.webhook import BadRequest, parse_alerts
from tests.cases import case
from tests.remediations.conftest import box_healthy, wait_for

pytestmark = pytest.mark.lab

TOKEN = "s3cret-token-for-tests"


def grafana(box, action=None, status="firing"):
    labels = {"alertname": "VOBoxFrozen", "box": box}
    if action:
        labels["action"] = action
    return {"receiver": "vobox", "status": status, "orgId": 1, "alerts": [{
        "status": status, "labels": labels, "annotations": {"summary": f"{box} frozen"},
        "startsAt": "2026-11-27T23:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
        "fingerprint": "c6eadffa33fcdf37", "silenceURL": "", "dashboardURL": "", "panelURL": "",
        "values": {"B": 0, "C": 1}}], "groupLabels": {"alertname": "VOBoxFrozen"},
        "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://grafana:3000/", "version": "1",
        "groupKey": "{}:{alertname=\"VOBoxFrozen\"}", "truncatedAlerts": 0, "title": "[FIRING:1] VOBoxFrozen",
        "state": "alerting", "message": "frozen"}


def alertmanager(box, action=None, status="firing"):
    labels = {"alertname": "VOBoxFrozen", "box": box, "severity": "critical"}
    if action:
        labels["action"] = action
    return {"receiver": "vobox", "status": status, "alerts": [{
        "status": status, "labels": labels, "annotations": {"description": f"{box} frozen"},
        "startsAt": "2026-11-27T23:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph", "fingerprint": "1a30ba71cca2921f"}],
        "groupLabels": {"alertname": "VOBoxFrozen"}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": "{}/{}:{alertname=\"VOBoxFrozen\"}", "truncatedAlerts": 0}


class Client:
    """HTTP client whose sockets live in the lab's monitor namespace (where the receiver listens)."""

    def __init__(self, lab, port):
        self.lab, self.port = lab, port

    def request(self, method, path, body=None, headers=None, raw=None):
        from agent.netns import entered
        with entered(self.lab.monitor_ns):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.connect()
        try:
            if raw is not None:
                conn.sock.sendall(raw)
                resp = http.client.HTTPResponse(conn.sock, method=method)
                resp.begin()
            else:
                data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
                conn.request(method, path, body=data, headers=headers or {})
                resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def post(self, body, token=TOKEN, **kw):
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        return self.request("POST", "/webhook", body, headers, **kw)


@pytest.fixture
def receiver(rlab):
    """A receiver in the monitor namespace whose submit() records calls and accepts everything."""
    calls = []

    def submit(box, action):
        calls.append((box, action))
        return RequestResult(box, action or "restart_container", True, "queued")

    from agent.netns import entered
    with entered(rlab.monitor_ns):
        rx = WebhookReceiver("127.0.0.1", 0, TOKEN, ["ctr1", "ctr2", "vm1"], submit, max_bytes=4096)
    rx.start()
    yield Client(rlab, rx.address[1]), calls
    rx.stop()


@pytest.mark.parametrize("token, status", [
    pytest.param(None, 401, id="no-token"),
    pytest.param("wrong", 401, id="wrong-token"),
    pytest.param(TOKEN + "x", 401, id="token-with-suffix"),
])
def test_refused_without_the_right_token(receiver, token, status):
    client, calls = receiver
    code, body = client.post(grafana("ctr1"), token=token)
    assert (code, calls) == (status, [])
    assert "bearer token" in body["error"]


def test_oversized_body_is_refused(receiver):
    client, calls = receiver
    code, body = client.post(b"{" + b" " * 5000 + b"}")
    assert code == 413 and "over the limit of 4096 bytes" in body["error"] and calls == []


def test_oversized_content_length_is_refused_before_reading(receiver):
    client, calls = receiver
    # Only headers are sent: a server that tried to read 1 GB first would hang until the client timeout.
    raw = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
           b"\r\nContent-Length: 1000000000\r\n\r\n")
    t0 = time.monotonic()
    code, body = client.request("POST", "/webhook", raw=raw)
    assert code == 413 and time.monotonic() - t0 < 2 and calls == []


def test_oversized_chunked_body_is_refused(receiver):
    client, calls = receiver
    chunk = b"x" * 3000
    raw = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
           b"\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    code, body = client.request("POST", "/webhook", raw=raw)
    assert code == 413 and calls == []


def test_small_chunked_body_is_accepted(receiver):
    client, calls = receiver
    payload = json.dumps(alertmanager("ctr2")).encode()
    raw = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
           b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")
    code, _ = client.request("POST", "/webhook", raw=raw)
    assert code == 202 and calls == [("ctr2", None)]


@pytest.mark.parametrize("body, message", [
    pytest.param(b"{not json", "malformed JSON", id="malformed-json"),
    pytest.param({"foo": 1}, "no `alerts` list", id="not-an-alert-payload"),
    pytest.param({"alerts": ["x"]}, "alerts[0]: expected an object", id="alert-not-an-object"),
])
def test_bad_payloads_are_400_with_a_clear_message(receiver, body, message):
    client, calls = receiver
    code, reply = client.post(body)
    assert code == 400 and message in reply["error"] and calls == []


def _datasource_error():

    return json.loads(case("webhook-grafana-datasource-error.json").read_text())


@pytest.mark.parametrize("body, reason", [
    pytest.param(_datasource_error(), "has no label `box`: not about a box", id="grafana-datasource-error"),
    pytest.param({"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "NoData"}}]},
                 "'NoData' has no label `box`", id="grafana-nodata"),
    pytest.param({"alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1"}}]},
                 "not about a box", id="another-rule-on-the-same-contact-point"),
    pytest.param(grafana("nosuchbox"), "unknown box 'nosuchbox'; configured: ctr1, ctr2, vm1", id="unknown-box"),
    pytest.param(grafana("ctr1", status="resolved"), "status 'resolved': only firing alerts act", id="resolved"),
])
def test_notifications_not_about_a_box_are_acknowledged_and_ignored(receiver, body, reason, caplog):
    client, calls = receiver
    with caplog.at_level("INFO", logger="remediations.webhook"):
        code, reply = client.post(body)
    assert code == 202 and calls == [] and reply["queued"] == [] and reply["refused"] == []
    assert len(reply["ignored"]) == 1 and reason in reply["ignored"][0]["reason"]
    assert reason in caplog.text


def test_unknown_action_is_passed_on_to_be_refused_and_recorded(receiver):
    client, calls = receiver
    code, _ = client.post(alertmanager("ctr1", action="reboot"))
    assert code == 202 and calls == [("ctr1", "reboot")]


def test_healthz(receiver):
    client, _ = receiver
    assert client.request("GET", "/healthz") == (200, {"status": "ok"})


def test_parse_alerts_table():
    boxes = {"a", "b"}
    pairs, ignored = parse_alerts({"status": "firing", "alerts": [
        {"status": "firing", "labels": {"box": "a"}}, {"status": "firing", "labels": {"box": "a"}},
        {"status": "resolved", "labels": {"box": "b"}},
        {"status": "firing", "labels": {"box": "b", "action": "command"}}]}, boxes)
    assert pairs == [("a", None), ("b", "command")] and len(ignored) == 1
    with pytest.raises(BadRequest, match="alerts\\[0\\]"):
        parse_alerts({"alerts": ["x"]}, boxes)


def test_an_alert_labelled_remediate_false_never_acts():
    """VoboxBoxDegraded (prometheus/vobox-rules.yml) carries remediate="false": even routed here it only informs."""
    pairs, ignored = parse_alerts({"status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "VoboxBoxDegraded", "box": "a", "remediate": "false"}}]},
        {"a"})
    assert pairs == [] and "remediate" in ignored[0]["reason"]


def test_read_token(tmp_path):
    (tmp_path / "t").write_text(" abc \n")
    assert read_token(str(tmp_path / "t")) == "abc"
    (tmp_path / "e").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_token(str(tmp_path / "e"))


def test_grafana_and_alertmanager_payloads_each_act_once(rlab):
    lab = rlab
    cli = docker.from_env()
    targets = [RemediationTarget(box=b.name, kind=b.kind, ipv4=b.ipv4, ipv6=b.ipv6, container=b.container,
                                 network=b.network, ladder=("restart_container",))
               for b in lab.boxes if b.container]
    started = {b.name: cli.containers.get(b.container).attrs["State"]["StartedAt"] for b in lab.boxes if b.container}
    policy = RemediationPolicy(cooldown_s=60, verify_s=1.0, stop_timeout_s=1)
    records = []
    svc = RemediationService(Remediator(policy, targets, reprobe=lambda box: box_healthy(lab, box)),
                             ActionContext(default_docker_factory(), policy), records.append, tick_s=0.1)
    svc.start()
    from agent.netns import entered
    with entered(lab.monitor_ns):
        rx = WebhookReceiver("127.0.0.1", 0, TOKEN, [t.box for t in targets],
                             lambda box, action: svc.request(box, action, "alert"))
    rx.start()
    client = Client(lab, rx.address[1])
    try:
        code, body = client.post(grafana("ctr1", action="restart_container"))
        assert code == 202 and body["refused"][0]["reason"].startswith("box 'ctr1' is not frozen")
        for b in ("ctr1", "ctr2"):   # what the remediation listener hands over when the agent judged them frozen
            svc.freeze_opened(b, "l4", time.time())
        code, body = client.post(grafana("ctr1", action="restart_container"))
        assert (code, body["queued"]) == (202, [{"box": "ctr1", "action": "restart_container", "outcome": "queued"}])
        code, body = client.post(alertmanager("ctr2"))
        assert (code, body["queued"]) == (202, [{"box": "ctr2", "action": "restart_container", "outcome": "queued"}])
        code, body = client.post(alertmanager("ctr2", action="reboot"))
        assert code == 202 and body["refused"][0]["reason"].startswith("unknown action 'reboot'")
        assert wait_for(lambda: len([r for r in records if r.outcome == "done"]) == 2, 30)
        # The same alerts again (Grafana/Alertmanager repeat): cooldown refuses, nothing runs twice.
        code, body = client.post(grafana("ctr1", action="restart_container"))
        assert code == 202 and body["queued"] == [] and body["refused"][0]["reason"].startswith("cooldown")
        code, body = client.post(alertmanager("ctr2"))
        assert code == 202 and body["queued"] == [] and "cooldown" in body["refused"][0]["reason"]
        time.sleep(1.5)
    finally:
        rx.stop()
        svc.stop()
    # Every alert-triggered request is accounted for: acted on, or refused with its reason, as a record.
    assert sorted((r.box, r.action, r.trigger, r.outcome, r.ok, r.recovered) for r in records) == [
        ("ctr1", "restart_container", "alert", "done", True, True),
        ("ctr1", "restart_container", "alert", "refused", False, False),
        ("ctr1", "restart_container", "alert", "refused", False, False),
        ("ctr2", "reboot", "alert", "refused", False, False),
        ("ctr2", "restart_container", "alert", "done", True, True),
        ("ctr2", "restart_container", "alert", "refused", False, False)]
    reasons = sorted(r.reason.split(":")[0] for r in records if r.outcome == "refused")
    assert reasons == ["box 'ctr1' is not frozen (healthy, or not yet judged frozen by the agent)", "cooldown",
                       "cooldown", "unknown action 'reboot'; valid"]
    for name, before in started.items():
        assert cli.containers.get(lab.box(name).container).attrs["State"]["StartedAt"] != before


def test_stop_without_start_returns():
    rx = WebhookReceiver("127.0.0.1", 0, TOKEN, ["ctr1"], lambda b, a: None)
    t = threading.Thread(target=rx.stop, daemon=True)
    t.start()
    t.join(3)
    assert not t.is_alive()
