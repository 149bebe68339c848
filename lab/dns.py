"""The lab's DNS server: dnsmasq (Debian's dnsmasq-base) inside a namespace, serving the lab's box names.

Its own command line and files under the lab's run dir (`--conf-file=/dev/null`, a hosts directory that dnsmasq
re-reads by inotify when a file changes): no /etc file is read or edited, and the host's resolv.conf is
untouched. Names under its domain that are not in the hosts files get NXDOMAIN (`--local`); nothing is
forwarded anywhere (`--no-resolv`). The agent is pointed at it by `[agent] nameservers`.
A process in a lab namespace or naming the run dir is removed by the lab's cleanup (lab.cleanup), also after
a crashed run.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from lab.errors import LabError

log = logging.getLogger(__name__)

DOMAIN = "lab.example.org"   # RFC 2606: example.org is reserved for documentation


# The root zone's KSK-2017 (https://data.iana.org/root-anchors/root-anchors.xml): a validating resolver with it
# and no signed zone upstream finds every answer bogus and says SERVFAIL (RFC 4035 5.5), as a site's
# resolver does when its DNSSEC validation breaks.
ROOT_TRUST_ANCHOR = ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"


class DnsServer:
    """dnsmasq in namespace NETNS listening on ADDRESS:53, answering for DOMAIN from the names given.

    set_names({name: [addresses]}) rewrites its hosts file (one line per address: several A records for a
    name are several lines); pause()/resume() stop and continue the process (a resolver that stops answering).
    """

    def __init__(self, netns: str, address: str, run_dir: str, domain: str = DOMAIN) -> None:
        self.netns = netns
        self.address = address
        self.domain = domain
        self.dir = os.path.join(run_dir, "dns")
        self.hosts_dir = os.path.join(self.dir, "hosts")
        self.proc: subprocess.Popen[bytes] | None = None

    def fqdn(self, box: str) -> str:
        """The lab's name of BOX, e.g. vm1.lab.example.org."""
        return f"{box}.{self.domain}"

    def start(self, names: Mapping[str, Sequence[str]], timeout_s: float = 10.0) -> None:
        """Write the names and start dnsmasq; LabError when it does not answer within timeout_s."""
        os.makedirs(self.hosts_dir, exist_ok=True)
        self.set_names(names)
        self._spawn(["--no-hosts", "--no-poll", f"--hostsdir={self.hosts_dir}", f"--local=/{self.domain}/",
                     "--local-ttl=0", "--cache-size=0"], "dnsmasq", timeout_s)
        log.info("lab dns: dnsmasq in %s at %s serves %s", self.netns, self.address, ", ".join(names))

    def start_servfail(self, upstream: str, timeout_s: float = 10.0) -> None:
        """Start a validating resolver at ADDRESS forwarding to UPSTREAM (a DnsServer): nothing upstream is
        signed, so it answers every question SERVFAIL (a site resolver whose DNSSEC validation broke)."""
        os.makedirs(self.dir, exist_ok=True)
        self._spawn(["--no-hosts", f"--server={upstream}", "--dnssec", f"--trust-anchor={ROOT_TRUST_ANCHOR}",
                     "--dnssec-check-unsigned"], "servfail", timeout_s)
        log.info("lab dns: validating dnsmasq in %s at %s (SERVFAIL for everything)", self.netns, self.address)

    def _spawn(self, args: list[str], what: str, timeout_s: float) -> None:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.path.exists(binary):
            raise LabError("dnsmasq is missing (Debian's dnsmasq-base; run scripts/setup)")
        argv = ["ip", "netns", "exec", self.netns, binary, "--conf-file=/dev/null", "--keep-in-foreground",
                "--no-resolv", *args, f"--listen-address={self.address}", "--bind-interfaces", "--port=53",
                "--user=root", f"--pid-file={os.path.join(self.dir, what + '.pid')}",
                f"--log-facility={os.path.join(self.dir, what + '.log')}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise LabError(f"dnsmasq in {self.netns} exited ({self.proc.returncode}): {err.strip()[:300]}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise LabError(f"dnsmasq in {self.netns} did not answer at {self.address} within {timeout_s:g} s")

    def _answers(self) -> bool:
        probe = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-Hlnu", "sport = :53"],
                               capture_output=True, text=True, timeout=10)
        return f"{self.address}:53" in probe.stdout or f"[{self.address}]:53" in probe.stdout

    def set_names(self, names: Mapping[str, Sequence[str]]) -> None:
        """Replace the served names (fully qualified) and their addresses; dnsmasq re-reads the file at once."""
        text = "".join(f"{addr} {name}\n" for name, addrs in names.items() for addr in addrs)
        tmp = os.path.join(self.dir, "hosts.tmp")
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(self.hosts_dir, "lab"))   # one inotify event, never a half-written file

    def pause(self) -> None:
        """SIGSTOP dnsmasq: queries go unanswered (a resolver that stops answering)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT dnsmasq."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop dnsmasq (continued first, so a paused one acts on SIGTERM)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
