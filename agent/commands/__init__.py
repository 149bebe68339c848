"""One module per `vobox-agent` subcommand; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

EXIT_BAD_CONFIG = 2

# The config a command reads when -c is not given (issue 33): $VOBOX_AGENT_CONFIG, else DEFAULT_CONFIG, as
# Telegraf (/etc/telegraf/telegraf.conf, $TELEGRAF_CONFIG_PATH) and Prometheus do. Tests set the variable,
# so nothing reads this machine's /etc.
CONFIG_ENV = "VOBOX_AGENT_CONFIG"
DEFAULT_CONFIG = "/etc/vobox-agent/agent.toml"
CONFIG_HELP = f"agent config (TOML); default ${CONFIG_ENV}, else {DEFAULT_CONFIG}"

# Exit codes every command keeps to (each command's --help and the operator guide list its own meaning of 1):
EXIT_OK = 0
EXIT_FAILED = 1          # the command ran and something failed: a server unreachable, a check failed, a box down
EXIT_USAGE = 2           # bad arguments or config (said in one line each, before anything acted)
EXIT_UNRECORDED = 3      # remediate only: the action ran but its record is not in InfluxDB
EXIT_CODES = (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNRECORDED)
# What to check when InfluxDB cannot be read or written (after "what was tried": the URL and the reason).
INFLUX_CHECK = ("check that InfluxDB runs there and the config's [influxdb] url, database or bucket and credentials "
                "(`vobox-agent doctor` tests them)")


def add_config_option(p: argparse.ArgumentParser, help: str = CONFIG_HELP) -> None:
    """-c/--config FILE, not required: without it the command reads the default (`default_config`)."""
    p.add_argument("-c", "--config", metavar="FILE", default=None, help=help)


def default_config(environ: Mapping[str, str] | None = None, default: str | None = None) -> tuple[str, str]:
    """(path, where it came from) when -c is not given: $VOBOX_AGENT_CONFIG when set and not empty, else DEFAULT."""
    env = os.environ if environ is None else environ
    chosen = env.get(CONFIG_ENV, "")
    if chosen:
        return chosen, f"${CONFIG_ENV}"
    return (DEFAULT_CONFIG if default is None else default), "the default"


def optional_config(given: str | None) -> str | None:
    """For a command that works without a config: -c FILE, else the default only when that file exists (said on
    stderr), else None."""
    if given is not None:
        return given
    path, source = default_config()
    if not os.path.isfile(path):
        return None
    print(f"vobox-agent: reading config {path} ({source}; -c FILE to choose another)", file=sys.stderr)
    return path


def load_config(path: str | None, *, check_files: bool = True) -> Any:
    """The validated Config, or None after printing every error (one a line) to stderr; callers exit 2.

    PATH None (no -c): the default config (`default_config`), said on stderr in one line; a missing default is
    one line saying what was looked for and how to write one. check_files=False for commands that only read what
    the agent stored (see agent.core.config.load).
    """
    from agent.core import config

    if path is None:
        path, source = default_config()
        if not os.path.isfile(path):
            print(f"vobox-agent: no config: -c FILE not given and {path} ({source}) "
                  f"{'is not a file' if os.path.exists(path) else 'does not exist'}; write one with "
                  f"`vobox-agent init --output {path}` or set ${CONFIG_ENV}", file=sys.stderr)
            return None
        print(f"vobox-agent: reading config {path} ({source}; -c FILE to choose another)", file=sys.stderr)
    try:
        cfg = config.load(path, check_files=check_files)
    except config.ConfigError as exc:
        n = len(exc.errors)
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return None
    from agent.ops import logs

    logs.protect(logs.config_secrets(cfg))   # before anything can log a password or token
    return cfg


def seconds(text: str) -> float:
    """A number of seconds ('1.5') or a duration with units ('500ms', '2m'; agent.timeparse): the command line's
    seconds options read like the config's. ValueError when neither."""
    from agent.timeparse import parse_duration_s

    try:
        return float(text)
    except ValueError:
        return parse_duration_s(text)


