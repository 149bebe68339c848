"""Small services for the service-probe tests and the benchmark, one asyncio process, several listeners on [::].

    services.py PORT:MODE[:CERTFILE:KEYFILE] ...     (prints "listening" once all are bound)

Modes: `line` greets "HELLO vobox" and answers "PING" with "PONG"; `hang` accepts and
keeps the socket without ever answering; `wrong` answers every line with "ERR nope"
and closes; `http` serves /ok (200 "status: healthy"), /fail (500), /chunked (200,
chunked "status: healthy"), /host (200 "host=<Host header>") and anything else (200
"something else"); with CERTFILE and KEYFILE the listener speaks TLS first.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import sys

HELD: list[asyncio.StreamWriter] = []  # hung connections stay open until the process ends


async def line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HELLO vobox\r\n")
    try:
        while data := await reader.readline():
            writer.write(b"PONG\r\n" if data.strip() == b"PING" else b"WHAT\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # the probe has what it wanted and went
    writer.close()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    HELD.append(writer)
    while await reader.read(65536):
        pass  # read and ignore; never answer


async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"ERR nope\r\n")
    await writer.drain()
    writer.close()


def _response(status: str, body: bytes, head: bool, chunked: bool = False) -> bytes:
    if chunked:
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:6], body[6:])) + b"0\r\n\r\n"
        return (f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
                + (b"" if head else payload))
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
            f"Connection: close\r\n\r\n".encode() + (b"" if head else body))


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    lines = request.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
    head = method == "HEAD"
    if path == "/ok":
        out = _response("200 OK", b"status: healthy\n", head)
    elif path == "/fail":
        out = _response("500 Internal Server Error", b"broken\n", head)
    elif path == "/chunked":
        out = _response("200 OK", b"status: healthy\n", head, chunked=True)
    elif path == "/host":
        out = _response("200 OK", f"host={headers.get('host', '')}\n".encode(), head)
    else:
        out = _response("200 OK", b"something else\n", head)
    writer.write(out)
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


MODES = {"line": line, "hang": hang, "wrong": wrong, "http": http}


async def main(specs: list[str]) -> None:
    servers = []
    for spec in specs:
        port, mode, *cert = spec.split(":")
        ctx = None
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert[0], cert[1])
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", int(port)))
        sock.listen(4096)
        servers.append(await asyncio.start_server(MODES[mode], sock=sock, ssl=ctx, backlog=4096,
                                                  ssl_handshake_timeout=30 if ctx else None))
    print("listening", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
