"""Boxes by name, the pure part: what one resolution of a box's `hostname` means for the box (issue 34).

A name gives one address per family. Each family's answer (agent.resolve asks A and AAAA, RFC 1035
3.2.2, RFC 3596) is one of `Outcome`; `step` folds the two answers into the name's state and the box's
addresses, with the events that say what changed:

- one record of a family: that family's address (a change is an AddressChanged, old and new);
- several records of a family: state `multiple`, naming them; the family keeps its last address;
- NODATA (NOERROR without a record of the family, RFC 2308 2.2): the family has no address from the
  name: the configured address next to the hostname, else none;
- NXDOMAIN, SERVFAIL, timeout, REFUSED, other errors: the family keeps its last address (the box stays
  probed there) and the state says which; never a freeze, never a remediation for it;
- an address the config would refuse (agent.core.config.convert.address_problem, injected as
  `problem`): state `unsuitable` with that message; the family keeps its last address.

A box whose name never gave an address (and that has no configured one) is not probed: `apply` leaves it
out of the box set, and its state says why. No I/O, no clock: the caller passes the answers and `now_s`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

# [agent] resolve_interval: its default and floor (s). 60 s follows a renumbering within a minute; the
# floor keeps a large fleet of names from flooding the site's resolvers (two queries per name a pass).
RESOLVE_DEFAULT_S = 60.0
RESOLVE_FLOOR_S = 5.0
# One query's timeout (s) per nameserver: resolv.conf's default is 5 s (resolv.conf(5) `timeout`); off the
# probe path a shorter one keeps a pass over many names short, and a resolver this slow is reported.
QUERY_TIMEOUT_S = 2.0

FAMILIES: tuple[int, ...] = (4, 6)
RDTYPE: dict[int, str] = {4: "A", 6: "AAAA"}


class Outcome(StrEnum):
    """What one query (one name, one record type) gave."""

    OK = "ok"                  # NOERROR with records of the type
    NODATA = "nodata"          # NOERROR without (RFC 2308 2.2)
    NXDOMAIN = "nxdomain"      # RCODE 3: the name does not exist (RFC 1035 4.1.1, RFC 8020)
    SERVFAIL = "servfail"      # RCODE 2: the resolver could not get an answer
    REFUSED = "refused"        # RCODE 5: the resolver will not answer us
    TIMEOUT = "timeout"        # no nameserver answered within the timeout
    ERROR = "error"            # anything else (no nameserver, a malformed answer, another RCODE)


class NameState(StrEnum):
    """The resolver state of a box's name, shown beside its address (status, events, /metrics, report)."""

    PENDING = "pending"          # not asked yet
    RESOLVED = "resolved"        # one address per family it has
    MULTIPLE = "multiple"        # several A or AAAA records: which one is the box?
    NO_ADDRESS = "no_address"    # the name exists but has neither A nor AAAA
    UNSUITABLE = "unsuitable"    # an address of a kind the config refuses
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"


NAME_STATES: tuple[str, ...] = tuple(s.value for s in NameState)
# Outcomes in which the resolver told us nothing about the name's addresses; the first found names the state.
_FAILURES: tuple[Outcome, ...] = (Outcome.NXDOMAIN, Outcome.SERVFAIL, Outcome.TIMEOUT, Outcome.REFUSED,
                                  Outcome.ERROR)
# States in which the last address may be stale: remediation waits (agent.resolve.NameResolver.before_action).
NOT_RESOLVING: frozenset[str] = frozenset({NameState.PENDING, NameState.NXDOMAIN, NameState.SERVFAIL,
                                           NameState.REFUSED, NameState.TIMEOUT, NameState.ERROR})


@dataclass(frozen=True, slots=True)
class Answer:
    """One query's result: its outcome, the addresses (OK only) and what the resolver said (for people)."""

    outcome: Outcome
    addresses: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NameRecord:
    """A box's name and what the agent holds of it: the addresses probed now (last good ones), the state and
    since when (epoch s), the detail (e.g. the records of `multiple`), when it last resolved (None: never)."""

    box: str
    hostname: str
    ipv4: str | None = None
    ipv6: str | None = None
    state: NameState = NameState.PENDING
    detail: str = "not resolved yet"
    since_s: float | None = None
    resolved_s: float | None = None
    kind: str = ""   # the box's kind (agent.core.events.BoxKind), carried into its events

    def addresses(self) -> tuple[str, ...]:
        """The addresses the box is probed at (IPv4 first); () when it is not probed."""
        return tuple(a for a in (self.ipv4, self.ipv6) if a)

    def to_json(self) -> dict[str, Any]:
        """status.json's `name` of the box."""
        return {"hostname": self.hostname, "state": self.state.value, "detail": self.detail,
                "ipv4": self.ipv4, "ipv6": self.ipv6, "since_s": self.since_s, "resolved_s": self.resolved_s}


@dataclass(frozen=True, slots=True)
class NameStateChanged:
    """BOX's name went to STATE at time_s (epoch s): detail says why; ipv4/ipv6 are what the box is probed at
    now (kept from before when the name did not resolve). Published by agent.resolve.NameResolver."""

    box: str
    time_s: float
    hostname: str
    state: str
    detail: str
    ipv4: str | None
    ipv6: str | None
    kind: str = ""   # the box's kind: a box not probed is in no listener's box set


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """BOX's name gave a new address of FAMILY (4|6) at time_s (epoch s): OLD (None: the first) to NEW (None:
    the name has no record of the family any more). The probes follow from the next cycle."""

    box: str
    time_s: float
    hostname: str
    family: int
    old: str | None
    new: str | None
    kind: str = ""


NameEvent = NameStateChanged | AddressChanged


