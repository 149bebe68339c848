"""Run `vobox-agent` in this process (agent.cli.main) and capture its exit code, stdout and stderr."""
from __future__ import annotations

import contextlib
import io
import socket

from agent import cli


def run_cli(argv: list[str]) -> tuple[int | str | None, str, str]:
    """(exit code, stdout, stderr) of `vobox-agent ARGV`; argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str | None = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def dead_port() -> int:
    """A loopback TCP port with no listener (bound, then closed): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_config(path, state_dir, influx_url: str) -> str:
    """Write a one-VM config (192.0.2.5, no remediation hook) with InfluxDB at INFLUX_URL; its path."""
    path.write_text(f'[agent]\nstate_dir = "{state_dir}"\n\n[influxdb]\nurl = "{influx_url}"\nwrite_timeout = "1s"\n\n'
                    '[[box]]\nname = "v"\nkind = "vm"\nipv4 = "192.0.2.5"\n')
    return str(path)
