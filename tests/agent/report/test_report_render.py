"""agent.report.text and agent.report.html: a synthetic observation rendered as text and as a page."""
from __future__ import annotations

from agent.report import stats
from agent.report.html import render_html
from agent.report.text import render_text


def test_text_and_html_from_a_synthetic_observation():
    obs = stats.FleetObservation(0, 2 * 86_400_000, 10.0, "x",
                             (stats.BoxRecord("c1", "container", 17280, 17270), stats.BoxRecord("v1", "vm", 17280, 17100)),
                             (stats.FreezeRecord("c1", "container", 3_600_000, "l4", 100.0, False),
                              stats.FreezeRecord("v1", "vm", 7_200_000, "l2", 1800.0, False)),
                             (stats.Bucket(0, "container", 8640, 8630), stats.Bucket(0, "vm", 8640, 8460)), 86400,
                             {"command": (1, 1)})
    rep = stats.build_report(obs)
    text = render_text(rep)
    assert "container" in text and "not yet significant" in text and "command 1 (1/1 recovered)" in text
    page = render_html(rep)
    assert page.count("<svg") == 3 and "<script" not in page


def _obs(**kw):
    base = dict(start_ms=0, end_ms=3_600_000, interval_s=10.0, site="x",
                boxes=(stats.BoxRecord("c1", "container", 75, 70), stats.BoxRecord("c2", "container", 75, 70),
                       stats.BoxRecord("v1", "vm", 75, 70)),
                freezes=(stats.FreezeRecord("c1", "container", 600_000, "l2", 50.0, False),
                         stats.FreezeRecord("c2", "container", 610_000, "l2", 50.0, False),
                         stats.FreezeRecord("v1", "vm", 600_000, "l2", 50.0, False),
                         stats.FreezeRecord("c1", "container", 700_000, "l4", 30.0, False)),
                buckets=(stats.Bucket(0, "container", 150, 140), stats.Bucket(0, "vm", 75, 70)), bucket_s=3600,
                first_ms=0, last_ms=740_000, cycles=75)
    return stats.FleetObservation(**(base | kw))


def test_the_report_says_the_span_it_really_covers():
    rep = stats.build_report(_obs())
    text = render_text(rep)
    # 75 cycles of 10 s: 12.5 minutes of data in the hour asked for
    assert "covers: 1970-01-01 00:00:00Z .. 1970-01-01 00:12:20Z, 12.5m observed of the 1h asked for; " \
           "3 boxes, 75 cycles" in text
    assert "covers:" in render_html(rep)
    empty = stats.build_report(_obs(boxes=(), freezes=(), buckets=(), first_ms=None, last_ms=None, cycles=0))
    assert "covers: no data in the 1h asked for" in render_text(empty)


def test_segment_outages_are_listed_apart_and_the_comparison_shown_both_ways():
    outage = stats.SegmentOutage("docknet", 598_000, "l2", 60.0, False, ("c1", "c2", "v1"))
    rep = stats.build_report(_obs(segment_outages=(outage,)))
    assert rep.segment_freezes == 3
    assert (rep.comparison.k1, rep.comparison.k2) == (3, 1)
    assert (rep.comparison_without_segments.k1, rep.comparison_without_segments.k2) == (1, 0)
    text = render_text(rep)
    assert "segment outages (1; every box of a segment down at once, 3 of the 4 box freezes are part of them):" in text
    assert "  1970-01-01 00:09:58Z  segment docknet  layer l2  1m  3 boxes: c1, c2, v1" in text
    assert "with segment outages: containers vs VMs: not yet significant" in text
    assert "without them (3 box freezes left out): containers vs VMs:" in text
    page = render_html(rep)
    assert "<h2>Segment outages</h2>" in page and "without them (3 box freezes left out)" in page
    # no outages: one comparison, no section
    plain = render_text(stats.build_report(_obs()))
    assert "segment outages" not in plain and "without them" not in plain


def test_a_box_freeze_outside_the_outage_or_of_another_box_is_not_part_of_it():
    outage = stats.SegmentOutage("docknet", 598_000, "l2", 60.0, False, ("c1", "c2"))
    assert outage.holds(stats.FreezeRecord("c1", "container", 600_000, "l2", 50.0, False))
    assert not outage.holds(stats.FreezeRecord("v1", "vm", 600_000, "l2", 50.0, False))
    assert not outage.holds(stats.FreezeRecord("c1", "container", 900_000, "l4", 30.0, False))


def test_availability_from_every_failed_cycle_is_set_next_to_the_freeze_based_one_and_explained():
    """A box failing every other cycle: no freeze, 100 % freeze-based, 50 % from every failed cycle."""
    boxes = (stats.BoxRecord("c1", "container", 30, 30, 30, 15, True, 99.0),
             stats.BoxRecord("v1", "vm", 30, 26, 30, 26, False, 5.9))
    rep = stats.build_report(_obs(boxes=boxes, freezes=(stats.FreezeRecord("v1", "vm", 600_000, "l2", 40.0, False),),
                                  cycles=30))
    c1 = next(g for g in rep.boxes if g.name == "c1")
    assert c1.availability.value == 1.0 and c1.availability_all_failures == 0.5
    assert c1.failed_cycles == 15 and c1.down_cycles == 0 and c1.degraded_boxes == ("c1",)
    text = render_text(rep)
    assert "c1               50.000% against 100.000%: 15 failed cycles, 0 down in freezes, about 15 lone failures" \
        in text
    assert "v1               86.667% against 86.667%: 4 failed cycles, 4 down in freezes" in text
    assert "a freeze needs [freeze] fail_cycles failing cycles in a row" in text
    assert "degraded (flapping or losing cycles) at some time in the range: c1 (99 % state change at most)" in text
    page = render_html(rep)
    assert "Every failed cycle" in page and "50.000%" in page and "fail_cycles failing cycles in a row" in page


def test_data_without_healthy_leaves_the_section_out():
    text = render_text(stats.build_report(_obs()))
    assert "every failed cycle" not in text