def initial(box: str, hostname: str, ipv4: str | None = None, ipv6: str | None = None, kind: str = "") -> NameRecord:
    """A name not asked yet; IPV4/IPV6: the configured addresses next to it, probed until it resolves."""
    return NameRecord(box, hostname, ipv4, ipv6, kind=kind)


def _family(fam: int, ans: Answer, last: str | None, configured: str | None,
            problem: Callable[[str], str | None]) -> tuple[str | None, NameState | None, str]:
    """(the family's address, the state it asks for or None when fine, its detail)."""
    rr = RDTYPE[fam]
    if ans.outcome == Outcome.OK:
        if len(ans.addresses) > 1:
            return last, NameState.MULTIPLE, (f"{len(ans.addresses)} {rr} records ({', '.join(ans.addresses)}): "
                                              f"one address per family is expected")
        why = problem(ans.addresses[0]) if ans.addresses else "an empty answer"
        if why:
            return last, NameState.UNSUITABLE, f"{rr} record {ans.addresses[0] if ans.addresses else ''}: {why}"
        return ans.addresses[0], None, ""
    if ans.outcome == Outcome.NODATA:
        return configured, None, ""
    state = NameState(ans.outcome.value)
    return last, state, f"{rr}: {state.value}" + (f" ({ans.detail})" if ans.detail else "")


# Which state names the name when the families disagree: failures first (the resolver's trouble), then the
# records that cannot be used.
_PRIORITY: tuple[NameState, ...] = (NameState.NXDOMAIN, NameState.SERVFAIL, NameState.TIMEOUT, NameState.REFUSED,
                                    NameState.ERROR, NameState.MULTIPLE, NameState.UNSUITABLE)


def step(rec: NameRecord, a: Answer, aaaa: Answer, now_s: float, problem: Callable[[str], str | None],
         configured: tuple[str | None, str | None] = (None, None)) -> tuple[NameRecord, list[NameEvent]]:
    """One resolution of REC's name (A answer, AAAA answer) at now_s -> (the new record, its events).

    problem(address) -> why the config refuses it, or None (agent.core.config.convert.address_problem for a
    box); configured: the box's (ipv4, ipv6) next to its hostname. Events: an AddressChanged per family whose
    address changed, then a NameStateChanged when the state or its detail changed.
    """
    results = {fam: _family(fam, ans, last, conf, problem)
               for fam, ans, last, conf in ((4, a, rec.ipv4, configured[0]), (6, aaaa, rec.ipv6, configured[1]))}
    states = {st for _, st, _ in results.values() if st is not None}
    state = next((s for s in _PRIORITY if s in states), None)
    if state is None:
        any_records = a.outcome == Outcome.OK or aaaa.outcome == Outcome.OK
        state = NameState.RESOLVED if any_records else NameState.NO_ADDRESS
    details = [d for _, st, d in results.values() if st is not None and d]
    if len(details) == 2 and details[0].removeprefix("A: ") == details[1].removeprefix("AAAA: "):
        details = ["A, AAAA: " + details[0].removeprefix("A: ")]   # both families said the same
    ipv4, ipv6 = results[4][0], results[6][0]
    if state == NameState.NXDOMAIN:
        detail = "the name does not exist (NXDOMAIN)"
    elif state == NameState.NO_ADDRESS:
        detail = "the name has neither an A nor an AAAA record"
    elif state == NameState.RESOLVED:
        detail = " ".join(x for x in (ipv4, ipv6) if x)
    else:
        detail = "; ".join(details)
    if state not in NOT_RESOLVING and state != NameState.NO_ADDRESS and not (ipv4 or ipv6):
        detail += "; never resolved to a usable address: not probed"
    elif state in NOT_RESOLVING and (ipv4 or ipv6):
        detail += f"; probed at its last address {' '.join(x for x in (ipv4, ipv6) if x)}"
    elif not (ipv4 or ipv6):
        detail += "; not probed"
    events: list[NameEvent] = [AddressChanged(rec.box, now_s, rec.hostname, fam, old, new, rec.kind)
                               for fam, old, new in ((4, rec.ipv4, ipv4), (6, rec.ipv6, ipv6)) if old != new]
    resolved_s = now_s if state in (NameState.RESOLVED, NameState.NO_ADDRESS) else rec.resolved_s
    since_s = rec.since_s if state == rec.state and rec.since_s is not None else now_s
    new = NameRecord(rec.box, rec.hostname, ipv4, ipv6, state, detail, since_s, resolved_s, rec.kind)
    if (state, detail) != (rec.state, rec.detail) or events:
        events.append(NameStateChanged(rec.box, now_s, rec.hostname, state.value, detail, ipv4, ipv6, rec.kind))
    return new, events


class BoxLike(Protocol):
    """What apply needs of a box: a dataclass (agent.core.config.BoxConfig) with a name, ipv4 and ipv6."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def name(self) -> str: ...


B = TypeVar("B", bound=BoxLike)


def apply(boxes: Sequence[B], records: dict[str, NameRecord]) -> tuple[B, ...]:
    """The box set as probed: a box with a name gets its record's addresses (dataclasses.replace of ipv4/ipv6);
    one without any address is left out (not probed; its record says why). Boxes without a record pass."""
    out = []
    for box in boxes:
        rec = records.get(box.name)
        if rec is None:
            out.append(box)
        elif rec.ipv4 or rec.ipv6:
            out.append(replace(box, ipv4=rec.ipv4, ipv6=rec.ipv6))
    return tuple(out)


def deferral(rec: NameRecord) -> str | None:
    """Why an action on REC's box must wait (its name does not resolve: the address may be stale), or None."""
    if rec.state in NOT_RESOLVING:
        return (f"name {rec.hostname} does not resolve ({rec.state.value}: {rec.detail}): the box's address may "
                f"be stale, no action on it until the name resolves")
    return None