def number_in(convert: Callable[[str], float], low: float, high: float, what: str, *,
              low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: TEXT converted (int or float), finite and within [low, high] ((low, high] with low_open).

    The error names WHAT is expected, e.g. "a timeout in seconds > 0 and <= 60", and the text given.
    """
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        above_low = value > low if low_open else value >= low
        if not (math.isfinite(value) and above_low and value <= high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def engine_problem(exc: BaseException, configured: str | None = None) -> str:
    """One line for a container engine that could not be asked: which socket and why it was chosen
    (agent.engines.client.choose_socket: CONFIGURED, the config's [engine] socket, else DOCKER_HOST ...), the reason
    in a few words, and what to check."""
    from agent.engines.client import NoEngineSocket, choose_socket
    from agent.storage.influx import transport_reason

    hint = ("check that dockerd (or podman.socket) runs and that this user may use its socket ([engine] socket or "
            "DOCKER_HOST chooses another)")
    if isinstance(exc, NoEngineSocket):
        return f"cannot ask the container engine: {exc}; {hint}"
    try:
        where = str(choose_socket(os.environ, configured))
    except NoEngineSocket:
        where = "its socket"
    return f"cannot ask the container engine at {where}: {transport_reason(exc)}; {hint}"


def unreachable_problem(exc: BaseException) -> str | None:
    """One line for a server the command could not reach or understand (InfluxDB, Prometheus, the container engine,
    the webhook: requests, urllib3, docker-py or socket errors, the storage's own errors), else None: anything else
    is a bug and keeps its traceback (agent.cli)."""
    from agent.storage.influx import transport_reason

    module = type(exc).__module__.split(".")[0]
    if module == "docker":
        return engine_problem(exc)
    name = type(exc).__name__
    if module in ("requests", "urllib3", "http") or name in ("QueryError", "SinkError") \
            or isinstance(exc, (ConnectionError, TimeoutError)):
        detail = " ".join(str(exc).split()) if name in ("QueryError", "SinkError") else transport_reason(exc)
        return f"a server did not answer as expected: {detail}; check the addresses in the config (`vobox-agent doctor`)"
    return None


def countdown(wait_s: float, what: str, *, stream: TextIO | None = None, clock: Callable[[], float] | None = None,
              sleep: Callable[[float], None] | None = None, tick_s: float = 1.0) -> None:
    """Wait WAIT_S seconds for WHAT (e.g. "vm1 to answer icmp, arp"), saying so on STREAM (default stderr): on a terminal
    one line redrawn every TICK_S with the seconds left; otherwise one line when it starts and one when it ends
    (a log or a pipe gets no redraws).

    CLOCK (monotonic seconds, default time.monotonic) and SLEEP (default time.sleep) are injected for tests; the
    wait ends at start + WAIT_S by CLOCK.
    """
    import time

    stream = sys.stderr if stream is None else stream
    clock = time.monotonic if clock is None else clock
    sleep = time.sleep if sleep is None else sleep
    tty = bool(getattr(stream, "isatty", lambda: False)())
    end = clock() + max(0.0, wait_s)
    if not tty:
        print(f"verify: waiting {wait_s:g} s for {what}", file=stream, flush=True)
    while (left := end - clock()) > 0:
        if tty:
            stream.write(f"\rverify: {math.ceil(left)} s left, waiting for {what}\x1b[K")
            stream.flush()
        sleep(min(tick_s, left))
    done = f"verify: waited {wait_s:g} s for {what}; re-probing"
    if tty:
        stream.write(f"\r{done}\x1b[K\n")
        stream.flush()
    else:
        print(done, file=stream, flush=True)


def influx_unreadable(exc: BaseException, where: str = "") -> str:
    """Why InfluxDB could not be read, in one line: a config without [influxdb] says only that (nothing runs
    there to check); any other failure names WHERE (the URL, may be empty), the reason and what to check."""
    from agent.storage.read import NoInfluxDB

    if isinstance(exc, NoInfluxDB):
        return str(exc)
    return f"cannot read InfluxDB{' ' + where if where else ''}: {exc}; {INFLUX_CHECK}"


def influx_reason(exc: BaseException) -> str:
    """A write's failure in one line without a query string: a SinkError's own text (it names the URL and the
    reason), else the transport reason of agent.storage.influx."""
    from agent.storage.influx import SinkError, transport_reason

    if isinstance(exc, SinkError):
        return " ".join(str(exc).split())
    return transport_reason(exc)
