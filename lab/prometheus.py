"""Run Debian's Prometheus (2.42) and Alertmanager (0.25) for the lab, inside its monitor namespace.

Prometheus scrapes the agent's /metrics and evaluates prometheus/vobox-rules.yml every
`interval_s`; Alertmanager sends VoboxBoxFrozen to the agent's webhook with the bearer token
(http_config.authorization.credentials_file). Both run under base_dir (in the lab's run dir),
so a crashed run's cleanup (lab.cleanup: processes in the namespace, processes naming the run
dir) removes them as it removes influxd.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from agent import netns as _netns
from lab.influx import _cmdline, _pid_alive, _terminate, stop_child

log = logging.getLogger(__name__)

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
RULES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "prometheus", "vobox-rules.yml")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusStartError(RuntimeError):
    """prometheus or alertmanager did not start or did not become ready in time."""


def _yaml(obj: object) -> str:
    """JSON is YAML: the configs are written without a YAML library."""
    return json.dumps(obj, indent=2) + "\n"


def _is_ours(pid: int, binary: str, base_dir: str) -> bool:
    cmd = _cmdline(pid)
    return any(os.path.basename(c) == binary for c in cmd) and any(base_dir in c for c in cmd)


def kill_stale(base_dir: str, timeout_s: float = 10.0) -> list[int]:
    """Kill the prometheus/alertmanager a crashed run left under base_dir (found via pidfiles); return their pids."""
    killed = []
    for name in (PROMETHEUS, ALERTMANAGER):
        pidfile = os.path.join(base_dir, f"{name}.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except FileNotFoundError:
            continue
        except ValueError:
            pid = 0
        if pid and _pid_alive(pid) and _is_ours(pid, name, base_dir):
            _terminate(pid, timeout_s)
            killed.append(pid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile)
    return killed


class PrometheusStack:
    """Prometheus scraping `target` (host:port in netns) and an Alertmanager posting to `webhook_url`.

    token_file: the webhook's bearer token; interval_s: scrape and rule evaluation interval; tls: Alertmanager's
    http_config.tls_config for an https:// webhook_url ({"ca_file", "cert_file", "key_file"}), or None.
    """

    def __init__(self, base_dir: str, netns: str | None, target: str, webhook_url: str, token_file: str, *,
                 interval_s: float = 1.0, prometheus_port: int = 9090, alertmanager_port: int = 9093,
                 rules: str = RULES, tls: dict[str, str] | None = None, scrape: dict | None = None,
                 target_labels: dict[str, str] | None = None) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.netns = netns
        self.target = target
        # several agents (e.g. two sites) scraped by one Prometheus: "host:port,host:port"
        self.scrape_targets = [t.strip() for t in target.split(",") if t.strip()]
        self.webhook_url = webhook_url
        self.token_file = os.path.abspath(token_file)
        self.interval_s = interval_s
        self.prometheus_port = prometheus_port
        self.alertmanager_port = alertmanager_port
        self.rules = os.path.abspath(rules)
        self.tls = {k: os.path.abspath(v) for k, v in (tls or {}).items()}
        self.scrape = dict(scrape or {})                    # more keys of the scrape config (authorization, ...)
        self.target_labels = dict(target_labels or {})      # static_configs labels (e.g. site)
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def prometheus_url(self) -> str:
        """Prometheus base URL, reachable inside the namespace."""
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager base URL, reachable inside the namespace."""
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def write_configs(self) -> tuple[str, str]:
        """prometheus.yml and alertmanager.yml under base_dir; return their paths."""
        os.makedirs(self.base_dir, exist_ok=True)
        every = f"{max(1, int(round(self.interval_s * 1000)))}ms"
        prom = {
            "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": every},
            "rule_files": [self.rules],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}]},
            "scrape_configs": [{"job_name": "vobox-agent", **self.scrape, "static_configs": [
                {"targets": self.scrape_targets, **({"labels": self.target_labels} if self.target_labels else {})}]}],
        }
        am = {
            "route": {"receiver": "null", "group_by": ["alertname", "box"], "group_wait": "0s",
                      "group_interval": "1s", "repeat_interval": "1h",
                      # only box alerts carry `box`: the webhook refuses a payload with a firing alert without it
                      "routes": [{"receiver": "vobox-agent", "matchers": ['alertname="VoboxBoxFrozen"']}]},
            "receivers": [
                {"name": "null"},
                {"name": "vobox-agent", "webhook_configs": [{
                    "url": self.webhook_url, "send_resolved": False,
                    "http_config": {"authorization": {"type": "Bearer", "credentials_file": self.token_file},
                                    **({"tls_config": self.tls} if self.tls else {})}}]},
            ],
        }
        paths = (os.path.join(self.base_dir, "prometheus.yml"), os.path.join(self.base_dir, "alertmanager.yml"))
        for path, obj in zip(paths, (prom, am), strict=True):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(_yaml(obj))
        return paths

    def _spawn(self, name: str, argv: list[str]) -> None:
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            with open(os.path.join(self.base_dir, f"{name}.log"), "ab") as logf:  # the server holds its own copy
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                        start_new_session=True, close_fds=True)
        except FileNotFoundError as exc:
            raise PrometheusStartError(f"cannot run {argv[0]!r}: {exc} (apt-get install prometheus "
                                       f"prometheus-alertmanager)") from None
        self._procs[name] = proc
        with open(os.path.join(self.base_dir, f"{name}.pid"), "w") as f:
            f.write(str(proc.pid))

    def start(self, timeout_s: float = 30.0) -> None:
        """Start both and wait until each answers /-/ready; PrometheusStartError otherwise."""
        kill_stale(self.base_dir)
        prom_cfg, am_cfg = self.write_configs()
        self._spawn(ALERTMANAGER, [ALERTMANAGER, f"--config.file={am_cfg}",
                                   f"--storage.path={os.path.join(self.base_dir, 'am-data')}",
                                   f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                                   "--cluster.listen-address="])
        self._spawn(PROMETHEUS, [PROMETHEUS, f"--config.file={prom_cfg}",
                                 f"--storage.tsdb.path={os.path.join(self.base_dir, 'tsdb')}",
                                 f"--web.listen-address=127.0.0.1:{self.prometheus_port}"])
        deadline = time.monotonic() + timeout_s
        for name, url in ((ALERTMANAGER, self.alertmanager_url), (PROMETHEUS, self.prometheus_url)):
            while not self._ready(url):
                proc = self._procs[name]
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise PrometheusStartError(f"{name} did not become ready (rc {proc.returncode}); log tail:\n"
                                               f"{self.log_tail(name)}")
                time.sleep(0.1)
        log.info("prometheus %s and alertmanager %s up (netns %s)", self.prometheus_url, self.alertmanager_url,
                 self.netns or "-")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM both (SIGKILL after timeout_s); a no-op for what is not running."""
        procs, self._procs = self._procs, {}
        for name, proc in procs.items():
            if proc.poll() is None:
                stop_child(proc, timeout_s)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.base_dir, f"{name}.pid"))

    def _get(self, url: str, timeout_s: float = 2.0) -> bytes:
        ctx = _netns.entered(self.netns) if self.netns else contextlib.nullcontext()
        with ctx:
            resp = _OPENER.open(url, timeout=timeout_s)
        with resp:
            return resp.read()

    def _ready(self, url: str) -> bool:
        try:
            self._get(url + "/-/ready")
            return True
        except (urllib.error.URLError, OSError):
            return False

    def alerts(self) -> list[dict]:
        """Prometheus's active alerts (GET /api/v1/alerts)."""
        return json.loads(self._get(self.prometheus_url + "/api/v1/alerts"))["data"]["alerts"]

    def query(self, expr: str) -> list[dict]:
        """An instant PromQL query (GET /api/v1/query): the result vector."""
        q = urllib.parse.urlencode({"query": expr})
        return json.loads(self._get(f"{self.prometheus_url}/api/v1/query?{q}"))["data"]["result"]

    def targets(self) -> list[dict]:
        """Prometheus's active scrape targets (GET /api/v1/targets)."""
        return json.loads(self._get(self.prometheus_url + "/api/v1/targets"))["data"]["activeTargets"]

    def log_tail(self, name: str, n: int = 20) -> str:
        """The last lines of prometheus.log or prometheus-alertmanager.log."""
        try:
            with open(os.path.join(self.base_dir, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no log)"
