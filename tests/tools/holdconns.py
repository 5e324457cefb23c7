#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Open many connections to a distribution port that never finish the
distribution handshake, from one process.

usage: holdconns.py HOST PORT TCP_COUNT TLS_COUNT CERT_DIR SECONDS

TCP_COUNT connections send nothing. TLS_COUNT connections complete TLS
1.3 with CERT_DIR/client.pem (verified against CERT_DIR/ca.pem) and then
send nothing. After opening them all it prints "holding T tcp, S tls",
keeps them SECONDS, prints "closed by node: N of M" (connections that
the node had closed by then) and exits 0. Exit 2 when a connection
cannot be opened.
"""
import select
import socket
import ssl
import sys
import time


def closed_by_peer(sock):
    """Return True when the peer has closed sock (EOF or reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    tcp_count, tls_count = int(sys.argv[3]), int(sys.argv[4])
    cert_dir, seconds = sys.argv[5], float(sys.argv[6])

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(f"{cert_dir}/ca.pem")
    ctx.load_cert_chain(f"{cert_dir}/client.pem", f"{cert_dir}/client.key")

    socks = []
    start = time.monotonic()
    try:
        for _ in range(tcp_count):
            socks.append(socket.create_connection((host, port), timeout=10))
        for _ in range(tls_count):
            raw = socket.create_connection((host, port), timeout=10)
            socks.append(ctx.wrap_socket(raw, server_hostname=host))
    except (OSError, ssl.SSLError) as err:
        print(f"holdconns: connection {len(socks) + 1} failed: {err}",
              flush=True)
        return 2
    print(f"holding {tcp_count} tcp, {tls_count} tls, opened in "
          f"{time.monotonic() - start:.1f} s", flush=True)
    time.sleep(seconds)
    closed = sum(1 for s in socks if closed_by_peer(s))
    print(f"closed by node: {closed} of {len(socks)}", flush=True)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
