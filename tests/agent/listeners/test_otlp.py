"""OTLP push: a real pipeline's /metrics registry pushed to a local OTLP/HTTP receiver that decodes the
protobuf with opentelemetry-proto; the figures must be the exposition's, the names and units as documented.
"""
from __future__ import annotations

import gzip
import logging
import math
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from agent import wiring
from agent.core.config import ConfigError, load, loads
from agent.listeners.metrics import MetricsListener
from agent.listeners.otlp import UNITS, OtlpPusher, unit_of
from tests.agent.listeners.test_metrics import box_labels, make, run, samples
from tests.agent.storage.test_tls import CA
from tests.agent.test_pipeline import config_text

TOKEN = "s3cret-otlp-token-4711"


class Receiver:
    """An OTLP/HTTP metrics receiver on 127.0.0.1: POST /v1/metrics, protobuf (gzip or not), kept decoded."""

    def __init__(self, port: int = 0, cert: tuple[str, str] | None = None) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []   # names lower-cased (HTTP names are case-insensitive)
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(404)
                    return
                req = ExportMetricsServiceRequest()
                req.ParseFromString(body)
                with outer.arrived:   # kept before the answer: the sender counts it as delivered on the answer
                    outer.requests.append(req)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    outer.arrived.notify_all()
                reply = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if cert is not None:   # https with this (certificate, key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}/v1/metrics"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def wait(self, n: int, timeout_s: float = 20.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout_s), len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def decoded(req: ExportMetricsServiceRequest) -> dict[str, object]:
    """metric name -> its proto Metric, from one request."""
    (rm,) = req.resource_metrics
    (sm,) = rm.scope_metrics
    return {m.name: m for m in sm.metrics}


def attrs(point) -> tuple:
    return tuple(sorted((kv.key, kv.value.string_value) for kv in point.attributes))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_a_real_pipelines_figures_arrive_with_the_exposition_names_units_attributes_and_values(tmp_path, receiver,
                                                                                                caplog):
    pipeline, script, metrics, _ = make(tmp_path)
    run(pipeline, script, [(), ("a",), ("a",), (), ()])       # a freezes (fail_cycles 2) and recovers
    run(pipeline, script, [("b",), ("b",)])                    # b is frozen now
    metrics.on_remediation("b", "restart_container", "alert", "done", True, True)
    headers = tmp_path / "otlp-headers"
    headers.write_text(f"# collector auth\nAuthorization: Bearer {TOKEN}\nX-Scope-OrgID: vobox\n")
    cfg = loads(config_text(str(tmp_path / "state")) + f'[otlp]\nendpoint = "{receiver.url}"\ninterval = 0.3\n'
                f'timeout = 0.2\nheaders_file = "{headers}"\n')
    caplog.set_level(logging.DEBUG)
    pusher = wiring.build_otlp(cfg, metrics.registry)
    pusher.start()
    try:
        receiver.wait(2)                                       # the thread pushes every interval
        run(pipeline, script, [(), ()])                        # b recovers: its freeze closes into the histogram
        n = len(receiver.requests)
        receiver.wait(n + 1)
    finally:
        pusher.stop()                                          # one final push
    assert pusher.failures == 0 and pusher.exports == len(receiver.requests)
    assert receiver.headers[0]["authorization"] == f"Bearer {TOKEN}"
    assert receiver.headers[0]["x-scope-orgid"] == "vobox"
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert TOKEN not in caplog.text

    req = receiver.requests[-1]
    res = {kv.key: kv.value.string_value for kv in req.resource_metrics[0].resource.attributes}
    assert res["service.name"] == "vobox-agent" and res["host.name"] == socket.gethostname()
    assert res["service.instance.id"] == socket.gethostname()
    assert req.resource_metrics[0].scope_metrics[0].scope.name == "vobox-agent"
    got = decoded(req)
    expo = samples(metrics)
    names = {name for name, _ in expo}
    # every exposition metric is there under its exposition name (histograms as one metric)
    for name in got:
        assert name in names or name + "_count" in names, name
    assert len(got) >= 20
    for name, m in got.items():
        assert m.unit == unit_of(name) and m.description, name
    assert got["vobox_freeze_duration_seconds"].unit == "s"
    assert got["vobox_probe_rtt_seconds"].unit == "s"
    assert got["vobox_freezes_total"].unit == "{freeze}"
    assert got["vobox_box_up"].unit == "{box}"

    # gauges and counters: the same value for the same labels as /metrics shows
    checked = 0
    for name, m in got.items():
        kind = m.WhichOneof("data")
        if kind == "gauge":
            points = m.gauge.data_points
        elif kind == "sum":
            assert m.sum.is_monotonic and m.sum.aggregation_temporality == 2, name   # CUMULATIVE
            points = m.sum.data_points
        else:
            continue
        for p in points:
            assert same(p.as_double, expo[(name, attrs(p))]), (name, attrs(p))
            checked += 1
    assert checked > 50
    up = {attrs(p): p.as_double for p in got["vobox_box_up"].gauge.data_points}
    assert up == {box_labels("a"): 1.0, box_labels("b"): 1.0, box_labels("c"): 1.0}
    freezes = {attrs(p): p.as_double for p in got["vobox_freezes_total"].sum.data_points}
    assert freezes[box_labels("a", layer="l2")] == 1 and freezes[box_labels("b", layer="l2")] == 1
    rem = {attrs(p): p.as_double for p in got["vobox_remediations_total"].sum.data_points}
    assert rem == {box_labels("b", action="restart_container", trigger="alert", result="recovered"): 1.0}
    assert {attrs(p): p.as_double for p in got["vobox_agent_cycles_total"].sum.data_points} == {(("vobox_site", "test"),): 9}

    # the freeze duration histogram: bucket counts per bound, sum and count as /metrics has them
    hist = {attrs(p): p for p in got["vobox_freeze_duration_seconds"].histogram.data_points}
    assert got["vobox_freeze_duration_seconds"].histogram.aggregation_temporality == 2
    a = hist[box_labels("a")]
    assert (a.count, a.sum) == (1, pytest.approx(20.0))
    assert a.count == expo[("vobox_freeze_duration_seconds_count", box_labels("a"))]
    assert list(a.explicit_bounds) == [5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600]
    assert list(a.bucket_counts) == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]   # 20 s: in (10, 30]
    assert not a.HasField("min") and not a.HasField("max")                  # Prometheus has none
    assert hist[box_labels("b")].count == 1                                 # closed after the first pushes
    assert 0 < a.start_time_unix_nano <= a.time_unix_nano
    # the earlier pushes did not have b's closed freeze yet: the figures are read at each push
    first = {attrs(p): p.count for p in decoded(receiver.requests[0])["vobox_freeze_duration_seconds"]
             .histogram.data_points}
    assert first[box_labels("b")] == 0


