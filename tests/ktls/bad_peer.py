#!/usr/bin/env python3
"""A misbehaving distribution peer for tests/ktls/e2e.sh.

Usage: bad_peer.py MODE PORT NAME COOKIE CERTDIR

Connects to a kdist node on 127.0.0.1:PORT over TLS with CERTDIR's client
certificate, runs the distribution handshake (version 6, 4-byte lengths as
over TLS) as node NAME with COOKIE, sends a few ticks, then spoils the stream by MODE:
  tamper       one record with a flipped byte in its authentication tag
  truncate     the first half of a record, then TCP FIN
  close_notify half of a distribution packet, then a TLS close_notify
and waits up to 20 s for the node to end the connection. Prints one line:
"bad_peer: MODE: node closed the connection (...)" and exits 0, or
"bad_peer: MODE: ..." with what went wrong and exits 1. The TLS records
are made with memory BIOs so that their bytes can be changed on the way.
"""
import hashlib
import os
import socket
import ssl
import struct
import sys

# The flags kdist requires (OTP 25's mandatory set and DFLAG_V4_NC).
DFLAGS = 0x403070F94


class Peer:
    def __init__(self, port, certdir):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(os.path.join(certdir, "ca.pem"))
        ctx.load_cert_chain(os.path.join(certdir, "client.pem"),
                            os.path.join(certdir, "client.key"))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out)
        self.plain = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        self.flush()

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("node closed the TCP connection")
        self.inc.write(data)

    def read_exact(self, n):
        while len(self.plain) < n:
            try:
                self.plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        data, self.plain = self.plain[:n], self.plain[n:]
        return data

    def write(self, data):
        self.tls.write(data)
        self.flush()

    def send_hs(self, body):
        self.write(struct.pack(">I", len(body)) + body)

    def recv_hs(self):
        (n,) = struct.unpack(">I", self.read_exact(4))
        return self.read_exact(n)


def digest(cookie, challenge):
    return hashlib.md5(cookie.encode() + str(challenge).encode()).digest()


def dist_handshake(p, name, cookie):
    p.send_hs(b"N" + struct.pack(">QIH", DFLAGS, 1, len(name)) + name.encode())
    status = p.recv_hs()
    if status[:3] != b"sok":
        raise RuntimeError("handshake status %r" % status)
    msg = p.recv_hs()
    if msg[:1] != b"N":
        raise RuntimeError("expected the challenge, got tag %r" % msg[:1])
    (challenge,) = struct.unpack(">I", msg[9:13])
    mine = int.from_bytes(os.urandom(4), "big")
    p.send_hs(b"r" + struct.pack(">I", mine) + digest(cookie, challenge))
    ack = p.recv_hs()
    if ack[:1] != b"a" or ack[1:17] != digest(cookie, mine):
        raise RuntimeError("bad challenge ack")


def spoil(p, mode):
    for _ in range(3):
        p.write(b"\0\0\0\0")  # ticks
    if mode == "tamper":
        p.tls.write(b"\0\0\0\0")
        rec = bytearray(p.out.read())
        rec[-1] ^= 0x40
        p.sock.sendall(bytes(rec))
    elif mode == "truncate":
        p.tls.write(b"\0\0\0\x40" + b"x" * 64)
        rec = p.out.read()
        p.sock.sendall(rec[: len(rec) // 2])
        p.sock.shutdown(socket.SHUT_WR)
    elif mode == "close_notify":
        p.write(b"\0\0\0\x64" + b"y" * 10)
        try:
            p.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        p.flush()
    else:
        raise RuntimeError("unknown mode " + mode)


def wait_close(p):
    """Reads until the node closes; returns how it ended."""
    try:
        while True:
            data = p.sock.recv(65536)
            if not data:
                return "TCP FIN"
            p.inc.write(data)
            try:
                p.tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return "TLS close_notify"
            except ssl.SSLError as e:
                return "TLS alert or error: " + e.reason
    except ConnectionResetError:
        return "TCP reset"
    except socket.timeout:
        return None


def main():
    if len(sys.argv) != 6:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    mode, port, name, cookie, certdir = sys.argv[1:]
    try:
        p = Peer(int(port), certdir)
        dist_handshake(p, name, cookie)
        spoil(p, mode)
        how = wait_close(p)
    except (OSError, EOFError, RuntimeError, ssl.SSLError) as e:
        print("bad_peer: %s: failed before the node could react: %s" % (mode, e))
        return 1
    if how is None:
        print("bad_peer: %s: the node kept the connection open for 20 s" % mode)
        return 1
    print("bad_peer: %s: node closed the connection (%s); TLS %s %s" %
          (mode, how, p.tls.version(), p.tls.cipher()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
