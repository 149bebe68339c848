#!/usr/bin/env python3
"""Benchmark the isolation audit (agent.audit, agent.auditor) on the real Docker engine: what one audit costs.

    inspect + audit of N created containers (not started: inspect only)       per box, all
    inspect + /proc/PID/status + audit of M running containers                per box, all
    the engine's defaults (info, a clean container's /proc CapBnd)            once per round
    agent CPU (this process: user+sys) and dockerd CPU per round, and both as a share of one core at the
    [audit] interval (default 1 h), extrapolated to 500 and 5000 boxes

Containers are the lab image's (lab.image), named vbl-<run>-ctr<N> (N from 1000) with --network none; all are
removed at the end (and leftovers of the run by lab.cleanup). Needs root and a Docker engine.

    sudo .venv/bin/python bench/bench_audit.py [--created 500] [--running 50] [--reps 3] [--interval 3600]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's product and lab


def dockerd_cpu_s() -> float:
    """dockerd's user+sys CPU seconds (/proc/PID/stat utime+stime), 0 when it is not found."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() != "dockerd":
                    continue
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return 0.0


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--created", type=int, default=500)
    ap.add_argument("--running", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--interval", type=float, default=3600.0, help="[audit] interval, seconds")
    args = ap.parse_args(argv)

    from agent import auditor
    from agent.wiring import docker_factory
    from lab import privileges
    from lab.cleanup import remove_run
    from lab.image import ensure_image

    client = docker_factory(timeout_s=120)()
    image = ensure_image()
    run_id = privileges.claim_run()   # other labs' leftover cleanup leaves the run alone
    created: list[str] = []
    running: list[str] = []
    try:
        t0 = time.monotonic()
        for i in range(args.created + args.running):
            name = f"vbl-{run_id}-ctr{1000 + i}"
            hc = client.api.create_host_config(network_mode="none", cap_add=["NET_ADMIN"] if i % 7 == 0 else None)
            client.api.create_container(image, command=["1093"], name=name, host_config=hc,
                                        labels={"vobox-lab": run_id})
            (created if i < args.created else running).append(name)
        for name in running:
            client.api.start(name)
        print(f"setup: {len(created)} created, {len(running)} running in {time.monotonic() - t0:.1f} s "
              f"(engine {client.version().get('Version')})")

        def round_of(names_: list[str]) -> tuple[float, float, float, float]:
            """(wall s, agent CPU s, dockerd CPU s, defaults wall s) of one audit of NAMES."""
            c0, d0, w0 = cpu_s(), dockerd_cpu_s(), time.monotonic()
            defaults = auditor.engine_defaults(client)
            w_def = time.monotonic() - w0
            audits = [auditor.audit_container(client, n, n, defaults, time.time()) for n in names_]
            assert all(a.error is None for a in audits), [a.error for a in audits if a.error][:3]
            return time.monotonic() - w0, cpu_s() - c0, dockerd_cpu_s() - d0, w_def

        rows = {}
        for label, names_ in (("created", created), ("running", running)):
            reps = [round_of(names_) for _ in range(args.reps)]
            wall = statistics.median(r[0] for r in reps)
            cpu = statistics.median(r[1] for r in reps)
            dcpu = statistics.median(r[2] for r in reps)
            wdef = statistics.median(r[3] for r in reps)
            rows[label] = (len(names_), wall, cpu, dcpu, wdef)
            n = len(names_)
            print(f"{label:8s} {n:4d} boxes: wall {wall:6.2f} s ({1000 * (wall - wdef) / n:5.1f} ms/box), "
                  f"agent CPU {cpu:5.2f} s ({1000 * cpu / n:4.1f} ms/box), dockerd CPU {dcpu:5.2f} s "
                  f"({1000 * dcpu / n:4.1f} ms/box); engine defaults {1000 * wdef:.0f} ms/round "
                  f"(median of {args.reps})")
        n_r, wall_r, cpu_r, dcpu_r, _ = rows["running"]
        per_box_cpu = cpu_r / n_r
        per_box_dcpu = dcpu_r / n_r
        per_box_wall = wall_r / n_r
        for boxes in (50, 500, 5000):
            share = 100 * boxes * (per_box_cpu + per_box_dcpu) / args.interval
            print(f"extrapolated, {boxes:5d} running boxes every {args.interval:g} s: one round {boxes * per_box_wall:7.1f} s "
                  f"wall, agent+dockerd CPU {boxes * (per_box_cpu + per_box_dcpu):6.1f} s = {share:.4f} % of one core")
    finally:
        for name in created + running:
            try:
                client.api.remove_container(name, force=True)
            except Exception:  # noqa: BLE001 - best effort; remove_run below finds the rest
                pass
        remove_run(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
