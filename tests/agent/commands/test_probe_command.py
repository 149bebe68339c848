"""`vobox-agent probe`: argument parsing, target building, table and JSON output (sweep faked)."""
from __future__ import annotations

import json

import pytest

import probes
from agent import cli
from agent.commands import probe as probe_cmd
from probes import ProbeResult, Target


def parse(*argv: str):
    return cli.build_parser().parse_args(["probe", *argv])


def test_defaults_and_options_parse():
    args = parse("192.0.2.1")
    assert (args.addresses, args.probe, args.port, args.timeout, args.interface, args.json, args.config) == (
        ["192.0.2.1"], None, [], None, None, False, None)
    args = parse("--probe", "icmp,tcp", "--port", "22", "--port", "80,443", "--timeout", "0.5",
                 "--interface", "lab0", "--json", "192.0.2.1", "2001:db8::1")
    assert (args.probe, args.port, args.timeout, args.interface, args.json) == (
        ["icmp", "tcp"], [22, 80, 443], 0.5, "lab0", True)


@pytest.mark.parametrize("argv, message", [
    pytest.param(("--probe", "ping", "192.0.2.1"), "valid kinds: icmp, icmp6, arp, ndp, tcp", id="unknown-kind"),
    pytest.param(("--port", "0", "192.0.2.1"), "expected a port 1-65535", id="port-zero"),
    pytest.param(("--port", "http", "192.0.2.1"), "expected a port 1-65535", id="port-name"),
    pytest.param(("--timeout", "-1", "192.0.2.1"), "expected a timeout in seconds > 0", id="negative-timeout"),
])
def test_bad_arguments_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_kinds_that_do_not_apply_to_a_family_are_skipped():
    got = probe_cmd.build_targets(["192.0.2.1", "2001:db8::1"], None, [22, 80])
    assert got == [Target("192.0.2.1", "icmp"), Target("192.0.2.1", "arp"), Target("192.0.2.1", "tcp", 22),
                   Target("192.0.2.1", "tcp", 80), Target("2001:db8::1", "icmp6"), Target("2001:db8::1", "ndp"),
                   Target("2001:db8::1", "tcp", 22), Target("2001:db8::1", "tcp", 80)]
    assert probe_cmd.build_targets(["192.0.2.1"], None, []) == [Target("192.0.2.1", "icmp"),
                                                               Target("192.0.2.1", "arp")]
    assert probe_cmd.build_targets(["192.0.2.1", "2001:db8::1"], ["ndp"], []) == [Target("2001:db8::1", "ndp")]


@pytest.mark.parametrize("addresses, kinds, ports, message", [
    pytest.param(["192.0.2.1"], ["tcp"], [], "--probe tcp needs at least one --port", id="tcp-no-port"),
    pytest.param(["192.0.2.1"], ["icmp"], [22], "--port is for tcp", id="port-without-tcp"),
    pytest.param(["2001:db8::1"], ["arp"], [], "none of --probe arp applies to 2001:db8::1", id="nothing-applies"),
    pytest.param(["box1"], None, [], "'box1' is not an IPv4 or IPv6 address", id="hostname"),
])
def test_target_building_errors(addresses, kinds, ports, message):
    with pytest.raises(ValueError, match=message):
        probe_cmd.build_targets(addresses, kinds, ports)


@pytest.fixture
def fake_sweep(monkeypatch):
    seen = {}

    def sweep(targets, timeout_s, interface=None, recorder=None):
        seen.update(targets=list(targets), timeout_s=timeout_s, interface=interface)
        return [ProbeResult(t.address, t.probe, t.port, t.probe != "tcp", 0.12345 if t.probe != "tcp" else None,
                            None if t.probe != "tcp" else "refused", "02:42:c0:00:02:01" if t.probe == "arp" else None,
                            1.0) for t in targets]

    monkeypatch.setattr(probes, "sweep", sweep)
    return seen


def test_json_output_has_exactly_the_documented_keys(capsys, fake_sweep):
    code = cli.main(["probe", "--json", "--port", "22", "--timeout", "0.3", "192.0.2.1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # the tcp probe failed
    assert fake_sweep["timeout_s"] == 0.3
    assert [list(o) for o in out] == [["target", "probe", "port", "ok", "rtt_ms", "error", "mac"]] * 3
    assert out[0] == {"target": "192.0.2.1", "probe": "icmp", "port": None, "ok": True, "rtt_ms": 0.123,
                      "error": None, "mac": None}
    assert out[1]["mac"] == "02:42:c0:00:02:01"
    assert out[2] == {"target": "192.0.2.1", "probe": "tcp", "port": 22, "ok": False, "rtt_ms": None,
                      "error": "refused", "mac": None}


def test_table_output_and_exit_zero_when_all_answer(capsys, fake_sweep):
    code = cli.main(["probe", "--probe", "arp", "192.0.2.1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == ["TARGET", "PROBE", "PORT", "OK", "RTT_MS", "ERROR", "MAC"]
    assert lines[1].split() == ["192.0.2.1", "arp", "yes", "0.123", "02:42:c0:00:02:01"]
    assert fake_sweep["timeout_s"] == 1.0


def test_no_address_and_no_config_is_a_usage_error(capsys):
    assert cli.main(["probe"]) == 2
    assert "give at least one ADDRESS (or -c CONFIG)" in capsys.readouterr().err


def test_invalid_config_names_the_file(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\nbogus = 1\n")
    assert cli.main(["probe", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "bogus" in err
