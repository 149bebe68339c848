"""issue 31 item 6 on a real InfluxDB 1.6: freezes grouped by the tag detected_layer, old untagged data as before."""
from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from agent import netns
from agent.storage import points as P

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "operator-guide.md"
T0 = 1_800_000_000.0


def _write(server, db: str, lines: list[str]) -> None:
    req = urllib.request.Request(f"{server.url}/write?db={db}&precision=ms", data="\n".join(lines).encode(),
                                 method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with netns.entered(server.netns), opener.open(req, timeout=5) as resp:
        assert resp.status == 204


def _series(result: dict) -> list[dict]:
    return result["results"][0].get("series", [])


def test_freezes_group_by_detected_layer_and_old_points_read_as_before(influx_server):
    influx_server.create_database("dl")
    old = [P.freeze_point("old", "vm", "S", T0, True, "l3", 30.0),          # written by an agent without the tag
           P.freeze_point("old", "vm", "S", T0, False, "l3", 60.0)]
    deepened = [P.freeze_point("ctr", "container", "S", T0 + 100, True, "l4", 30.0, detected_layer="l4"),
                P.freeze_point("ctr", "container", "S", T0 + 100, True, "l2", 40.0, detected_layer="l4"),
                P.freeze_point("ctr", "container", "S", T0 + 100, False, "l2", 90.0, detected_layer="l4")]
    other = [P.freeze_point("ctr", "container", "S", T0 + 500, False, "l2", 20.0, detected_layer="l2")]
    _write(influx_server, "dl", [p.to_line("ms") for p in old + deepened + other])

    # every write of a freeze landed on one point: three freezes, not six
    total = _series(influx_server.query('SELECT count("duration_s") FROM "freeze"', db="dl"))
    assert total[0]["values"][0][1] == 3
    # the guide's query, as printed there
    guide_q = next(m.group(1) for m in re.finditer(r"^    (SELECT .*GROUP BY .*\"detected_layer\")$",
                                                   GUIDE.read_text(), re.M))
    got = {(s["tags"]["kind"], s["tags"]["detected_layer"]): s["values"][0][1]
           for s in _series(influx_server.query(guide_q.replace("now() - 30d", f"{int(T0 - 10)}s"), db="dl"))}
    assert got == {("vm", ""): 1, ("container", "l4"): 1, ("container", "l2"): 1}
    # the deepest layer is still the field, and the report's reading (GROUP BY "box", "kind") sees each freeze once
    rows = {(s["tags"]["box"], tuple(v[1:])) for s in _series(influx_server.query(
        'SELECT "duration_s", "layer", "open" FROM "freeze" GROUP BY "box", "kind"', db="dl")) for v in s["values"]}
    assert rows == {("old", (60.0, "l3", 0)), ("ctr", (90.0, "l2", 0)), ("ctr", (20.0, "l2", 0))}
