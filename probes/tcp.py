"""TCP (IPv4 and IPv6): a real handshake per host:port, all in flight at once on one selector; optional send/expect.

Needs no privileges. The kernel does the handshake, so there are no frames to
hand to a recorder: the recorder is not called for tcp. Without a spec a target
is connect-only (ok when the port accepts). With a TcpSpec the probe then sends
`send` and, with `expect`, waits for an answer matching it: a service that accepts
but says nothing matching before the timeout fails at l7 (a paused or hung
service still completes handshakes into its listen backlog, so connect alone
says "ok").
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from probes import dialogue
from probes.dialogue import Verdict
from probes.exchange import Recorder
from probes.types import ProbeResult, Target, service_port, spec_as

NAME = "tcp"
FAMILY = None  # both
NEEDS_RAW = False
LAYER = "l4"  # a failed connect; with a TcpSpec a failed dialogue after it points at l7
MAX_ANSWER_BYTES = 65536  # read at most this much looking for `expect`

error_text = dialogue.error_text


@dataclass(frozen=True, slots=True)
class TcpSpec:
    """After connecting: `send` (text as UTF-8, or bytes), then `expect`, a Python regex searched in the answer."""

    send: str | bytes | None = None
    expect: str | None = None

    def check(self) -> None:
        """Raise ValueError naming the field that is wrong."""
        if self.send is not None and not isinstance(self.send, (str, bytes)):
            raise ValueError(f"send must be a string, got {self.send!r}")
        if self.expect is not None:
            if not isinstance(self.expect, str):
                raise ValueError(f"expect must be a string (a regular expression), got {self.expect!r}")
            compile_expect(self.expect, "expect")

    def request(self) -> bytes:
        """The bytes sent after connecting."""
        if self.send is None:
            return b""
        return self.send.encode() if isinstance(self.send, str) else self.send


def compile_expect(pattern: str, field: str) -> re.Pattern[bytes]:
    """Compile a regex given as text for searching bytes (UTF-8); ValueError naming FIELD when it is invalid."""
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        raise ValueError(f"{field}: invalid regular expression {pattern!r}: {exc}") from None


def excerpt(data: bytes, limit: int = 40) -> str:
    """The start of DATA for an error message."""
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


class ExpectReader:
    """Reads until EXPECT matches the answer so far; end of stream, MAX_ANSWER_BYTES or the deadline fail."""

    __slots__ = ("expect", "answer")

    def __init__(self, expect: re.Pattern[bytes]):
        self.expect, self.answer = expect, b""

    def feed(self, data: bytes) -> Verdict | None:
        """Decide on the answer so far (b"": end of stream)."""
        if data:
            self.answer = (self.answer + data)[:MAX_ANSWER_BYTES]
            if self.expect.search(self.answer):
                return Verdict(True)
            if len(self.answer) < MAX_ANSWER_BYTES:
                return None
        return self._failure("closed" if not data else "answer too long")

    def at_deadline(self) -> Verdict:
        """No match in time."""
        return self._failure("timeout")

    def _failure(self, why: str) -> Verdict:
        if not self.answer:
            return Verdict(False, f"no answer ({why})")
        return Verdict(False, f"answer does not match expect ({why}): {excerpt(self.answer)}")


def job_for(target: Target) -> dialogue.Job:
    """The conversation a tcp target asks for."""
    spec = spec_as(target, TcpSpec)
    if spec is None:
        return dialogue.Job(target.address, service_port(target))
    reader = ExpectReader(compile_expect(spec.expect, "expect")) if spec.expect is not None else None
    return dialogue.Job(target.address, service_port(target), request=spec.request(), reader=reader)


def sweep(targets: Sequence[Target], timeout_s: float, interface: str | None = None,
          recorder: Recorder | None = None) -> list[ProbeResult]:
    """Connect (and converse, per spec) with every target once, all at once; results in input order."""
    outcomes = dialogue.run([job_for(t) for t in targets], timeout_s, interface)
    return [ProbeResult(t.address, NAME, t.port, d.ok, (d.end_s - d.start_s) * 1000.0 if d.ok else None, d.error,
                        None, d.end_s, d.layer) for t, d in zip(targets, outcomes, strict=True)]


SPEC = TcpSpec
