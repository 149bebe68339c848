"""A collector that loses its target (the container restarted while it collected) says so, apart from errors.

A real container box of the lab is restarted between the collector's `docker inspect` and its
`nsenter -t PID -n` (as restart_container running during evidence collection does): the old PID
is gone, nsenter fails with "cannot open /proc/PID/ns/net", and the bundle's summary says
"target gone: container ... restarted during collection" instead of a failure.
"""
from __future__ import annotations

import json
import os
import time

import docker
import pytest

from agent.forensics import collectors
from agent.forensics.collectors import CollectorError, Context, TargetGone, run_command
from agent.forensics.render import render_text
from tests.agent.forensics.test_forensics_lab import box_ref

pytestmark = pytest.mark.lab


def _context(lab, name, tmp_path, run) -> Context:
    client = docker.from_env()
    return Context(box=box_ref(lab.box(name)), path=str(tmp_path), start_s=time.time(), now_s=time.time(),
                   ip=lambda *a: [], run=run, docker=lambda: client, interface=None)


def test_container_restarted_during_collection_is_target_gone(clean_lab, tmp_path):
    lab = clean_lab
    b = lab.box("ctr2")
    client = docker.from_env()
    restarted = []

    def run(argv, timeout_s):
        if argv[0] == "nsenter" and not restarted:   # the restart lands between inspect and nsenter
            client.api.restart(b.container, timeout=1)
            restarted.append(True)
        return run_command(argv, timeout_s)

    ctx = _context(lab, "ctr2", tmp_path, run)
    old_pid = collectors._container_pid(ctx)
    try:
        with pytest.raises(TargetGone) as exc:
            collectors.collect_container_net(ctx)
    finally:
        lab.wait_box(b.name)
    msg = str(exc.value)
    print(msg)
    new_pid = client.api.inspect_container(b.container)["State"]["Pid"]
    assert msg.startswith(f"container {b.container} restarted during collection (pid {old_pid} gone, now {new_pid})")
    assert f"/proc/{old_pid}/ns/net" in msg   # nsenter's own words are kept


def test_a_real_failure_with_the_target_alive_stays_an_error(clean_lab, tmp_path):
    def run(argv, timeout_s):   # nsenter into the live container, but ip given a bad argument
        return run_command([*argv[:-3], "link", "show", "dev", "no-such-dev"] if argv[0] == "nsenter" else argv,
                           timeout_s)

    ctx = _context(clean_lab, "ctr1", tmp_path, run)
    with pytest.raises(CollectorError) as exc:
        collectors.collect_container_net(ctx)
    assert not isinstance(exc.value, TargetGone), exc.value


def test_bundle_summary_lists_target_gone_apart_from_errors(clean_lab, tmp_path):
    """Through the evidence collector: the status is kept apart and rendered under its own heading."""
    from agent.forensics.evidence import EvidenceCollector
    from remediations import default_docker_factory

    lab = clean_lab
    b = lab.box("ctr2")
    client = docker.from_env()
    restarted = []

    def run(argv, timeout_s):
        if argv[0] == "nsenter" and not restarted:
            client.api.restart(b.container, timeout=1)
            restarted.append(True)
        return run_command(argv, timeout_s)

    def broken(ctx):
        raise CollectorError("a real error")

    ec = EvidenceCollector(str(tmp_path), None, docker_client=default_docker_factory(), monitor_netns=lab.monitor_ns,
                           run=run, collectors={"docker_inspect": collectors.collect_docker_inspect,
                                                "container_net": collectors.collect_container_net,
                                                "monitor_link": broken})

    class Job:
        box = box_ref(b)
        path = str(tmp_path / "bundle")
        start_s = time.time()

    os.makedirs(Job.path)
    try:
        status, _ = ec._collect(Job, light=False)
    finally:
        lab.wait_box(b.name)
    print(json.dumps(status, indent=1))
    assert status["docker_inspect"]["ok"]
    assert status["container_net"]["target_gone"] and status["container_net"]["error"].startswith("target gone: ")
    assert status["monitor_link"] == {"ok": False, "error": "failed: a real error"}
    text = render_text({"box": b.name, "collectors": status})
    errors_part, gone_part = text.split("target gone during collection (not errors):")
    assert "monitor_link: failed: a real error" in errors_part and "container_net" not in errors_part
    assert "container_net: target gone: container" in gone_part and "restarted during collection" in gone_part
