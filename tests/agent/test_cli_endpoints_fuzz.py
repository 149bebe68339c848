"""Every subcommand against servers that refuse, time out or answer garbage: a documented exit code, one-line
errors, no traceback, no query string (issue 33 item 3).

Hypothesis draws, per example, the command's arguments and what the servers do: InfluxDB's URL and DOCKER_HOST
point at a loopback port that refuses, at one that accepts and never answers, or at one that answers the bytes
hypothesis chose (not HTTP, HTTP with any status and body, JSON of the wrong shape); `report --prometheus` reads
the same server as a Prometheus query API. Commands run in this process
(agent.cli.main). Nothing leaves the machine: every server is on 127.0.0.1; `probe` gets no ADDRESS and no config
(it never sends a packet), `remediate` always has --no-verify (no re-probe), and `run` (which probes) is left out.
The container engine is never the silent server in the draws (docker-py's own timeout is 10-60 s):
`test_a_silent_engine_is_one_line` covers it once.

200 examples per command under CI=true, 20 otherwise; the time is printed at the end of the module.
"""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent.commands import EXIT_CODES
from tests.agent.commands.cli_helpers import dead_port, run_cli

EXAMPLES = 200 if os.environ.get("CI") == "true" else 20
TIMEOUT = "200ms"   # [influxdb] write_timeout: the silent server costs this much per request


