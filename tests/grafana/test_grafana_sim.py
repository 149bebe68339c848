"""The macro/variable expander against cases taken from Grafana's own InfluxDB tests and code."""
from __future__ import annotations

import pytest

from tests.grafana import grafana_sim as g


def var(name, current, **kw):
    return {name: g.Variable(name, current, **kw)}


@pytest.mark.parametrize("query,variables,expected", [
    pytest.param("my query $tempVar", var("tempVar", "normalValue"), "my query normalValue", id="plain"),
    pytest.param("where path /$tempVar/", var("tempVar", "/special/path"), "where path /$tempVar/".replace(
        "$tempVar", "/special/path"), id="slashes-not-regex-op"),
    pytest.param("that where path =~ /$tempVar/", var("tempVar", "/special/path"),
                 "that where path =~ /\\/special\\/path/", id="regex-escaped"),
    pytest.param("that where path !~ /^$tempVar$/", var("tempVar", "/special/path"),
                 "that where path !~ /^\\/special\\/path$/", id="not-regex-escaped"),
    pytest.param("from path =~ /^($tempVar)$/", var("tempVar", ["env", "env2", "env3"], include_all=True),
                 "from path =~ /^((env|env2|env3))$/", id="include-all-list"),
    pytest.param("select that where path = '$tempVar'", var("tempVar", "/special/path"),
                 "select that where path = '/special/path'", id="quoted-not-regex"),
    pytest.param("path = '$tempVar'", var("tempVar", ["/special/path", "/some/other/path"], multi=True),
                 "path = '(\\/special\\/path|\\/some\\/other\\/path)'", id="multi-always-escaped"),
    pytest.param('"box" =~ /^$box$/', var("box", ["a.b"], multi=True), '"box" =~ /^a\\.b$/', id="multi-one"),
    pytest.param('"box" =~ /^$box$/', var("box", g.ALL, multi=True, include_all=True, all_value=".*"),
                 '"box" =~ /^.*$/', id="all-custom-value-verbatim"),
    pytest.param('"box" =~ /^$box$/', var("box", g.ALL, multi=True, include_all=True, options=["x|y", "z"]),
                 '"box" =~ /^(x\\|y|z)$/', id="all-without-custom-value"),
    pytest.param('"box" =~ /^${box}$/', var("box", "vm-1"), '"box" =~ /^vm-1$/', id="braces"),
])
def test_interpolate_variables(query, variables, expected):
    assert g.interpolate_variables(query, variables) == expected


@pytest.mark.parametrize("ms,text", [(1, "1ms"), (500, "500ms"), (1000, "1s"), (10000, "10s"), (60000, "1m"),
                                     (90000, "1m"), (3600000, "1h"), (86400000, "1d")])
def test_format_interval(ms, text):
    assert g.format_interval(ms) == text


@pytest.mark.parametrize("raw,rounded", [(5, 1), (14, 10), (1400, 1000), (7000, 5000), (12000, 10000),
                                         (172800, 120000), (400000, 300000), (3600000, 3600000)])
def test_round_interval(raw, rounded):
    assert g.round_interval_ms(raw) == rounded


def test_interval_has_the_datasource_minimum():
    assert g.query_interval_ms(0, 3600_000, 1000, 10_000) == 10_000   # 3.6 s -> 2 s, raised to 10 s
    assert g.query_interval_ms(0, 172_800_000, 1000, 10_000) == 120_000


def test_backend_macros_in_grafanas_order():
    q = "SELECT mean(x) FROM m WHERE $timeFilter GROUP BY time($__interval) -- $interval $__interval_ms"
    assert g.apply_backend_macros(q, 1000, 2000, 60000) == \
        "SELECT mean(x) FROM m WHERE time >= 1000ms and time <= 2000ms GROUP BY time(1m) -- 1m 60000"


def test_alert_query_uses_relative_range_and_interval_ms():
    model = {"query": "SELECT 1 FROM a WHERE $timeFilter GROUP BY time($__interval)", "intervalMs": 10000}
    assert g.expand_alert_query(model, 30, 0, 100_000) == \
        "SELECT 1 FROM a WHERE time >= 70000ms and time <= 100000ms GROUP BY time(10s)"