def test_every_metric_of_the_listener_has_a_unit():
    for fam in MetricsListener({"a": "container"}, "s").registry.collect():
        name = fam.name + ("_total" if fam.type == "counter" else "")
        assert unit_of(name)
    assert all(u in ("1", "%") or (u.startswith("{") and u.endswith("}")) for u in UNITS.values())
    with pytest.raises(KeyError):
        unit_of("vobox_new_thing")


def fast_retries(pusher: OtlpPusher) -> OtlpPusher:
    """The exporter's own retry backoff (1 s, 2 s... x random 0.8-1.2, within the push timeout) cut to 1 ms, 2 ms...:
    a push still retries and logs each attempt as it does in the agent, without waiting seconds between them."""
    pusher.exporter._client._compute_backoff = lambda retry: 0.001 * 2 ** retry  # type: ignore[attr-defined]
    return pusher


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_receiver_that_is_down_or_hangs_costs_no_cycle_and_is_logged_once(tmp_path, caplog):
    pipeline, script, metrics, _ = make(tmp_path)
    port = free_local_port()
    caplog.set_level(logging.INFO)
    pusher = fast_retries(OtlpPusher(metrics.registry, f"http://127.0.0.1:{port}/v1/metrics", interval_s=0.1,
                                     timeout_s=1.5, headers={"Authorization": f"Bearer {TOKEN}"}))
    pusher.start()
    try:
        deadline = time.monotonic() + 20
        while pusher.failures < 3 and time.monotonic() < deadline:
            run(pipeline, script, [("a",), ()])
        assert pusher.failures >= 3 and pusher.exports == 0
        assert samples(metrics)[("vobox_agent_cycles_total", (("vobox_site", "test"),))] >= 2   # the cycles went on
        warnings = [r for r in caplog.records if r.name == "agent.listeners.otlp" and r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "Connection refused" in warnings[0].getMessage()   # the exporter's first line of that push
        assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]   # its per-attempt lines
        # the receiver comes up on that port: the next push works, and that is logged once too
        receiver = Receiver(port)
        try:
            receiver.wait(1)
            # the receiver keeps a request before it answers: the push counts (and logs) it on the answer
            deadline = time.monotonic() + 20
            while pusher.exports < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            receiver.close()
        assert any("works again" in r.getMessage() for r in caplog.records)
    finally:
        pusher.stop()
    assert TOKEN not in caplog.text


def test_a_hanging_receiver_blocks_the_push_thread_not_the_cycle(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)                                            # accepts connections, never answers
    pusher = OtlpPusher(metrics.registry, f"http://127.0.0.1:{hang.getsockname()[1]}/v1/metrics",
                        interval_s=0.05, timeout_s=1.0)
    pusher.start()
    try:
        time.sleep(0.2)                                        # a push is under way, waiting for its answer
        started = time.monotonic()
        run(pipeline, script, [(), ("a",), ("a",)])
        assert time.monotonic() - started < 0.7                # far less than the push's 1 s timeout
        assert pusher.exports == pusher.failures == 0          # and that push still waits: the cycles did not
        assert samples(metrics)[("vobox_box_state", box_labels("a", state="frozen"))] == 1
    finally:
        hang.close()
        pusher.stop()


