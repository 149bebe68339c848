"""Boxes by name, the edges: DNS queries with dnspython, and the resolver service off the probe path.

`DnsLookup` asks the nameservers ([agent] nameservers, else resolv.conf: with `run --netns NAME` the
namespace's /etc/netns/NAME/resolv.conf when it exists, as `ip netns exec` uses it) one question at a time
and tells NOERROR with and without records, NXDOMAIN, SERVFAIL, REFUSED and a timeout apart (getaddrinfo
cannot). `NameResolver` resolves every box's `hostname` at start, every `[agent] resolve_interval` in its own
thread, and before each remediation (`before_action`), folds the answers with the pure
agent.core.resolve.step and publishes what changed (NameStateChanged, AddressChanged) on the bus; a changed
address also calls `on_addresses`, which the wiring turns into a BoxSetChanged the pipeline takes at its next
cycle.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from agent.core.config import BoxConfig
from agent.core.config.convert import address_problem
from agent.core.resolve import (
    FAMILIES,
    QUERY_TIMEOUT_S,
    RDTYPE,
    AddressChanged,
    Answer,
    NameEvent,
    NameRecord,
    NameStateChanged,
    Outcome,
    apply,
    deferral,
    initial,
    step,
)

log = logging.getLogger(__name__)

RESOLV_CONF = "/etc/resolv.conf"
# Questions in flight at once in a pass: a site's resolver answers this many concurrent queries easily (glibc's
# stub sends A and AAAA in parallel for every getaddrinfo), and a pass over 500 names against a dead resolver
# lasts 1000 / 32 query timeouts (about 63 s at 2 s), not 1000.
MAX_PARALLEL = 32
NETNS_ETC = "/etc/netns"   # ip-netns(8): per-namespace files bind-mounted over /etc by `ip netns exec`


class ResolverConfigError(Exception):
    """No nameserver to ask: [agent] nameservers is empty and resolv.conf names none (one line)."""


def resolv_conf(netns: str | None = None, netns_etc: str = NETNS_ETC, default: str = RESOLV_CONF) -> str:
    """The resolv.conf the agent uses: with a network namespace NETNS, NETNS_ETC/NETNS/resolv.conf when it
    exists (ip-netns(8): `ip netns exec` bind-mounts it over /etc/resolv.conf), else DEFAULT."""
    if netns:
        path = os.path.join(netns_etc, netns, "resolv.conf")
        if os.path.exists(path):
            return path
    return default


def nameservers_of(path: str) -> tuple[str, ...]:
    """The `nameserver` lines of a resolv.conf (dnspython's parser); ResolverConfigError when there is none."""
    try:
        found = dns.resolver.Resolver(filename=path, configure=True).nameservers
    except (OSError, dns.resolver.NoResolverConfiguration) as exc:
        raise ResolverConfigError(f"{path}: no nameserver to resolve the boxes' hostnames with "
                                  f"({type(exc).__name__}); set [agent] nameservers") from None
    return tuple(str(ns) for ns in found)


class DnsLookup:
    """lookup(name, family 4|6) -> agent.core.resolve.Answer, asking NAMESERVERS in order (UDP, TCP when the
    answer is truncated), each for at most timeout_s; the first NOERROR or NXDOMAIN answer decides, SERVFAIL
    and REFUSED move on to the next server (as a stub resolver does, resolv.conf(5))."""

    def __init__(self, nameservers: Sequence[str], timeout_s: float = QUERY_TIMEOUT_S) -> None:
        if not nameservers:
            raise ResolverConfigError("no nameserver to resolve the boxes' hostnames with")
        self.nameservers = tuple(nameservers)
        self.timeout_s = timeout_s

    def __call__(self, name: str, family: int) -> Answer:
        rdtype = dns.rdatatype.from_text(RDTYPE[family])
        query = dns.message.make_query(dns.name.from_text(name), rdtype)   # absolute: no search list
        said: dict[Outcome, list[str]] = {}
        for ns in self.nameservers:
            try:
                response, _ = dns.query.udp_with_fallback(query, ns, timeout=self.timeout_s)
            except dns.exception.Timeout:
                said.setdefault(Outcome.TIMEOUT, []).append(f"{ns}: no answer in {self.timeout_s:g} s")
                continue
            except (OSError, dns.exception.DNSException) as exc:
                said.setdefault(Outcome.ERROR, []).append(f"{ns}: {type(exc).__name__}: {exc}")
                continue
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR:
                found = sorted({str(rd.address) for rrset in response.answer if rrset.rdtype == rdtype
                                for rd in rrset}, key=_address_key)
                return Answer(Outcome.OK, tuple(found), f"from {ns}") if found else \
                    Answer(Outcome.NODATA, (), f"from {ns}")
            if rcode == dns.rcode.NXDOMAIN:
                return Answer(Outcome.NXDOMAIN, (), f"from {ns}")
            outcome = {dns.rcode.SERVFAIL: Outcome.SERVFAIL, dns.rcode.REFUSED: Outcome.REFUSED}.get(rcode,
                                                                                                    Outcome.ERROR)
            said.setdefault(outcome, []).append(f"{ns}: {dns.rcode.to_text(rcode)}")
        for outcome in (Outcome.SERVFAIL, Outcome.REFUSED, Outcome.ERROR, Outcome.TIMEOUT):
            if outcome in said:
                return Answer(outcome, (), "; ".join(x for o in said for x in said[o]))
        return Answer(Outcome.ERROR, (), "no nameserver asked")   # not reached: nameservers is never empty


def _norm(address: str) -> str:
    return str(ipaddress.ip_address(address))


def _address_key(address: str) -> int:
    return int(ipaddress.ip_address(address))


def box_problem(interface: str | None) -> Callable[[str], str | None]:
    """address -> why the config would refuse it for a box (agent.core.config.convert.address_problem, the one
    place of that rule; link-local only with [agent] interface), or None."""
    def problem(address: str) -> str | None:
        if "%" in address:
            return "a scoped address: no probe can use it"
        return address_problem(ipaddress.ip_address(address), "host", link_local_ok=interface is not None)
    return problem


class NameResolver:
    """The boxes' names, resolved off the probe path; thread-safe.

    lookup(name, family): DnsLookup; publish(event): the bus (NameStateChanged, AddressChanged);
    on_addresses(): called after an address changed (the wiring publishes the new box set); problem(address):
    box_problem. interval_s: [agent] resolve_interval.
    """

    def __init__(self, boxes: Sequence[BoxConfig], lookup: Callable[[str, int], Answer],
                 publish: Callable[[Any], None], *, interval_s: float, problem: Callable[[str], str | None],
                 clock: Callable[[], float] = time.time, on_addresses: Callable[[], None] | None = None) -> None:
        self.lookup = lookup
        self.publish = publish
        self.interval_s = interval_s
        self.problem = problem
        self.clock = clock
        self.on_addresses = on_addresses
        self._configured = {b.name: (b.ipv4, b.ipv6) for b in boxes if b.hostname}
        # the boxes' fixed addresses: a name resolving to one is refused, as the config refuses a duplicate
        self._fixed = {_norm(a): b.name for b in boxes if not b.hostname for a in b.addresses()}
        self._records = {b.name: initial(b.name, b.hostname, b.ipv4, b.ipv6, b.kind) for b in boxes if b.hostname}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def records(self) -> dict[str, NameRecord]:
        """box -> its name's record now (a copy)."""
        with self._lock:
            return dict(self._records)

    def apply(self, boxes: Sequence[BoxConfig]) -> tuple[BoxConfig, ...]:
        """The box set as probed now (agent.core.resolve.apply): named boxes at their names' addresses."""
        return apply(boxes, self.records())

    def resolve(self, names: Sequence[str] | None = None, *, publish: bool = True) -> list[NameEvent]:
        """Resolve the names of boxes NAMES (None: all) now; their events, published unless PUBLISH is false.

        Calls on_addresses when an address changed. Never raises for a name: a lookup that raises is an ERROR
        answer (logged).
        """
        with self._lock:
            todo = [self._records[n] for n in (names if names is not None else list(self._records))
                    if n in self._records]
        events: list[NameEvent] = []
        changed = False
        answers = self._ask_all(sorted({rec.hostname for rec in todo}))
        for rec in todo:
            a, aaaa = answers[(rec.hostname, 4)], answers[(rec.hostname, 6)]
            with self._lock:
                cur = self._records.get(rec.box)
                if cur is None:
                    continue
                new, evs = step(cur, a, aaaa, self.clock(), self._problem_of(rec.box), self._configured[rec.box])
                self._records[rec.box] = new
            for ev in evs:
                _log(ev)
            changed = changed or any(isinstance(ev, AddressChanged) for ev in evs)
            events.extend(evs)
        if publish:
            for ev in events:
                self.publish(ev)
        if changed and self.on_addresses is not None:
            self.on_addresses()
        return events

    def _problem_of(self, box: str) -> Callable[[str], str | None]:
        """problem(address) for BOX: the config's rule for a box's address, and no other box's address (the
        config refuses a duplicate address; two boxes probed at one address would report one host twice)."""
        def problem(address: str) -> str | None:
            why = self.problem(address)
            if why:
                return why
            taken = {**self._fixed, **{_norm(a): r.box for r in self._records.values() if r.box != box
                                       for a in r.addresses()}}
            other = taken.get(_norm(address))
            return f"duplicate address {address} (also box {other!r}'s)" if other and other != box else None
        return problem

    def _ask_all(self, hostnames: Sequence[str]) -> dict[tuple[str, int], Answer]:
        """Every name's A and AAAA answer, asked at once (up to MAX_PARALLEL queries in flight): a pass over many
        names against a dead resolver lasts about one query timeout per nameserver per MAX_PARALLEL questions,
        not one per question."""
        questions = [(h, fam) for h in hostnames for fam in FAMILIES]
        if len(questions) <= 2:
            return {q: self._ask(*q) for q in questions}
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(questions)),
                                thread_name_prefix="resolver") as pool:
            return dict(zip(questions, pool.map(lambda q: self._ask(*q), questions), strict=True))

    def _ask(self, hostname: str, family: int) -> Answer:
        try:
            return self.lookup(hostname, family)
        except Exception as exc:  # a broken lookup must not stop the resolver; said as an error of the name
            log.exception("name %s: lookup of %s failed", hostname, RDTYPE[family])
            return Answer(Outcome.ERROR, (), f"{type(exc).__name__}: {exc}")

    def before_action(self, box: str) -> str | None:
        """Remediation asks before acting on BOX: its name is resolved now; a reason to wait (the name does not
        resolve, or its address just changed: the freeze may be the old address's) or None. Boxes without a
        name: None, nothing asked."""
        with self._lock:
            rec = self._records.get(box)
        if rec is None:
            return None
        events = self.resolve([box])
        moved = [ev for ev in events if isinstance(ev, AddressChanged)]
        if moved:
            what = ", ".join(f"{ev.old or 'none'} -> {ev.new or 'none'}" for ev in moved)
            return (f"name {rec.hostname} now resolves elsewhere ({what}): the probes follow from the next "
                    f"cycle, no action on a freeze seen at the old address")
        with self._lock:
            return deferral(self._records[box])

    def announce(self) -> None:
        """Publish every name's state as it is now (a NameStateChanged each): the listeners' starting point."""
        for rec in self.records().values():
            self.publish(NameStateChanged(rec.box, rec.since_s if rec.since_s is not None else self.clock(),
                                          rec.hostname, rec.state.value, rec.detail, rec.ipv4, rec.ipv6, rec.kind))

    def start(self) -> None:
        """Announce the names' states, then resolve every resolve_interval in a daemon thread."""
        self.announce()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="resolver", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (a running pass ends first, at most two query timeouts per nameserver per name)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.resolve()
            except Exception:  # never stops resolving; the next pass tries again
                log.exception("resolver: a pass failed")


def _log(ev: NameEvent) -> None:
    if isinstance(ev, NameStateChanged):
        level = logging.INFO if ev.state == "resolved" else logging.WARNING
        log.log(level, "box %s: name %s %s: %s", ev.box, ev.hostname, ev.state, ev.detail)
    else:
        log.warning("box %s: name %s IPv%d address %s -> %s (probes follow from the next cycle)", ev.box,
                    ev.hostname, ev.family, ev.old or "none", ev.new or "none")
