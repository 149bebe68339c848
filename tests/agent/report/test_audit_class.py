"""The container/VM comparison split by audit class (agent.report.stats.split_by_audit_class, pure)."""
from __future__ import annotations

from agent.report.html import render_html
from agent.report.stats import (
    DAY_S,
    BoxRecord,
    ClassPeriod,
    ClassSlice,
    FleetObservation,
    FreezeRecord,
    build_report,
    class_at,
    class_windows,
    rate_per_day,
)
from agent.report.text import render_text

H = 3_600_000   # ms


def obs(periods, slices, freezes) -> FleetObservation:
    boxes = (BoxRecord("a", "container", 1440, 1430), BoxRecord("b", "container", 1440, 1440),
             BoxRecord("v", "vm", 1440, 1435))
    return FleetObservation(0, 24 * H, 60.0, None, boxes, tuple(freezes), (), 3600, audit_periods=tuple(periods),
                            class_slices=tuple(slices))


def test_class_in_force_and_windows():
    ps = [ClassPeriod("a", 0, "default"), ClassPeriod("a", 12 * H, "elevated"), ClassPeriod("a", 13 * H, "elevated")]
    assert class_at(ps, "a", 11 * H) == "default" and class_at(ps, "a", 12 * H) == "elevated"
    assert class_at(ps, "b", 5 * H) == "unknown"   # never audited: unknown, never default
    assert class_windows(ps, "a", 0, 24 * H) == [(0, 12 * H, "default"), (12 * H, 24 * H, "elevated")]
    assert class_windows(ps, "b", 0, 24 * H) == [(0, 24 * H, "unknown")]


def test_exposure_and_freezes_count_for_the_class_in_force_with_the_same_intervals():
    periods = [ClassPeriod("a", 0, "default"), ClassPeriod("a", 12 * H, "elevated")]
    slices = [ClassSlice("a", "container", "default", 720, 720), ClassSlice("a", "container", "elevated", 720, 710),
              ClassSlice("b", "container", "unknown", 1440, 1440)]
    freezes = [FreezeRecord("a", "container", 13 * H, "l4", 600.0, False),
               FreezeRecord("a", "container", 14 * H, "l4", 600.0, False),
               FreezeRecord("v", "vm", 2 * H, "l3", 300.0, False)]
    r = build_report(obs(periods, slices, freezes))
    split = r.by_audit_class
    g = {x.name: x for x in split.groups}
    assert list(g) == ["containers elevated", "containers default", "containers unknown", "all VMs"]
    assert g["containers elevated"].freezes == 2 and g["containers default"].freezes == 0
    assert g["containers elevated"].box_days == 720 * 60 / DAY_S and g["containers unknown"].boxes == 1
    # the same interval as the kinds': the exact Poisson one of 2 freezes in half a box-day
    assert g["containers elevated"].rate_per_box_day == rate_per_day(2, 0.5)
    assert split.comparisons["elevated"].k1 == 2 and split.comparisons["elevated"].k2 == 1
    text = render_text(r)
    assert "by audit class" in text and "elevated containers vs VMs" in text and "containers unknown" in text
    page = render_html(r)
    assert "<h2>By audit class</h2>" in page and "containers elevated</td>" in page
    assert page.count("elevated containers vs VMs") == 1


def test_no_audit_data_no_split():
    r = build_report(obs([], [], []))
    assert r.by_audit_class is None and "by audit class" not in render_text(r)
    assert "By audit class" not in render_html(r)
