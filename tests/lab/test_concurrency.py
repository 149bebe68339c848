"""Labs made at the same time (other test sessions run alongside) get distinct subnets and names, and all work."""
from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.lab_fixtures import lab_traces

pytestmark = pytest.mark.lab


def test_concurrent_labs_do_not_clash(lab):
    from lab import Lab

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(Lab.create, containers=1, vms=1, influx=False) for _ in range(3)]
        labs = [f.result() for f in futures]
    try:
        every = labs + [lab]
        assert len({x.run_id for x in every}) == 4
        nets4 = [ipaddress.ip_network(x.ipv4_subnet) for x in every]
        nets6 = [ipaddress.ip_network(x.ipv6_subnet) for x in every]
        for i, a in enumerate(nets4):
            assert not any(a.overlaps(b) for b in nets4[i + 1:])
        assert len(set(nets6)) == 4
        for x in labs:
            assert x.box_answers("ctr1") and x.box_answers("vm1"), x.run_id
            # a lab's monitor sees only its own segment
            assert not x.tcp_ok(lab.box("ctr1").ipv4, 1093, 0.3)
    finally:
        for x in labs:
            x.down()
    for x in labs:
        assert lab_traces(x.run_id) == []
