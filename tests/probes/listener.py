"""A TCP listener for probe tests and the benchmark: accepts on [::]:PORT (all IPv4 and IPv6 addresses) and closes."""
from __future__ import annotations

import socket
import sys


def main(port: int) -> None:
    """Accept and close connections forever."""
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen(4096)
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