class ScriptedServer:
    """A loopback TCP server: each connection gets `reply` (bytes) after the request, or, when reply is None, no
    answer until the server stops (the client's timeout ends it)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.reply: bytes | None = b""
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn, self.reply), daemon=True).start()

    def _answer(self, conn: socket.socket, reply: bytes | None) -> None:
        try:
            conn.settimeout(2)
            conn.recv(65536)
            if reply is None:
                self.held.append(conn)   # never answered; closed when the server stops
                self.stop.wait()
                return
            conn.sendall(reply)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def servers():
    silent, talker = ScriptedServer(), ScriptedServer()
    silent.reply = None
    t0 = time.monotonic()
    yield {"refuse": dead_port(), "silent": silent, "garbage": talker}
    silent.close()
    talker.close()
    print(f"\ntest_cli_endpoints_fuzz: {time.monotonic() - t0:.1f} s for {EXAMPLES} examples per command")


_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
_json_shapes = st.sampled_from([b'{"results": [{"series": [{"name": "box"}]}]}', b'{"results": 5}', b"[]", b"null",
                                b'{"results": [{"error": "boom"}]}', b'{"ApiVersion": 1}', b'{"results": [{}]}'])
_garbage = st.one_of(
    st.binary(max_size=64),
    st.tuples(st.sampled_from([200, 204, 301, 400, 401, 404, 500, 503]), st.one_of(st.binary(max_size=40),
                                                                                    _json_shapes)).map(
        lambda t: b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (t[0], len(t[1]), t[1])),
)
# (which server, the garbage it answers): the silent one only for InfluxDB (see the module docstring)
_endpoint = st.one_of(st.just(("refuse", None)), st.just(("silent", None)), st.tuples(st.just("garbage"), _garbage))
_durations = st.one_of(st.sampled_from(["1h", "7d", "500ms", "0s", "1h30m", "-1h", "nan", ""]), _text)


def _config(tmp_path, influx_port: int, n: int) -> str:
    """A VM box `v` (command hook `true`: runs here, harmlessly) and a container box `c`, InfluxDB on the port."""
    state = tmp_path / f"state{n}"
    path = tmp_path / f"agent{n}.toml"
    path.write_text(f'[agent]\nstate_dir = "{state}"\ntimeout = "200ms"\n\n[influxdb]\n'
                    f'url = "http://127.0.0.1:{influx_port}"\nwrite_timeout = "{TIMEOUT}"\n\n'
                    '[remediation]\nenabled = true\nverify = "1s"\n\n'
                    '[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.5"\nremediate = ["command"]\ncommand = ["true"]\n\n'
                    '[[box]]\nname = "c"\nkind = "container"\ncontainer = "vbx-fuzz-none"\nnetwork = "vbx-fuzz-net"\n'
                    'ipv4 = "192.0.2.6"\nremediate = ["reconnect_network", "restart_container"]\n')
    return str(path)


def _flags(*names: str):
    return st.lists(st.sampled_from(names), unique=True, max_size=len(names))


def _args(command: str, cfg: str, out: str, url: str | None):
    """The strategy of COMMAND's arguments (its options drawn in any combination, some values garbage); URL: the
    drawn server as an HTTP URL (report --prometheus), None for the silent one (the Prometheus reader waits its
    60 s query timeout there: `test_a_silent_prometheus_is_one_line` covers it once)."""
    c = ["-c", cfg]
    if command == "check-config":
        return st.tuples(st.sampled_from([c, c + ["--json"], ["--json"], ["--schema"]]))
    if command == "doctor":
        return st.tuples(st.just(c), _flags("--json", "--create-database"))
    if command == "status":
        return st.tuples(st.just(c), _flags("--json", "--check"))
    if command == "events":
        return st.tuples(st.just(c), st.tuples(st.just("--since"), _durations), _flags("--json"),
                         st.sampled_from([[], ["--box", "v"], ["--box", "nope"]]))
    if command == "report":
        return st.tuples(st.just(c), st.tuples(st.just("--since"), _durations), _flags("--json"),
                         st.sampled_from([[], ["--until", "2026-10-25T02:30:00+02:00"], ["--until", "x"],
                                          ["--html", out]] + ([] if url is None else [
                                              ["--prometheus", url, "--site", "s"],
                                              ["--prometheus", url, "--all-sites"], ["--prometheus", url]])))
    if command == "evidence":
        return st.tuples(st.just(c), st.tuples(st.just("--since"), _durations), _flags("--json"),
                         st.sampled_from([[], ["v"], ["show", out]]))
    if command == "maintenance":
        return st.tuples(st.sampled_from([["start"], ["end"], ["list"]]), st.just(c),
                         st.sampled_from([["v"], ["--all"], ["nope"], []]), _flags("--json"),
                         st.sampled_from([[], ["--for", "10m"], ["--for", "-1"], ["--reason", "kernel"]]))
    if command == "remediate":
        actions = st.sampled_from(["command", "restart_container", "reconnect_network", "exec", "reboot"])
        return st.tuples(st.just(c), st.sampled_from([["v"], ["c"], ["reset"], ["nope"]]), actions.map(lambda a: [a]),
                         st.just(["--no-verify"]), _flags("--dry-run", "--json"),
                         st.sampled_from([[], ["--force", "--reason", "test"], ["--force"]]))
    if command == "discover":
        return st.tuples(st.sampled_from([c, []]), _flags("--json"))
    if command == "init":
        return st.tuples(st.sampled_from([["--output", out], ["--output", out, "--force"], []]))
    if command == "audit":   # never --try --yes (it would start containers); the engine is one of ours
        return st.tuples(st.sampled_from([c, []]), st.sampled_from([[], ["c"], ["nope"], ["--suggest", "c"],
                                                                     ["--suggest", "c", "--try"]]), _flags("--json"))
    if command == "probe":   # no ADDRESS and no config: it never sends a packet
        return st.tuples(st.sampled_from([[], ["--probe", "icmp"], ["--probe", "tcp", "--port", "80"], ["--json"],
                                          ["--timeout", "0"], ["--port", "x"]]))
    raise AssertionError(command)


COMMANDS = ["check-config", "doctor", "status", "events", "report", "evidence", "maintenance", "remediate",
            "discover", "init", "probe", "audit"]


def test_every_command_but_run_is_fuzzed():
    from agent.cli import COMMANDS as ALL

    assert sorted(set(ALL) - set(COMMANDS)) == ["run"]


def _check(argv: list[str]) -> None:
    code, out, err = run_cli(argv)
    assert "Traceback" not in err, (argv, err)
    assert code in EXIT_CODES, (argv, code, err)
    for line in err.splitlines() + out.splitlines():   # doctor says its failures on stdout
        assert "?q=" not in line and "SELECT " not in line, (argv, line)   # no query string
        assert "HTTPConnectionPool" not in line and "Max retries" not in line, (argv, line)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_server_failure_gives_a_traceback(command, servers, tmp_path, monkeypatch):
    import agent.report.read as report_read

    monkeypatch.setattr(report_read, "MIN_QUERY_TIMEOUT_S", 0.2)   # the report's 30 s floor, for a silent server
    counter = iter(range(10**9))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(endpoint=_endpoint, data=st.data())
    def check(endpoint, data):
        kind, reply = endpoint
        n = next(counter)
        port = servers["refuse"] if kind == "refuse" else servers[kind].port
        if kind == "garbage":
            servers["garbage"].reply = reply
        engine = servers["refuse"] if kind == "silent" else port
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{engine}")
        cfg = _config(tmp_path, port, n)
        url = None if kind == "silent" else f"http://127.0.0.1:{port}"
        parts = data.draw(_args(command, cfg, str(tmp_path / f"out{n}"), url))
        _check([command] + [a for part in parts for a in (part if isinstance(part, (list, tuple)) else [part])])

    check()


def test_a_silent_engine_is_one_line(servers, monkeypatch):
    """The engine accepts and never answers: docker-py's timeout (10 s for discover), then one line, exit 1."""
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{servers['silent'].port}")
    code, out, err = run_cli(["discover"])
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.strip() == (f"vobox-agent discover: cannot ask the container engine at tcp://127.0.0.1:"
                           f"{servers['silent'].port} (from DOCKER_HOST): no answer within the timeout (timed out); "
                           "check that dockerd (or podman.socket) runs and that this user may use its socket "
                           "([engine] socket or DOCKER_HOST chooses another)")


