"""agent.cli: no command-line input ends in a traceback; every outcome is an exit code 0, 1 or 2.

Hypothesis generates the arguments of every command that only reads (events, report, status,
evidence, probe without targets, check-config, doctor on a VM-only config). InfluxDB is a loopback
port nobody listens on, so every read fails at once (exit 1) and nothing leaves the machine; probe
gets no ADDRESS and no -c, so it never sends a packet. `run` and `remediate` act on the world and are
not generated here (their arguments are tested in their own tests).
"""
from __future__ import annotations

import contextlib
import io
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent import cli

EXAMPLES = 25  # per option (about 500 in all); the whole file runs in seconds


def _dead_port() -> int:
    """A loopback TCP port with no listener (bound, then closed): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A config (one VM box, InfluxDB on a dead loopback port), a state dir, a path for --html."""
    d = tmp_path_factory.mktemp("fuzz")
    state = d / "state"
    state.mkdir()
    cfg = d / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{state}"\n\n[influxdb]\nurl = "http://127.0.0.1:{_dead_port()}"\n'
                   'write_timeout = 1\n\n[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.5"\n')
    return {"cfg": str(cfg), "state": str(state), "html": str(d / "report.html"), "missing": str(d / "no.toml")}


# Text a shell can pass: no NUL, no lone surrogates.
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=16)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "Infinity", "1e999", "-0", "0", "0x10", "1_000", " 5 ", ""]),
)
_durations = st.one_of(
    st.from_regex(r"\A[0-9]{1,30}(\.[0-9]{1,6})?[smhdwSMHDW]([0-9]{1,4}[smhdw])?\Z"),
    st.sampled_from(["1h30m", "24H", "90m", "7d", "0s", "inf", "nan", "1e9s", "-1h", "h", "1.5.5h"]),
    _numbers, _text,
)
_times = st.one_of(
    st.datetimes().map(lambda t: t.isoformat()).flatmap(
        lambda t: st.sampled_from([t, t + "Z", t + "+02:00", t + "-14:00", t + "+99:00"])),
    st.sampled_from(["2026-10-25T02:30:00+02:00", "inf", "nan", "-1", "1e300", "253402300800", "yesterday"]),
    _numbers, _text,
)


def _global_values() -> dict[str, st.SearchStrategy]:
    levels = st.one_of(st.sampled_from(["DEBUG", "info", "WARNING", "5", "-1", "NOPE"]), _text)
    # --netns: only names that cannot exist (this process must not enter a real namespace)
    netns = st.one_of(st.sampled_from(["vbx-fuzz-none", "../x", "a/b", ".", "..", "", "/proc/self/ns/net"]),
                      _text.map(lambda t: "vbx-fuzz-none-" + t.replace("/", "")))
    return {"--log-level": levels, "--netns": netns}


def _cases(workdir) -> list[tuple[str, list[str], str, st.SearchStrategy]]:
    """(command, valid arguments, the option fuzzed, its values): one option at a time, the others valid."""
    cfg = ["-c", workdir["cfg"]]
    configs = st.sampled_from([workdir["cfg"], workdir["missing"], workdir["state"], "", "-"])
    cases = [
        ("events", cfg + ["--since", "1h"], "--since", _durations),
        ("events", cfg + ["--since", "1h"], "--box", st.one_of(st.just("v"), _text)),
        ("events", ["--since", "1h"], "-c", configs),
        ("report", cfg + ["--since", "1d"], "--since", _durations),
        ("report", cfg + ["--since", "1d"], "--until", _times),
        ("report", cfg + ["--since", "1d"], "--html", st.sampled_from([workdir["html"], "/nonexistent/x", ""])),
        ("report", ["--since", "1d"], "-c", configs),
        ("status", [], "-c", configs),
        ("evidence", ["--state-dir", workdir["state"]], "--since", _durations),
        ("evidence", ["--state-dir", workdir["state"]], "--packets", _numbers),
        ("evidence", [], "-c", configs),
        ("evidence", ["show"], "--packets", _numbers),
        ("probe", [], "--timeout", _numbers),
        ("probe", [], "--port", st.one_of(_numbers, st.just("22,80"), _text)),
        ("probe", [], "--probe", st.one_of(st.sampled_from(["icmp", "tcp", "arp,ndp", "bogus", ""]), _text)),
        ("check-config", [], "-c", configs),
        ("doctor", [], "-c", configs),
    ]
    for flag, values in _global_values().items():
        cases.append(("status", cfg, flag, values))
    return cases


