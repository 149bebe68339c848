"""Line protocol encoding and the schema builders."""
from __future__ import annotations

import pytest

from agent.storage import points as P
from agent.storage.points import Point


@pytest.mark.parametrize("point,line", [
    pytest.param(Point("m", {"t": "v"}, {"f": 1}, 1_700_000_000_123_000_000), "m,t=v f=1i 1700000000123",
                 id="int-as-i"),
    pytest.param(Point("m", {}, {"f": 1.0}, 0), "m f=1.0 0", id="float-stays-float"),
    pytest.param(Point("m", {}, {"f": True, "g": False}, 0), "m f=true,g=false 0", id="bools"),
    pytest.param(Point("m", {}, {"s": 'say "hi" \\ ok'}, 0), 'm s="say \\"hi\\" \\\\ ok" 0', id="string-escapes"),
    pytest.param(Point("m", {}, {"s": "a\nb"}, 0), 'm s="a\nb" 0', id="string-newline-kept-raw"),
    pytest.param(Point("my m,x", {"a b": "c,d=e"}, {"f k": 1}, 0), "my\\ m\\,x,a\\ b=c\\,d\\=e f\\ k=1i 0",
                 id="key-escapes"),
    pytest.param(Point("m", {"z": "1", "a": "2", "n": None, "e": ""}, {"f": 1}, 0), "m,a=2,z=1 f=1i 0",
                 id="tags-sorted-empty-left-out"),
    pytest.param(Point("m", {}, {"f": 1, "n": None, "x": float("nan")}, 0), "m f=1i 0", id="none-nan-left-out"),
    pytest.param(Point("m", {"t": "a\\b"}, {"f": 1}, 0), "m,t=a\\b f=1i 0", id="tag-backslash-literal"),
])
def test_line_protocol(point, line):
    assert point.to_line() == line


@pytest.mark.parametrize("point,match", [
    pytest.param(Point("m", {"t": "a\nb"}, {"f": 1}, 0), "tag 't' value .*newline", id="tag-newline"),
    pytest.param(Point("m", {"t": "a\rb"}, {"f": 1}, 0), "carriage return", id="tag-cr"),
    pytest.param(Point("m", {"t": "a\\"}, {"f": 1}, 0), "ends with a backslash", id="tag-trailing-backslash"),
    pytest.param(Point("m", {"t": "a\\ b"}, {"f": 1}, 0), "backslash before ' '", id="tag-backslash-space"),
    pytest.param(Point("m", {"t": 'a\\"'}, {"f": 1}, 0), "backslash before", id="tag-backslash-quote"),
    pytest.param(Point("m\nx", {}, {"f": 1}, 0), "measurement.*newline", id="measurement-newline"),
    pytest.param(Point("#m", {}, {"f": 1}, 0), "comment", id="measurement-hash"),
    pytest.param(Point("m", {}, {"f\\": 1}, 0), "field key.*backslash", id="field-key-backslash"),
    pytest.param(Point("m", {"time": "x"}, {"f": 1}, 0), "reserved", id="tag-time"),
    pytest.param(Point("m", {}, {"time": 1}, 0), "reserved", id="field-time"),
    pytest.param(Point("m", {"k": "x"}, {"k": 1}, 0), "also a tag key", id="tag-field-clash"),
    pytest.param(Point("m", {}, {"f": 2**63}, 0), "int64", id="int-too-big"),
    pytest.param(Point("m", {}, {"f": "\udc80"}, 0), "UTF-8", id="lone-surrogate"),
])
def test_unwritable_values_rejected_with_reason(point, match):
    with pytest.raises(P.LineProtocolError, match=match):
        point.to_line()


def test_precisions_and_no_fields():
    p = Point("m", {}, {"f": 1}, 1_700_000_000_123_456_789)
    assert p.to_line("ns").endswith(" 1700000000123456789")
    assert p.to_line("s").endswith(" 1700000000")
    with pytest.raises(ValueError, match="no writable field"):
        Point("m", {}, {"f": None}, 0).to_line()
    with pytest.raises(TypeError):
        Point("m", {}, {"f": [1]}, 0).to_line()


def test_ns_from_s_rounds_to_ms():
    assert P.ns_from_s(1700000000.1234) == 1_700_000_000_123_000_000
    assert P.ns_from_s(0.0015) == 2_000_000


