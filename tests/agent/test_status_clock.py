"""status.json freshness that no wall-clock step fakes: a CLOCK_BOOTTIME stamp and the boot id, written by the
status listener and read by `status --check` (the image's HEALTHCHECK); a negative age is never fresh."""
from __future__ import annotations

import json

import pytest

from agent.core.events import CycleEnded
from agent.listeners.status import StatusListener, boot_id, boottime_s
from agent.status import read_status_file

BOOT = "3d297799-0d63-4b25-a708-406d6fdeccb0"
WALL_S = 1_800_000_000.0


def write(tmp_path, wall_s: float, boottime: float, boot: str = BOOT, cycles: int = 1) -> str:
    listener = StatusListener(str(tmp_path), {"a": "container"}, site="lab", interval_s=10, budget_per_hour=3,
                              monotonic=lambda: boottime, boot=boot)
    for _ in range(cycles):
        listener.on_events([CycleEnded(wall_s, 0.0, 1, (), (), 0, None)])
    return str(tmp_path / "status.json")


def test_the_listener_stamps_the_boot_and_its_monotonic_clock_and_counts_cycles(tmp_path):
    with open(write(tmp_path, WALL_S, 900.5, cycles=3)) as fh:
        data = json.load(fh)
    assert data["boot_id"] == BOOT and data["boottime_s"] == 900.5 and data["cycles"] == 3
    assert data["updated_s"] == WALL_S


@pytest.mark.parametrize("wall_now_s, boottime_now_s, fresh, why", [
    pytest.param(WALL_S + 5, 905.0, True, None, id="no-step"),
    pytest.param(WALL_S - 3600, 905.0, True, None, id="wall-back-1h-still-fresh"),
    pytest.param(WALL_S + 90 * 86400, 905.0, True, None, id="wall-forward-90d-still-fresh"),
    pytest.param(WALL_S - 3600, 960.0, False, "stale: last written 60s ago", id="wall-back-1h-loop-stopped"),
    pytest.param(WALL_S + 5, 899.0, False, "monotonic stamp lies 1 s ahead of this boot's clock", id="negative-monotonic-age"),
])
def test_freshness_is_monotonic_whatever_the_wall_clock_says(tmp_path, wall_now_s, boottime_now_s, fresh, why):
    path = write(tmp_path, WALL_S, 900.0)
    snap, reason = read_status_file(path, wall_now_s, boot=BOOT, boottime_now_s=boottime_now_s)
    assert (snap is not None) is fresh, reason
    if fresh:
        assert snap.age_s == pytest.approx(boottime_now_s - 900.0)
    else:
        assert why in reason and "monotonic" in reason


def test_a_file_of_another_boot_is_not_fresh(tmp_path):
    path = write(tmp_path, WALL_S, 900.0, boot="another-boot")
    snap, reason = read_status_file(path, WALL_S + 1, boot=BOOT, boottime_now_s=901.0)
    assert snap is None and "written before the last boot" in reason


def test_without_a_monotonic_stamp_a_negative_wall_age_is_never_fresh(tmp_path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"version": 1, "updated_s": WALL_S, "interval_s": 10, "boxes": {}}))
    snap, reason = read_status_file(str(path), WALL_S - 3600, boot=BOOT, boottime_now_s=1.0)
    assert snap is None and "in the future by the wall clock" in reason
    snap, reason = read_status_file(str(path), WALL_S + 5, boot=BOOT, boottime_now_s=1.0)
    assert snap is not None and snap.age_s == pytest.approx(5.0)


def test_the_real_clocks_are_readable_here():
    assert boot_id() and len(boot_id()) == 36
    assert 0 < boottime_s()
