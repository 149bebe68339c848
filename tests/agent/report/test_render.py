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
