"""Run a real, throwaway InfluxDB 1.x (Debian's `influxd`) under a base directory, optionally in a netns."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from agent import netns as _netns

log = logging.getLogger(__name__)

INFLUXD = "influxd"
PIDFILE_NAME = "influxd.pid"
CONFIG_NAME = "influxd.conf"
LOG_NAME = "influxd.log"

_CONFIG_TEMPLATE = """\
# written by lab.influx; throwaway InfluxDB for the lab and tests
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{base}/meta"
  logging-enabled = false

[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
{https}
[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""

# urllib without any proxy from the environment: the lab's influxd is on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class InfluxStartError(RuntimeError):
    """influxd did not start or did not answer /ping in time."""


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _is_our_influxd(pid: int, config_path: str) -> bool:
    cmd = _cmdline(pid)
    return bool(cmd) and any(os.path.basename(c) == INFLUXD for c in cmd) and config_path in cmd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still "exists"; treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_child(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM our child PROC, SIGKILL after timeout_s, and reap it."""
    def wait(t: float) -> bool:
        try:
            proc.wait(t)
            return True
        except subprocess.TimeoutExpired:
            return False
    _terminate(proc.pid, timeout_s, wait)


def _terminate(pid: int, timeout_s: float, wait=None) -> None:
    """SIGTERM, then SIGKILL after timeout_s; `wait` reaps our own child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if wait is not None:
            if wait(0.1):
                return
        elif not _pid_alive(pid):
            return
        else:
            time.sleep(0.1)
    log.warning("influxd pid %d did not exit %.1fs after SIGTERM; sending SIGKILL", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if wait is not None:
        wait(5.0)
    else:
        end = time.monotonic() + 5.0
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.05)


def kill_stale(base_dir: str, timeout_s: float = 10.0) -> int | None:
    """Kill an influxd left running from base_dir by a crashed run (found via its pidfile); return its pid."""
    pidfile = os.path.join(base_dir, PIDFILE_NAME)
    try:
        with open(pidfile) as f:
            info = json.load(f)
        pid = int(info["pid"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        log.warning("influx pidfile %s is unreadable; removing it", pidfile)
        os.unlink(pidfile)
        return None
    config_path = os.path.join(base_dir, CONFIG_NAME)
    killed = None
    if _pid_alive(pid) and _is_our_influxd(pid, config_path):
        log.info("killing stale influxd pid %d of %s", pid, base_dir)
        _terminate(pid, timeout_s)
        killed = pid
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    return killed


class InfluxServer:
    """One influxd with its own config, data and log under base_dir, listening on 127.0.0.1:http_port."""

    def __init__(self, base_dir: str, netns: str | None = None, http_port: int = 8086,
                 tls: tuple[str, str] | None = None) -> None:
        """tls: (certificate PEM, private key PEM) to serve HTTPS instead of HTTP."""
        self.base_dir = os.path.abspath(base_dir)
        self.netns = netns
        self.http_port = http_port
        self.tls = tls
        self.config_path = os.path.join(self.base_dir, CONFIG_NAME)
        self.log_path = os.path.join(self.base_dir, LOG_NAME)
        self.pidfile = os.path.join(self.base_dir, PIDFILE_NAME)
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"InfluxServer(base_dir={self.base_dir!r}, netns={self.netns!r}, url={self.url!r}, pid={self.pid})"

    def __enter__(self) -> InfluxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, reachable from inside the server's network namespace."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        """Process id of influxd while started, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while our influxd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def write_config(self) -> str:
        """Write the config file (and the data dirs) under base_dir; return its path."""
        for sub in ("meta", "data", "wal"):
            os.makedirs(os.path.join(self.base_dir, sub), exist_ok=True)
        https = ""
        if self.tls:
            https = (f'  https-enabled = true\n  https-certificate = "{os.path.abspath(self.tls[0])}"\n'
                     f'  https-private-key = "{os.path.abspath(self.tls[1])}"\n')
        text = _CONFIG_TEMPLATE.format(base=self.base_dir, http_port=self.http_port,
                                       rpc_port=self.http_port + 2, https=https)
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    def start(self, timeout_s: float = 30.0) -> None:
        """Start influxd and wait until /ping answers 204; raise InfluxStartError otherwise."""
        if self.running:
            return
        os.makedirs(self.base_dir, exist_ok=True)
        kill_stale(self.base_dir)
        if self.ping():
            raise InfluxStartError(f"something already answers at {self.url} (netns {self.netns or '-'}); "
                                   f"pick another http_port")
        self.write_config()
        argv = [INFLUXD, "-config", self.config_path]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            with open(self.log_path, "ab") as logf:  # influxd holds its own copy of the descriptor
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              close_fds=True)
        except FileNotFoundError as exc:
            raise InfluxStartError(f"cannot run {argv[0]!r}: {exc} (apt-get install influxdb)") from None
        tmp = self.pidfile + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": self._proc.pid, "netns": self.netns, "http_port": self.http_port}, f)
        os.replace(tmp, self.pidfile)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._proc = None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.pidfile)
                raise InfluxStartError(f"influxd exited with {rc} during start; log tail:\n{self._log_tail()}")
            if self.ping():
                log.info("influxd pid %d up at %s (netns %s)", self._proc.pid, self.url, self.netns or "-")
                return
            if time.monotonic() > deadline:
                self.stop()
                raise InfluxStartError(f"influxd did not answer /ping within {timeout_s:.0f}s; "
                                       f"log tail:\n{self._log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM influxd, SIGKILL after timeout_s, wait for it; a no-op when not running."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_child(proc, timeout_s)
            log.info("influxd pid %d stopped (rc %s)", proc.pid, proc.returncode)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pidfile)

    def _request(self, method: str, path: str, params: dict | None = None, timeout_s: float = 5.0):
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        ctx = _netns.entered(self.netns) if self.netns else contextlib.nullcontext()
        with ctx:
            if self.tls:
                # the lab talks to its own influxd on loopback; the agent side is what verifies certificates
                tls_ctx = ssl.create_default_context()
                tls_ctx.check_hostname = False
                tls_ctx.verify_mode = ssl.CERT_NONE
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                     urllib.request.HTTPSHandler(context=tls_ctx))
                return opener.open(req, timeout=timeout_s)
            return _OPENER.open(req, timeout=timeout_s)

    def ping(self, timeout_s: float = 1.0) -> bool:
        """True when /ping answers 204 (checked from inside the namespace)."""
        try:
            with self._request("GET", "/ping", timeout_s=timeout_s) as resp:
                return resp.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def query(self, q: str, db: str | None = None, timeout_s: float = 10.0) -> dict:
        """Run an InfluxQL statement via POST /query and return the decoded JSON."""
        params = {"q": q}
        if db:
            params["db"] = db
        try:
            with self._request("POST", "/query", params, timeout_s) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"influx query {q!r} failed: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def create_database(self, name: str) -> None:
        """CREATE DATABASE name (idempotent)."""
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        result = self.query(f'CREATE DATABASE "{quoted}"')
        for res in result.get("results", []):
            if "error" in res:
                raise RuntimeError(f"create database {name!r}: {res['error']}")

    def _log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no log)"
