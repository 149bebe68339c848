"""probes.types: a service target's port and spec, narrowed for the probe that takes it (pure, no sockets)."""
from __future__ import annotations

import pytest

from probes import HttpSpec, Target, TcpSpec, TlsSpec, http, tcp, tls
from probes.types import service_port, spec_as


def test_service_port_and_spec_pass_through_what_validate_accepts():
    t = Target("192.0.2.10", "http", 8080, HttpSpec(path="/health"))
    assert service_port(t) == 8080
    assert spec_as(t, HttpSpec) == HttpSpec(path="/health")
    assert spec_as(Target("192.0.2.10", "tcp", 22), TcpSpec) is None


@pytest.mark.parametrize("target, spec_class, message", [
    pytest.param(Target("192.0.2.10", "tcp", 80, HttpSpec()), TcpSpec,
                 "tcp target 192.0.2.10: spec HttpSpec is not a TcpSpec", id="tcp-with-http-spec"),
    pytest.param(Target("2001:db8::1", "tls", 443, TcpSpec()), TlsSpec,
                 "tls target 2001:db8::1: spec TcpSpec is not a TlsSpec", id="tls-with-tcp-spec"),
])
def test_spec_of_another_kind_is_a_type_error_naming_both(target, spec_class, message):
    with pytest.raises(TypeError) as info:
        spec_as(target, spec_class)
    assert str(info.value) == message


def test_a_service_target_without_port_is_a_type_error():
    with pytest.raises(TypeError, match=r"^tcp target 192\.0\.2\.10 has no port$"):
        service_port(Target("192.0.2.10", "tcp"))


def test_each_service_probe_builds_its_job_from_the_narrowed_port_and_spec():
    job = tcp.job_for(Target("192.0.2.10", "tcp", 1093))
    assert (job.address, job.port, job.request, job.reader) == ("192.0.2.10", 1093, b"", None)
    job = tcp.job_for(Target("192.0.2.10", "tcp", 1093, TcpSpec(send="PING\r\n", expect="PONG")))
    assert job.port == 1093 and job.request == b"PING\r\n" and job.reader is not None
    job = http.job_for(Target("192.0.2.10", "http", 8080, HttpSpec(path="/health")), tls.Contexts())
    assert not isinstance(job, str) and job.port == 8080 and job.request.startswith(b"GET /health HTTP/1.1\r\n")
    job = tls.job_for(Target("192.0.2.10", "tls", 8443), tls.Contexts())
    assert not isinstance(job, str) and job.port == 8443 and job.tls is not None
    with pytest.raises(TypeError, match="spec TlsSpec is not a TcpSpec"):
        tcp.job_for(Target("192.0.2.10", "tcp", 1093, TlsSpec()))