@pytest.mark.parametrize("point,line", [
    pytest.param(P.probe_point("b1", "container", "CERN", "tcp", "192.0.2.10", 1093, True, 0.25, None, None, 1.0),
                 "probe,address=192.0.2.10,box=b1,kind=container,port=1093,probe=tcp,site=CERN ok=1i,rtt_ms=0.25 1000",
                 id="probe-ok"),
    pytest.param(P.probe_point("b1", "vm", None, "arp", "192.0.2.10", None, False, None, "timeout", None, 2.0),
                 'probe,address=192.0.2.10,box=b1,kind=vm,probe=arp ok=0i,error="timeout" 2000', id="probe-fail"),
    pytest.param(P.probe_point("b1", "vm", None, "arp", "192.0.2.10", None, True, 0.1, None, "02:42:c0:00:02:0a",
                               2.0),
                 'probe,address=192.0.2.10,box=b1,kind=vm,probe=arp ok=1i,rtt_ms=0.1,mac="02:42:c0:00:02:0a" 2000',
                 id="probe-mac"),
    pytest.param(P.box_point("b1", "vm", "S", 0, "frozen", "l3", 3.0),
                 'box,box=b1,kind=vm,site=S up=0i,state="frozen",layer="l3" 3000', id="box"),
    pytest.param(P.box_down_rewrite("b1", "vm", "S", 3.0), "box,box=b1,kind=vm,site=S up=0i 3000", id="rewrite"),
    pytest.param(P.freeze_point("b1", "vm", "S", 3.0, True, "l2", 20.0),
                 'freeze,box=b1,kind=vm,site=S open=1i,layer="l2",duration_s=20.0 3000', id="freeze"),
    pytest.param(P.freeze_point("b1", "vm", "S", 3.0, False, "l2", 20.0, detected_layer="l4"),
                 'freeze,box=b1,detected_layer=l4,kind=vm,site=S open=0i,layer="l2",duration_s=20.0 3000',
                 id="freeze-detected-layer"),
    pytest.param(P.freeze_point("b1", "vm", "S", 3.0, False, "l2", 20.0, detected_layer=""),
                 'freeze,box=b1,kind=vm,site=S open=0i,layer="l2",duration_s=20.0 3000', id="freeze-detected-unknown"),
    pytest.param(P.agent_point("S", 4.0, cycle_s=0.5, misfires=0, spool_points=3, write_errors=1),
                 "agent,site=S cycle_s=0.5,misfires=0i,spool_points=3i,write_errors=1i,dropped=0i,rejected=0i 4000",
                 id="agent"),
    pytest.param(P.remediation_point("b1", "container", None, "restart_container", "auto", True, False, False, 2.5,
                                     "restarted", 5.0),
                 'remediation,action=restart_container,box=b1,kind=container,outcome=done,trigger=auto ok=1i,recovered=0i,'
                 'dry_run=0i,deferred=0i,duration_s=2.5,detail="restarted" 5000', id="remediation"),
    pytest.param(P.container_event_point("b1", "container", None, "die", 6.0, "exitCode=137", 137),
                 'container_event,box=b1,event=die,kind=container n=1i,detail="exitCode=137",exit_code=137i 6000',
                 id="container-event"),
    pytest.param(P.mac_change_point("b1", "container", None, "192.0.2.10", "02:00:00:00:00:01",
                                    "02:00:00:00:00:02", 7.0),
                 'mac_change,address=192.0.2.10,box=b1,kind=container old="02:00:00:00:00:01",'
                 'new="02:00:00:00:00:02" 7000', id="mac-change"),
    pytest.param(P.mac_change_point("b1", "container", None, "192.0.2.10", "02:00:00:00:00:01",
                                    "02:00:00:00:00:02", 7.0, ours=True),
                 'mac_change,address=192.0.2.10,box=b1,kind=container old="02:00:00:00:00:01",'
                 'new="02:00:00:00:00:02",ours=1i 7000', id="mac-change-ours"),
    pytest.param(P.segment_freeze_point("docknet", "S", 8.0, ["b2", "b1"], "l2", True, 0.0),
                 'segment_freeze,segment=docknet,site=S boxes=2i,box_names="b1,b2",layer="l2",open=1i,'
                 'duration_s=0.0 8000', id="segment-freeze"),
])
def test_schema(point, line):
    assert point.to_line() == line


def test_clock_step_point_is_an_agent_point_tagged_with_its_event():
    from agent.storage.points import clock_step_point

    p = clock_step_point("lab", 1_800_000_000.5, -3600.0, host="vobox1")
    assert p.to_line("ms") == ('agent,event=clock_step,host=vobox1,site=lab clock_step_s=-3600.0,detail="wall clock '
                               'stepped back by 3600.000 s; probing kept its rhythm on the monotonic clock" '
                               '1800000000500')