def test_a_silent_prometheus_is_one_line(servers, monkeypatch):
    """report --prometheus against a server that accepts and never answers: the reader's timeout, one line, exit 1."""
    import agent.report.prom as prom

    real = prom.http_fetch
    monkeypatch.setattr(prom, "http_fetch", lambda url, headers=None, **kw: real(url, headers, timeout_s=0.3))
    url = f"http://127.0.0.1:{servers['silent'].port}"
    code, out, err = run_cli(["report", "--prometheus", url, "--site", "s"])
    assert code == 1 and out == "" and "Traceback" not in err, (code, err)
    [line] = err.strip().splitlines()
    assert line.startswith(f"vobox-agent report: cannot read Prometheus: POST {url}/api/v1/query") and \
        "timed out" in line, line


@pytest.mark.parametrize("server, expect", [
    pytest.param("refuse", "connection refused (nothing listens there)", id="refused"),
    pytest.param("silent", "no answer within the timeout (timed out)", id="timed-out"),
    pytest.param(b"garbage\r\n\r\n", "the connection was closed without an HTTP answer", id="not-http"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{not json", "the answer is not InfluxDB's /query JSON",
                 id="not-json"),
])
@pytest.mark.parametrize("argv", [["events", "--since", "1h"], ["report"], ["status"]])
def test_influxdb_failures_are_one_line_with_what_was_tried_and_what_to_check(server, expect, argv, servers, tmp_path,
                                                                              monkeypatch):
    import agent.report.read as report_read

    monkeypatch.setattr(report_read, "MIN_QUERY_TIMEOUT_S", 0.2)
    if isinstance(server, bytes):
        servers["garbage"].reply = server
        port = servers["garbage"].port
    else:
        port = servers["refuse"] if server == "refuse" else servers[server].port
    code, out, err = run_cli(argv + ["-c", _config(tmp_path, port, 0)])
    assert code == 1 and out == "", (code, out, err)
    [line] = err.strip().splitlines()
    assert f"query http://127.0.0.1:{port}: {expect}" in line, line
    assert line.endswith("check that InfluxDB runs there and the config's [influxdb] url, database or bucket and "
                         "credentials (`vobox-agent doctor` tests them)"), line


def test_an_unexpected_error_still_escapes(monkeypatch):
    """Only server failures become one line: a bug keeps its traceback (STYLE: only expected failures are caught)."""
    import agent.commands.check_config as cc

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cc, "run", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(["check-config", "--schema"])
