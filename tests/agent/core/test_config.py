"""Strict config parsing: each bad value gives one error naming its key path; all errors come together."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from agent.core import config
from agent.core.config import ConfigError
from tests.cases import case

GOOD_TOML = """
[agent]
interval = 10
timeout = 1.0
jitter = 0.5
state_dir = "/tmp/vobox"
site = "CERN"

[freeze]
fail_cycles = 3
recover_cycles = 2

[influxdb]
url = "http://127.0.0.1:8086/"
api = "v1"
database = "vobox"

[remediation]
enabled = true
cooldown = 60
webhook_listen = "127.0.0.1:9787"
webhook_token_file = "/etc/vobox-agent/webhook.token"

[correlation]
min_boxes = 2

[[box]]
name = "vobox-ctr-1"
kind = "container"
ipv4 = "192.0.2.10"
ipv6 = "2001:DB8:1::10"
tcp_ports = [1093, 8084]
container = "vobox1"
network = "docknet"
remediate = ["reconnect_network", "restart_container"]

[[box]]
name = "vobox-vm-1"
kind = "vm"
ipv4 = "192.0.2.20"
remediate = ["command"]
command = ["virsh", "reset", "{box}", "--ip={ipv4}"]
"""


def with_files(tmp_path, text: str = GOOD_TOML) -> str:
    """TEXT with the files it names made real (load checks them): a token file, a command on PATH."""
    token = tmp_path / "webhook.token"
    token.write_text("s3cret\n")
    return text.replace("/etc/vobox-agent/webhook.token", str(token)).replace('"virsh"', '"true"')


def good() -> dict:
    import tomllib
    return tomllib.loads(GOOD_TOML)


def test_good_config_maps_to_dataclasses_with_units():
    cfg = config.parse(good())
    assert cfg.agent.interval_s == 10.0 and cfg.agent.timeout_s == 1.0 and cfg.agent.site == "CERN"
    assert cfg.freeze.fail_cycles == 3 and cfg.freeze.recover_cycles == 2
    assert cfg.influxdb.url == "http://127.0.0.1:8086"          # trailing slash dropped
    assert cfg.remediation.cooldown_s == 60.0 and cfg.remediation.webhook_port == 9787
    assert cfg.remediation.webhook_host == "127.0.0.1"
    assert cfg.correlation.min_boxes == 2 and cfg.correlation.window_s == 60.0
    ctr, vm = cfg.boxes
    assert ctr.ipv6 == "2001:db8:1::10"                             # normalised
    assert ctr.tcp_ports == (1093, 8084) and ctr.remediate == ("reconnect_network", "restart_container")
    assert vm.command == ("virsh", "reset", "{box}", "--ip={ipv4}") and vm.container is None
    assert cfg.box("vobox-vm-1") is vm
    with pytest.raises(KeyError, match="vobox-ctr-1"):
        cfg.box("nope")
    with pytest.raises(AttributeError):
        cfg.agent.interval_s = 5  # frozen


def test_defaults_when_sections_absent():
    cfg = config.parse({"box": [{"name": "b", "kind": "vm", "ipv6": "2001:db8::1"}]})
    assert cfg.agent.interval_s == 10.0 and cfg.agent.state_dir == "/var/lib/vobox-agent"
    assert cfg.influxdb is None and cfg.stores() == ()   # issue 31: no [influxdb], no InfluxDB (was 127.0.0.1:8086)
    cfg = config.parse({"influxdb": {}, "box": [{"name": "b", "kind": "vm", "ipv6": "2001:db8::1"}]})
    assert cfg.influxdb.api == "v1" and cfg.influxdb.database == "vobox" and cfg.influxdb.spool_max_mib == 100.0
    assert cfg.influxdb.url == "http://127.0.0.1:8086" and cfg.stores() == ("influxdb v1 http://127.0.0.1:8086",)
    assert cfg.remediation.enabled is False and cfg.remediation.webhook_listen is None
    assert cfg.boxes[0].tcp_ports == () and cfg.boxes[0].ipv4 is None


def _set(path: str, value):
    """Mutate a copy of the good config at a dotted path ("box.1.kind"); value DELETE removes the key."""
    data = copy.deepcopy(good())
    parts = path.split(".")
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()
# How errors name the two boxes of GOOD_TOML (parsed from a dict: no header lines).
CTR, VM = '[[box]] "vobox-ctr-1" (#1)', '[[box]] "vobox-vm-1" (#2)'


@pytest.mark.parametrize("path,value,expected", [
    pytest.param("agent.intervall", 5, "agent.intervall: unknown key (did you mean 'interval'? valid: interval, "
                 "timeout, jitter, state_dir, interface, site, nameservers, resolve_interval)", id="unknown-key-with-hint"),
    pytest.param("agent.interval", 0, "agent.interval: expected a number > 0, got 0", id="interval-zero"),
    pytest.param("agent.interval", "10", 'agent.interval: expected a number > 0 or a duration with a unit '
                 '("500ms", "1s", "2m"), got "10"', id="interval-string-no-unit"),
    pytest.param("agent.interval", "0s", 'agent.interval: expected a number > 0 or a duration with a unit '
                 '("500ms", "1s", "2m"), got "0s"', id="interval-zero-duration"),
    pytest.param("agent.interval", "1 s", 'agent.interval: expected a number > 0 or a duration with a unit '
                 '("500ms", "1s", "2m"), got "1 s"', id="interval-space"),
    pytest.param("agent.timeout", True, "agent.timeout: expected a number > 0, got true", id="timeout-bool"),
    pytest.param("agent.timeout", 10, "agent.timeout: must be less than agent.interval (10 s), got 10",
                 id="timeout-not-below-interval"),
    pytest.param("agent.jitter", -1, "agent.jitter: expected a number >= 0, got -1", id="jitter-negative"),
    pytest.param("freeze.fail_cycles", 0, "freeze.fail_cycles: expected an integer 1-1000, got 0", id="fail-0"),
    pytest.param("freeze.fail_cycles", True, "freeze.fail_cycles: expected an integer 1-1000, got true",
                 id="bool-is-not-int"),
    pytest.param("freeze.recover_cycles", 2.5, "freeze.recover_cycles: expected an integer 1-1000, got 2.5",
                 id="recover-float"),
    pytest.param("influxdb.api", "v3", 'influxdb.api: expected one of "v1", "v2", got "v3"', id="api"),
    pytest.param("influxdb.url", "127.0.0.1:8086", 'influxdb.url: expected an http:// or https:// URL, '
                 'got "127.0.0.1:8086"', id="url-no-scheme"),
    pytest.param("influxdb.token", "t", 'influxdb.token: only for api = "v2" (api is "v1")', id="v2-key-on-v1"),
    pytest.param("influxdb.username", "u", "influxdb.password: username and password go together",
                 id="user-without-password"),
    pytest.param("remediation.webhook_listen", "localhost", 'remediation.webhook_listen: expected "host:port" '
                 '(IPv6 as "[::1]:port"), got "localhost"', id="listen-no-port"),
    pytest.param("remediation.webhook_token_file", DELETE, "remediation.webhook_token_file: missing (required "
                 'when webhook_listen is set, unless webhook_verify_client = "required")', id="webhook-without-token"),
    pytest.param("remediation.enabled", "yes", 'remediation.enabled: expected true or false, got "yes"',
                 id="bool"),
    pytest.param("correlation.min_share", 1.5, "correlation.min_share: expected a number > 0 and <= 1, got 1.5",
                 id="share"),
    pytest.param("freezing", {}, "freezing: unknown section (did you mean [freeze]? valid: agent, freeze, "
                 "influxdb, remediation, correlation, forensics, metrics, discovery, otlp, flapping, audit, "
                 "engine, box, maintenance)", id="unknown-section"),
    pytest.param("box.0.tcp_ports", [1093, "x"], CTR + '.tcp_ports[1]: expected an integer 1-65535, got "x"',
                 id="port-string"),
    pytest.param("box.0.tcp_ports", [0], CTR + ".tcp_ports[0]: expected an integer 1-65535, got 0", id="port-0"),
    pytest.param("box.0.tcp_ports", [80, 80], CTR + ".tcp_ports[1]: duplicate 80", id="port-dup"),
    pytest.param("box.0.tcp_ports", 80, CTR + ".tcp_ports: expected a list of an integer 1-65535, got 80",
                 id="ports-not-list"),
    pytest.param("box.1.ipv4", "192.0.2.300", VM + '.ipv4: expected an IPv4 address, got "192.0.2.300"',
                 id="bad-ipv4"),
    pytest.param("box.1.ipv4", "2001:db8::5", VM + '.ipv4: expected an IPv4 address, got "2001:db8::5" '
                 "(an IPv6 address)", id="v6-in-ipv4"),
    pytest.param("box.1.ipv4", "192.0.2.10", VM + ".ipv4: duplicate address 192.0.2.10 (also " + CTR + ".ipv4)",
                 id="dup-address"),
    pytest.param("box.1.name", "vobox-ctr-1", '[[box]] "vobox-ctr-1" (#2).name: duplicate "vobox-ctr-1" (also '
                 + CTR + ')', id="dup-name"),
    pytest.param("box.1.name", "a b", '[[box]] "a b" (#2).name: expected a name of letters, digits, _ . - (max 128), '
                 'got "a b"', id="name-charset"),
    pytest.param("box.1.ipv4", DELETE, (VM + ": needs ipv4, ipv6 or hostname",
                 VM + ".command[3]: placeholder {ipv4} but the box has no ipv4"), id="no-address"),
    pytest.param("box.1.kind", "lxc", VM + '.kind: expected one of "container", "vm", got "lxc"', id="kind"),
    pytest.param("box.0.name", DELETE, "[[box]] (#1).name: missing (required: unique box name (tag `box`))",
                 id="name-missing"),
    pytest.param("box.0.network", DELETE, CTR + '.network: missing (required for kind = "container")',
                 id="container-needs-network"),
    pytest.param("box.1.container", "c", VM + '.container: only for kind = "container" (this box is a vm)',
                 id="vm-with-container"),
    pytest.param("box.1.remediate", ["restart_container"], VM + '.remediate[0]: "restart_container" only '
                 'works on containers (this box is a vm; use "command")', id="vm-restart"),
    pytest.param("box.0.remediate", ["reboot"], CTR + '.remediate[0]: expected one of "reconnect_network", '
                 '"exec", "restart_container", "command", got "reboot"', id="unknown-action"),
    pytest.param("box.1.command", DELETE, VM + '.command: missing (required because remediate lists "command")',
                 id="command-missing"),
    pytest.param("box.1.command", [], VM + ".command: expected at least 1 element(s), got 0", id="command-empty"),
    pytest.param("box.1.command", ["x", "{host}"], VM + ".command[1]: unknown placeholder {host} in \"{host}\" "
                 "(valid: {box}, {ipv4}, {ipv6}, {container}; {{ and }} for a literal { and })", id="placeholder-unknown"),
    pytest.param("box.1.command", ["x", "{ipv6}"], VM + ".command[1]: placeholder {ipv6} but the box has no ipv6",
                 id="placeholder-absent"),
    pytest.param("box.0.dry_run", 1, CTR + ".dry_run: expected true or false, got 1", id="box-dry-run"),
    pytest.param("box", {"name": "x"}, "box: expected [[box]] tables, got a table", id="box-not-array"),
])
def test_one_bad_value_one_error(path, value, expected):
    with pytest.raises(ConfigError) as exc:
        config.parse(_set(path, value))
    assert exc.value.errors == (expected if isinstance(expected, tuple) else (expected,))


def test_all_errors_reported_together():
    data = _set("agent.interval", -1)
    data["box"][0]["tcp_ports"] = ["x"]
    data["box"][1]["kind"] = "pc"
    data["influxdb"]["colour"] = "blue"
    with pytest.raises(ConfigError) as exc:
        config.parse(data)
    assert [e.split(":")[0] for e in exc.value.errors] == [
        "agent.interval", "influxdb.colour", CTR + ".tcp_ports[0]", VM + ".kind"]
    assert str(exc.value).count("\n") == 3


def test_v2_needs_token_org_bucket_and_reads_token_file(tmp_path):
    base = {"influxdb": {"api": "v2"}, "box": [{"name": "b", "kind": "vm", "ipv4": "192.0.2.1"}]}
    with pytest.raises(ConfigError) as exc:
        config.parse(base)
    assert exc.value.errors == ('influxdb.token: missing (api = "v2" needs token or token_file)',
                                'influxdb.org: missing (required for api = "v2")',
                                'influxdb.bucket: missing (required for api = "v2")')
    tok = tmp_path / "tok"
    tok.write_text("s3cret\n")
    base["influxdb"] |= {"token_file": str(tok), "org": "o", "bucket": "b"}
    cfg = config.parse(base)
    assert cfg.influxdb.token == "s3cret" and cfg.influxdb.org == "o"
    base["influxdb"]["token_file"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"influxdb.token_file: cannot read .*missing.*No such file"):
        config.parse(base, check_files=True)
    assert config.parse(base).influxdb.token is None   # without the file checks (status, report): no token


def test_no_boxes_is_an_error():
    with pytest.raises(ConfigError) as exc:
        config.parse({})
    assert exc.value.errors == ("box: no [[box]] configured (at least one is required)",)


def test_load_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read: No such file"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\ninterval = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: TOML syntax error: .*line 1"):
        config.load(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text(with_files(tmp_path))
    assert config.load(ok).source == str(ok)


def test_describe_covers_every_field_with_doc_and_default():
    docs = config.describe()
    paths = [d.path for d in docs]
    assert len(paths) == len(set(paths))
    import dataclasses
    assert len(docs) == sum(len(dataclasses.fields(cls)) for cls in
                            (*config.SECTIONS.values(), *config.SUBSECTIONS.values()))
    by = {d.path: d for d in docs}
    assert by["agent.interval"].default == 10.0 and by["agent.interval"].unit == "s"
    assert by["box[].name"].required and by["box[].tcp_ports"].type == "a list of an integer 1-65535"
    assert all(d.doc for d in docs)
    assert by["box[].remediate"].doc.endswith(", ".join(config.REMEDIATION_ACTIONS))


@pytest.mark.parametrize("text,rc,out", [
    pytest.param(GOOD_TOML, 0, "OK: 2 boxes (1 container, 1 vm)", id="ok"),
    pytest.param(GOOD_TOML.replace("interval = 10", "intervall = 10"), 2, "agent.intervall: unknown key",
                 id="bad"),
])
def test_check_config_command(tmp_path, text, rc, out):
    f = tmp_path / "c.toml"
    f.write_text(with_files(tmp_path, text))
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(f)],
                          capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))
    assert proc.returncode == rc, proc.stderr
    assert out in (proc.stdout if rc == 0 else proc.stderr)


@pytest.mark.parametrize("sections,stores", [
    pytest.param("", "no store", id="none"),
    pytest.param('[metrics]\nlisten = "127.0.0.1:9"\n', "prometheus /metrics on 127.0.0.1:9", id="metrics"),
    pytest.param('[otlp]\nendpoint = "https://c.example:4318"\n', "otlp https://c.example:4318/v1/metrics",
                 id="otlp"),
    pytest.param('[influxdb]\n[metrics]\nlisten = "127.0.0.1:9"\n',
                 "influxdb v1 http://127.0.0.1:8086, prometheus /metrics on 127.0.0.1:9", id="both"),
])
def test_check_config_names_the_stores_and_warns_when_there_is_none(tmp_path, sections, stores):
    """issue 31 item 1: stores are optional; check-config says which are on, warns (exit 0) when none is."""
    f = tmp_path / "c.toml"
    f.write_text(sections + '[[box]]\nname = "b"\nkind = "vm"\nipv4 = "192.0.2.9"\n')
    proc = subprocess.run([sys.executable, "-m", "agent", "check-config", "-c", str(f)],
                          capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))
    assert proc.returncode == 0, proc.stderr
    assert f"; {stores}; " in proc.stdout
    warned = "check-config: WARNING: no store configured" in proc.stderr
    assert warned == (stores == "no store"), proc.stderr


def test_forensics_section_defaults_and_strictness():
    from agent.core.config import ConfigError, parse

    base = {"influxdb": {"database": "vobox"},
            "box": [{"name": "b", "kind": "vm", "ipv4": "192.0.2.10"}]}
    cfg = parse(base)
    assert (cfg.forensics.enabled, cfg.forensics.ring_cycles, cfg.forensics.max_bundles) == (True, None, 200)
    cfg = parse(base | {"forensics": {"enabled": False, "ring_cycles": 7}})
    assert (cfg.forensics.enabled, cfg.forensics.ring_cycles) == (False, 7)
    with pytest.raises(ConfigError, match=r"forensics\.ring_cycle: unknown key"):
        parse(base | {"forensics": {"ring_cycle": 7}})



B1 = '[[box]] "b1" (#1, line 5)'   # the box of _one_box()


def _one_box(**keys):
    lines = ['[agent]', 'state_dir = "/tmp/vobox-test"', 'site = "CERN"', '', '[[box]]', 'name = "b1"']
    keys.setdefault("kind", "vm")
    keys.setdefault("ipv4", "192.0.2.20")
    for k, v in keys.items():
        lines.append(f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("keys, where, what", [
    pytest.param({"ipv6": "2001:db8::21%eth1"}, B1 + ".ipv6", "zone id", id="ipv6-zone"),
    pytest.param({"ipv6": "fe80::1%2"}, B1 + ".ipv6", "zone id", id="ipv6-numeric-zone"),
    pytest.param({"kind": "container", "container": "vobox 1", "network": "docknet"}, B1 + ".container",
                 "Docker container name", id="container-name-with-space"),
    pytest.param({"kind": "container", "container": "vobox1", "network": "dock\nnet"}, B1 + ".network",
                 "Docker network name", id="network-name-with-newline"),
    pytest.param({"segment": "row\n7"}, B1 + ".segment", "control characters", id="segment-newline"),
])
def test_values_that_run_could_not_use_are_refused_at_load(keys, where, what):
    """Values that parse but would break a sweep, a Docker call or line protocol fail at load, naming the key."""
    with pytest.raises(ConfigError) as err:
        config.loads(_one_box(**keys))
    assert len(err.value.errors) == 1, err.value.errors
    assert err.value.errors[0].startswith(where + ":") and what in err.value.errors[0]


def test_the_shared_zone_case_names_the_key_and_keeps_the_healthy_box_reported():
    text = case("config-ipv6-zone.toml").read_text()
    with pytest.raises(ConfigError) as err:
        config.loads(text)
    assert [e.split(":")[0] for e in err.value.errors] == ['[[box]] "vobox-vm-2" (#2, line 13).ipv6']


def test_site_with_a_line_break_is_refused():
    with pytest.raises(ConfigError) as err:
        config.loads(_one_box().replace('site = "CERN"', 'site = "CE\\nRN"'))
    assert err.value.errors[0].startswith("agent.site:")


def test_runtime_checks_run_the_probes_own_validation():
    """runtime_errors() is what parse() ends with: an accepted config plans, validates and encodes."""
    cfg = config.loads(_one_box(tcp_ports=[1093]))
    assert config.runtime_errors(cfg) == []
    broken = cfg.boxes[0].__class__(**{**{f: getattr(cfg.boxes[0], f) for f in cfg.boxes[0].__slots__},
                                       "ipv4": "2001:db8::5"})  # an IPv6 where IPv4 belongs: arp refuses it
    errs = config.runtime_errors(cfg.__class__(**{**{f: getattr(cfg, f) for f in cfg.__slots__},
                                                  "boxes": (broken,)}))
    assert errs and all(e.startswith(B1 + ".ipv4:") for e in errs), errs