@pytest.mark.parametrize("text, error", [
    pytest.param('[otlp]\nendpoint = "collector:4318"\n', "otlp.endpoint", id="not-a-url"),
    pytest.param('[otlp]\nendpoint = "http://c:4318"\ntoken = "x"\n', "otlp.token: unknown key", id="no-token-key"),
    pytest.param('[otlp]\nendpoint = "http://c:4318"\ninterval = 10\ntimeout = 10\n', "otlp.timeout",
                 id="timeout-not-below-interval"),
    pytest.param('[otlp]\nendpoint = "http://c:4318"\nca_file = "/etc/ssl/certs/ca-certificates.crt"\n',
                 "otlp.ca_file: only used with an https", id="ca-without-https"),
])
def test_config_keys_are_strict(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error):
        loads(config_text(str(tmp_path / "state")) + text)


def test_endpoint_defaults_and_the_signal_path(tmp_path):
    base = config_text(str(tmp_path / "state"))
    assert loads(base).otlp.endpoint is None
    cfg = loads(base + '[otlp]\nendpoint = "https://monit.example:4318"\n')
    assert cfg.otlp.endpoint == "https://monit.example:4318/v1/metrics"
    assert (cfg.otlp.interval_s, cfg.otlp.timeout_s) == (60.0, 10.0)
    cfg = loads(base + '[otlp]\nendpoint = "http://c:4318/otlp/v1/metrics"\n')
    assert cfg.otlp.endpoint == "http://c:4318/otlp/v1/metrics"


def test_a_bad_headers_file_is_named_and_its_content_never_shown(tmp_path):
    bad = tmp_path / "headers"
    bad.write_text(f"Bearer {TOKEN}\n")                          # no "Name:"
    path = tmp_path / "agent.toml"
    path.write_text(config_text(str(tmp_path / "state")).replace("[remediation]\nenabled = true\n", "")
                    + f'[otlp]\nendpoint = "http://127.0.0.1:4318"\nheaders_file = "{bad}"\n')
    with pytest.raises(ConfigError) as err:
        load(path)
    assert "otlp.headers_file" in str(err.value) and "line 1" in str(err.value) and TOKEN not in str(err.value)
    bad.unlink()
    with pytest.raises(ConfigError, match="otlp.headers_file: cannot read"):
        load(path)
    with pytest.raises(wiring.SetupError, match="otlp.headers_file"):
        wiring.build_otlp(load(path, check_files=False), None)


def test_the_agent_assembly_pushes_without_a_metrics_listener(tmp_path, receiver):
    """[otlp] alone (no [metrics] listen): the metrics listener is built, its registry pushed, no HTTP server."""
    from agent.listeners.metrics import MetricsServer

    cfg = loads(config_text(str(tmp_path / "state")).replace("[remediation]\nenabled = true\n", "")
                + f'[otlp]\nendpoint = "{receiver.url}"\n')
    assembly = wiring.assemble(cfg, make_docker=lambda: pytest.fail("no Docker here"))
    try:
        (pusher,) = [s for s in assembly.services if isinstance(s, OtlpPusher)]
        assert not [s for s in assembly.services if isinstance(s, MetricsServer)]
        assert any(isinstance(listener, MetricsListener) for listener in assembly.pipeline.listeners)
        assert pusher.push() and "vobox_agent_boxes" in decoded(receiver.requests[-1])
    finally:
        assembly.close()


def test_https_with_the_configured_ca_and_a_collector_of_another_ca_refused(tmp_path, caplog):
    good, other = CA(tmp_path / "pki", "good"), CA(tmp_path / "pki", "other")
    receiver = Receiver(cert=good.issue("collector"))
    _, _, metrics, _ = make(tmp_path)
    try:
        cfg = loads(config_text(str(tmp_path / "state")) + f'[otlp]\nendpoint = "{receiver.url}"\n'
                    f'ca_file = "{good.pem}"\n')
        pusher = wiring.build_otlp(cfg, metrics.registry)
        assert pusher.push() and len(receiver.requests) == 1
        pusher.exporter.shutdown()
        wrong = fast_retries(OtlpPusher(metrics.registry, receiver.url, interval_s=60, timeout_s=1.5,
                                        ca_file=other.pem))
        caplog.set_level(logging.WARNING)
        assert not wrong.push() and not wrong.push() and len(receiver.requests) == 1
        wrong.exporter.shutdown()
        (warning,) = [r for r in caplog.records if r.name == "agent.listeners.otlp"]
        assert "CERTIFICATE_VERIFY_FAILED" in warning.getMessage()
    finally:
        receiver.close()