def _run(argv: list[str]) -> tuple[int | str | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str | None = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors, a missing namespace
            code = exc.code
    return code, err.getvalue()


def _check(argv: list[str]) -> None:
    code, err = _run(argv)
    assert "Traceback" not in err, (argv, err)
    if isinstance(code, str):  # SystemExit("message"): one line, exit status 1
        assert "\n" not in code.strip(), (argv, code)
    else:
        assert code in (0, 1, 2, None), (argv, code, err)


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CASE_IDS = [f"{c}{' ' + ' '.join(v) if v and v[0] != '-c' else ''} {f}" for c, v, f, _ in _cases(
    {"cfg": "", "state": "", "html": "", "missing": ""})]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_no_option_value_gives_a_traceback(index, workdir):
    """Every option of every read-only command, one at a time with the others valid."""
    command, valid, flag, values = _cases(workdir)[index]
    is_global = flag in _global_values()

    @_SETTINGS
    @given(values)
    def check(value):
        if is_global:
            _check([flag, value, command] + valid)
        elif command == "evidence" and valid[:1] == ["show"]:
            _check([command, flag, value, "show", workdir["state"]])
        else:
            _check([command] + valid + [flag, value])

    check()


def test_evidence_words_give_no_traceback(workdir):
    """BOX / show PATH, in any number and order."""
    @_SETTINGS
    @given(st.lists(st.one_of(st.just("show"), st.just(workdir["state"]), st.just("--json"), _text), max_size=4))
    def check(words):
        _check(["evidence", "--state-dir", workdir["state"]] + words)

    check()


@pytest.mark.parametrize("argv, message", [
    pytest.param(["events", "--since", "1h30m"], None, id="compound-duration-works"),
    pytest.param(["events", "--since", "24H"], "--since: duration '24H'", id="upper-case-unit"),
    pytest.param(["report", "--since", "7d", "--until", "2026-10-25T02:30:00+02:00"], None, id="iso-until-works"),
    pytest.param(["report", "--since", "7d", "--until", "inf"], "--until: time 'inf'", id="until-inf"),
    pytest.param(["report", "--since", "7d", "--until", "nan"], "--until: time 'nan'", id="until-nan"),
    pytest.param(["report", "--until", "2026-10-25T02:30:00"], "give a UTC offset", id="until-naive"),
    pytest.param(["evidence", "--packets", "0"], "expected a number of packets", id="packets-zero"),
    pytest.param(["probe", "--timeout", "inf", "127.0.0.1"], "expected a timeout in seconds", id="timeout-inf"),
    pytest.param(["probe", "--timeout", "nan", "127.0.0.1"], "expected a timeout in seconds", id="timeout-nan"),
])
def test_the_cases_of_cli_times(argv, message, workdir):
    """tests/cases/cli-times.txt: a one-line usage error with exit 2 each, or it works (exit 1: no InfluxDB)."""
    argv = argv[:1] + (["-c", workdir["cfg"]] if argv[0] in ("events", "report") else []) + argv[1:]
    code, err = _run(argv)
    if message is None:
        assert code == 1 and "127.0.0.1" in err and "Traceback" not in err, (code, err)
    else:
        assert code == 2 and message in err, (code, err)
        # one line says what is wrong; argparse puts its usage lines before it
        assert [line for line in err.splitlines() if message in line] == [err.strip().splitlines()[-1]], err
        assert "Traceback" not in err, err

