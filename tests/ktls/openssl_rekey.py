#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A distribution peer spoken through `openssl s_client` or `s_server`.

Usage:
  openssl_rekey.py client PORT NODE COOKIE CERTDIR VERSION CIPHER CMDS [COUNT]
  openssl_rekey.py server EPMD_PORT NODE COOKIE CERTDIR VERSION CIPHER CMDS [COUNT]

The openssl command is the TLS peer of the kdist node NODE, and this
script speaks the distribution protocol through its standard input and
output. Between batches of traffic the script writes openssl's
interactive commands to the same standard input: `k` and `K` (KeyUpdate,
K with update_requested, TLS 1.3), `r` and `R` (renegotiate, TLS 1.2).

client: `openssl s_client` connects to 127.0.0.1:PORT (the kdist node) and
    this script runs the distribution handshake (version 6) as the
    initiator, node name `osslc<pid>@HOST`.
server: `openssl s_server` listens on a free port that this script
    registers with the EPMD on EPMD_PORT as `ossls<pid>`. A second, direct
    TLS connection (Python's ssl) sends the kdist node's echo a message
    whose reply pid lies on that name, so the node connects to s_server
    and this script runs the acceptor's side of the handshake.

VERSION is 13 or 12, CIPHER one TLS 1.3 suite or TLS 1.2 cipher name,
CMDS a comma-separated list of commands, one after each batch, and COUNT
(default 100) the messages per batch. Each message is {Pid, {seq, I,
Payload}} to the echo process, with a 1 KiB Payload that depends on I;
every reply must come back byte for byte and in order.

Prints one line per batch and command, then "openssl_rekey: ok ..." and
exits 0; "openssl_rekey: FAIL ..." with what went wrong, and exits 1.

Both openssl commands take a command only from the first byte of one
read() of their standard input (s_server also wants a newline as the
second byte), so binary data must never start a read with a command
letter. Every distribution packet starts with its 4-byte length, whose
first byte is 0 below 16 MiB, and this script writes a packet only while
the pipe contains at most READ_LIMIT bytes in all, less than either command
reads at once. Each read() then starts at a packet boundary. A command is
written alone, only when no reply is outstanding, with a pause on either
side, and its confirmation is read back (s_client prints KEYUPDATE or
RENEGOTIATING on standard error, s_server "SSL_do_handshake -> 1" on
standard output).

s_server without -quiet or -brief (either turns its commands off) writes
status text to its standard output, between the bytes of the records it
decrypts: a record boundary can fall inside a packet. Each flush of that
text is one small write(), so it arrives whole in one read of the pipe,
and the known lines ("Read BLOCK", "SSL_do_handshake -> 1", ...) are cut
out of each read wherever they are. Payloads are lowercase hex, so they
cannot form those lines, which start with a capital letter.
"""
import fcntl
import hashlib
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# bad_peer has the direct TLS peer and the initiator handshake.
import bad_peer  # noqa: E402

# Below what one read() of standard input takes in OpenSSL 3.0: 8 KiB in
# s_client, 16 KiB in s_server (seen with strace).
READ_LIMIT = 4096
# Under emulation a reply can take seconds; no reply at all for this long
# fails the case.
REPLY_TIMEOUT = 90
# The distribution ticks (net_ticktime 60 s) this peer sends when idle.
TICK_EVERY = 10
PAUSE = 0.5

# s_server's status lines (apps/s_server.c, OpenSSL 3.0).
STATUS_LINE = re.compile(
    rb"(Read BLOCK|Write BLOCK|SSL_do_handshake -> -?\d+|"
    rb"LOOKUP renego during (?:read|write)|DONE|shutting down SSL|"
    rb"CONNECTION CLOSED)\n")
CONFIRM = {
    ("client", "k"): "KEYUPDATE", ("client", "K"): "KEYUPDATE",
    ("client", "R"): "RENEGOTIATING",
}


class Fail(Exception):
    pass


# --- the external term format, the part this peer sends --------------------

def atom(name):
    b = name.encode()
    return struct.pack(">BB", 119, len(b)) + b


def pid(node, num, creation):
    return struct.pack(">B", 88) + atom(node) + struct.pack(">III", num, 0,
                                                            creation)


def tuple_(*elements):
    return struct.pack(">BB", 104, len(elements)) + b"".join(elements)


def integer(n):
    return struct.pack(">Bi", 98, n)


def binary(data):
    return struct.pack(">BI", 109, len(data)) + data


def skip_term(buf, i):
    """Return the offset after the term at buf[i] (the tags kdist sends in
    control messages)."""
    tag = buf[i]
    if tag == 97:
        return i + 2
    if tag == 98:
        return i + 5
    if tag in (119, 115):
        return i + 2 + buf[i + 1]
    if tag in (118, 100):
        return i + 3 + struct.unpack_from(">H", buf, i + 1)[0]
    if tag == 104:
        j = i + 2
        for _ in range(buf[i + 1]):
            j = skip_term(buf, j)
        return j
    if tag == 88:
        return skip_term(buf, i + 1) + 12
    if tag == 103:
        return skip_term(buf, i + 1) + 9
    if tag == 106:
        return i + 1
    if tag == 109:
        return i + 5 + struct.unpack_from(">I", buf, i + 1)[0]
    raise Fail("unexpected term tag %d in a control message" % tag)


def payload(i):
    seed = hashlib.sha256(str(i).encode()).hexdigest().encode()
    return (seed * 17)[:1024]


# --- the openssl process ---------------------------------------------------

class OpensslPipe:
    """Distribution packets through an openssl command's stdin and stdout."""

    def __init__(self, argv, role):
        self.role = role
        # -msg logs every TLS message openssl sends and receives, the proof
        # that the keys changed; -msgfile keeps it out of the data stream.
        fd, self.msgfile = tempfile.mkstemp(prefix="openssl_rekey.",
                                            suffix=".msg")
        os.close(fd)
        argv = argv[:2] + ["-msg", "-msgfile", self.msgfile] + argv[2:]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lock = threading.Condition()
        self.raw = b""
        self.eof = False
        self.err = b""
        self.status = []
        self.confirmed = []
        self.last_send = time.monotonic()
        threading.Thread(target=self._pump, args=(self.proc.stdout, "raw"),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, "err"),
                         daemon=True).start()

    def _pump(self, f, field):
        fd = f.fileno()
        while True:
            data = os.read(fd, 65536)
            with self.lock:
                if not data:
                    if field == "raw":
                        self.eof = True
                    self.lock.notify_all()
                    return
                setattr(self, field, getattr(self, field) + data)
                self.lock.notify_all()

    def _keep_status(self, m):
        self.status.append(m.group(1).decode())
        return b""

    def stderr_text(self):
        with self.lock:
            return self.err.decode(errors="replace")

    def wait_stderr(self, text, timeout):
        """Wait until openssl's standard error contains text."""
        end = time.monotonic() + timeout
        with self.lock:
            while text.encode() not in self.err:
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.lock.wait(min(left, 0.5))
        return True

    def in_pipe(self):
        """Bytes written to openssl's stdin that it has not read yet."""
        n = fcntl.ioctl(self.proc.stdin.fileno(), termios.FIONREAD,
                        b"\0\0\0\0")
        return struct.unpack("i", n)[0]

    def write_packet(self, body):
        data = struct.pack(">I", len(body)) + body
        if len(data) > READ_LIMIT:
            raise Fail("packet of %d bytes exceeds the %d-byte pipe limit"
                       % (len(data), READ_LIMIT))
        end = time.monotonic() + REPLY_TIMEOUT
        while self.in_pipe() + len(data) > READ_LIMIT:
            if self.proc.poll() is not None:
                raise Fail("openssl exited (status %d): %s" %
                           (self.proc.returncode, self.last_err()))
            if time.monotonic() > end:
                raise Fail("openssl read nothing from its stdin for %d s"
                           % REPLY_TIMEOUT)
            time.sleep(0.001)
        try:
            os.write(self.proc.stdin.fileno(), data)
        except BrokenPipeError:
            raise Fail("openssl exited: %s" % self.last_err())
        self.last_send = time.monotonic()

    # The handshake uses the same 4-byte framing (bad_peer's interface).
    send_hs = write_packet

    def recv_hs(self):
        return self.read_packet(REPLY_TIMEOUT)

    def command(self, letter):
        """Write one openssl command when the pipe is empty, alone."""
        time.sleep(PAUSE)
        if self.in_pipe() != 0:
            raise Fail("stdin not drained before command %r" % letter)
        os.write(self.proc.stdin.fileno(), letter.encode() + b"\n")
        time.sleep(PAUSE)
        if self.in_pipe() != 0:
            raise Fail("openssl did not read command %r" % letter)

    def last_err(self):
        lines = self.stderr_text().strip().splitlines()
        return " | ".join(lines[-3:]) if lines else "no output on stderr"

    def _cut_status(self):
        """Move s_server's text out of the raw stream; lock held.

        s_server's stdio buffer may split a line over two writes, with data
        records between them. A line cut inside a packet joins up before
        the packet is complete, so the pattern finds it here. A line at a
        packet boundary starts with a letter where a length would start
        with a zero byte, and waits here for its newline."""
        if self.role != "server":
            return
        self.raw = STATUS_LINE.sub(self._keep_status, self.raw)
        # The connection details before the first packet are lines too.
        while self.raw and self.raw[0] != 0 and b"\n" in self.raw:
            line, self.raw = self.raw.split(b"\n", 1)
            self.status.append(line.decode(errors="replace"))

    def _text_pending(self):
        """Whether raw starts with a status line still missing its end."""
        return self.role == "server" and self.raw[:1] not in (b"", b"\0")

    def read_packet(self, timeout):
        """Return the next packet's body; a tick is b""."""
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                self._cut_status()
                usable = len(self.raw)
                if usable >= 4 and not self._text_pending():
                    (n,) = struct.unpack_from(">I", self.raw)
                    if n > 1 << 24:
                        raise Fail("not a packet length: %r" % self.raw[:32])
                    if usable >= 4 + n:
                        body = self.raw[4:4 + n]
                        self.raw = self.raw[4 + n:]
                        return body
                if self.eof:
                    raise Fail("openssl closed its stdout (status %s): %s" %
                               (self.proc.poll(), self.last_err()))
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail("no packet from the node for %d s" % timeout)
                self.lock.wait(min(left, 0.5))

    def take_status(self):
        with self.lock:
            self._cut_status()
            s, self.status = self.status, []
            return s

    def finish(self):
        """Close openssl's stdin and return the handshake message counts
        of its message log. Both commands quit at the end of their input,
        close the connection with close_notify and flush the log."""
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise Fail("openssl did not exit 30 s after end of input")
        counts = {}
        with open(self.msgfile) as f:
            for line in f:
                m = re.match(r"(<<<|>>>) TLS 1\.[23], Handshake .*, (\w+)$",
                             line.strip())
                if m:
                    key = (m.group(1), m.group(2))
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.msgfile)


def tls_args(certdir, version, cipher, cert):
    args = ["-cert", os.path.join(certdir, cert + ".pem"),
            "-key", os.path.join(certdir, cert + ".key"),
            "-CAfile", os.path.join(certdir, "ca.pem")]
    if version == "13":
        return args + ["-tls1_3", "-ciphersuites", cipher]
    return args + ["-tls1_2", "-cipher", cipher]


# --- the acceptor's handshake (kdist connects to s_server) -----------------

def accept_handshake(p, name, cookie, creation):
    msg = p.recv_hs()
    if msg[:1] != b"N":
        raise Fail("expected the initiator's name message 'N', got %r"
                   % msg[:16])
    p.send_hs(b"sok")
    mine = int.from_bytes(os.urandom(4), "big")
    p.send_hs(b"N" + struct.pack(">QIIH", bad_peer.DFLAGS, mine, creation,
                                 len(name)) + name.encode())
    reply = p.recv_hs()
    if reply[:1] != b"r" or len(reply) != 21:
        raise Fail("expected the challenge reply 'r', got %r" % reply[:8])
    if reply[5:21] != bad_peer.digest(cookie, mine):
        raise Fail("the node's challenge digest is wrong (cookie mismatch?)")
    (theirs,) = struct.unpack_from(">I", reply, 1)
    p.send_hs(b"a" + bad_peer.digest(cookie, theirs))


def epmd_register(epmd_port, alive, port):
    """Register alive at port with EPMD; return (socket, creation)."""
    name = alive.encode()
    req = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 5, len(name)) + name \
        + struct.pack(">H", 0)
    s = socket.create_connection(("127.0.0.1", epmd_port), timeout=10)
    s.sendall(struct.pack(">H", len(req)) + req)
    resp = b""
    while len(resp) < 2 or (resp[0] == 118 and len(resp) < 6) or \
            (resp[0] == 121 and len(resp) < 4):
        data = s.recv(16)
        if not data:
            raise Fail("EPMD closed the registration of %s" % alive)
        resp += data
    if resp[1] != 0:
        raise Fail("EPMD rejected %s (result %d)" % (alive, resp[1]))
    creation = struct.unpack_from(">I" if resp[0] == 118 else ">H", resp, 2)[0]
    return s, creation or 1


def epmd_port_of(epmd_port, alive):
    s = socket.create_connection(("127.0.0.1", epmd_port), timeout=10)
    name = alive.encode()
    s.sendall(struct.pack(">HB", len(name) + 1, 122) + name)
    resp = b""
    while True:
        data = s.recv(256)
        if not data:
            break
        resp += data
    s.close()
    if len(resp) < 4 or resp[0] != 119 or resp[1] != 0:
        raise Fail("EPMD does not know %s" % alive)
    return struct.unpack_from(">H", resp, 2)[0]


def listening(port):
    """Whether a TCP socket listens on port (state 0A in /proc/net/tcp or,
    for s_server's dual-stack socket, tcp6)."""
    want = ":%04X" % port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- traffic ---------------------------------------------------------------

class Session:
    def __init__(self, p, me, creation, node):
        self.p = p
        self.me = pid(me, 1, creation)
        self.ctl = tuple_(integer(6), self.me, atom(""), atom("echo"))
        self.node = node

    def send_echo(self, term):
        msg = tuple_(self.me, term)
        self.p.write_packet(b"p" + b"\x83" + self.ctl + b"\x83" + msg)

    def recv_echo(self):
        """Return the next echoed message term (without version byte)."""
        while True:
            if time.monotonic() - self.p.last_send > TICK_EVERY:
                self.p.write_packet(b"")
            try:
                body = self.p.read_packet(TICK_EVERY)
            except Fail as e:
                if str(e).startswith("no packet") and \
                        time.monotonic() - self.p.last_send < REPLY_TIMEOUT:
                    continue
                raise
            if not body:
                continue  # a tick
            if body[0] != 112 or body[1] != 131:
                raise Fail("unexpected packet %r" % body[:16])
            i = skip_term(body, 2)
            if body[i] != 131:
                raise Fail("message without version byte: %r" % body[:32])
            return body[i + 1:]

    def batch(self, first, count):
        for i in range(first, first + count):
            self.send_echo(tuple_(atom("seq"), integer(i), binary(payload(i))))
        for i in range(first, first + count):
            want = tuple_(atom("seq"), integer(i), binary(payload(i)))
            got = self.recv_echo()
            if got != want:
                got_i = None
                if got[:1] == b"\x68" and b"seq" in got[:8]:
                    got_i = struct.unpack_from(">i", got, 7)[0]
                raise Fail("message %d: %s" % (
                    i, "got message %s instead" % got_i if got_i is not None
                    else "reply differs from what was sent"))

    def probe(self, tag):
        """One small echo: proves the link carries data after a command and
        makes s_server flush the status text of the command."""
        term = tuple_(atom("probe"), atom(tag))
        self.send_echo(term)
        got = self.recv_echo()
        if got != term:
            raise Fail("probe %s: the reply differs" % tag)


def confirm(p, role, letter, before):
    """Check openssl's confirmation of command letter; return its text.
    before is the count of s_client's confirmation lines before it.

    s_server prints its confirmation through stdio, flushed at its next
    "Read BLOCK" or at exit, so a missing line is only checked at the end
    (check_server_confirmations)."""
    if role == "client":
        want = CONFIRM[(role, letter)]
        if p.stderr_text().count(want) <= before:
            raise Fail("s_client did not confirm %r with %s: %s"
                       % (letter, want, p.last_err()))
        return want
    p.confirmed += [s for s in p.take_status()
                    if s.startswith("SSL_do_handshake")]
    for line in p.confirmed:
        if line != "SSL_do_handshake -> 1":
            raise Fail("s_server's %r failed: %s; %s" % (letter, line,
                                                         p.last_err()))
    if len(p.confirmed) < 1:
        return "no SSL_do_handshake line yet (s_server's stdout is buffered)"
    return "SSL_do_handshake -> 1 (%d so far)" % len(p.confirmed)


def check_server_confirmations(p, cmds):
    """After s_server exited: one "SSL_do_handshake -> 1" per command."""
    with p.lock:
        while not p.eof:
            p.lock.wait(1)
    p.confirmed += [s for s in p.take_status()
                    if s.startswith("SSL_do_handshake")]
    ok = p.confirmed.count("SSL_do_handshake -> 1")
    if ok != len(cmds) or len(p.confirmed) != len(cmds):
        raise Fail("s_server confirmed %d of %d commands: %r" %
                   (ok, len(cmds), p.confirmed))


def check_log(counts, version, cmds, tag):
    """Check openssl's message log against the commands: every KeyUpdate
    went out, the node replied to each K with its own KeyUpdate and nothing
    else, and each renegotiation ran to its Finished both ways."""
    def n(direction, msg):
        return counts.get((direction, msg), 0)

    if version == "13":
        sent, got = n(">>>", "KeyUpdate"), n("<<<", "KeyUpdate")
        print("%s: message log: KeyUpdate sent %d, received %d" %
              (tag, sent, got), flush=True)
        if sent != len(cmds):
            raise Fail("openssl sent %d KeyUpdates for %d commands" %
                       (sent, len(cmds)))
        if got != cmds.count("K"):
            raise Fail("the node sent %d KeyUpdates for %d update_requested"
                       % (got, cmds.count("K")))
        return
    sent, got = n(">>>", "Finished"), n("<<<", "Finished")
    print("%s: message log: Finished sent %d, received %d (handshake and "
          "renegotiations)" % (tag, sent, got), flush=True)
    if sent != 1 + len(cmds) or got != 1 + len(cmds):
        raise Fail("expected %d handshakes to finish both ways, the log "
                   "shows Finished sent %d, received %d" %
                   (1 + len(cmds), sent, got))


def start_client(args, host):
    port, node, cookie, certdir, version, cipher = args[:6]
    me = "osslc%d@%s" % (os.getpid(), host)
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:" + port, "-brief",
            "-noservername", "-verify_return_error"] + \
        tls_args(certdir, version, cipher, "client")
    p = OpensslPipe(argv, "client")
    try:
        # -brief prints this after the TLS handshake; stdin is read only
        # then.
        if not p.wait_stderr("CONNECTION ESTABLISHED", REPLY_TIMEOUT):
            raise Fail("s_client did not connect: %s" % p.last_err())
        bad_peer.dist_handshake(p, me, cookie)
    except BaseException:
        p.stop()
        raise
    return p, me, 1


def start_server(args, host):
    epmd_port, node, cookie, certdir, version, cipher = args[:6]
    alive = "ossls%d" % os.getpid()
    me = "%s@%s" % (alive, host)
    port = free_port()
    argv = ["openssl", "s_server", "-accept", str(port), "-naccept", "1",
            "-Verify", "1", "-verify_return_error"] + \
        tls_args(certdir, version, cipher, "server")
    p = OpensslPipe(argv, "server")
    try:
        # A test connection would count against -naccept, so wait for the
        # listening socket in /proc/net/tcp instead.
        deadline = time.monotonic() + 30
        while not listening(port):
            if p.proc.poll() is not None or time.monotonic() > deadline:
                raise Fail("s_server is not listening: %s" % p.last_err())
            time.sleep(0.1)
        reg, creation = epmd_register(int(epmd_port), alive, port)
        # The trigger: a direct TLS peer sends the node's echo a request
        # to reply to a pid on this name, so the node connects to s_server.
        kport = epmd_port_of(int(epmd_port), node.split("@")[0])
        trig = bad_peer.Peer(kport, certdir)
        trig_node = "trig%d@%s" % (os.getpid(), host)
        bad_peer.dist_handshake(trig, trig_node, cookie)
        hello = tuple_(atom("hello"), atom(alive))
        msg = tuple_(pid(me, 1, creation), hello)
        ctl = tuple_(integer(6), pid(trig_node, 1, 1), atom(""),
                     atom("echo"))
        trig.write(struct.pack(">I", 2 + len(ctl) + 1 + len(msg)) + b"p\x83" +
                   ctl + b"\x83" + msg)
        accept_handshake(p, me, cookie, creation)
        s = Session(p, me, creation, node)
        if s.recv_echo() != hello:
            raise Fail("the node's first message was not the trigger's echo")
        trig.sock.close()
        p.epmd = reg
    except BaseException:
        p.stop()
        raise
    return p, me, creation


def main():
    if len(sys.argv) not in (9, 10):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    role = sys.argv[1]
    args = sys.argv[2:]
    cmds = [c for c in args[6].split(",") if c]
    count = int(args[7]) if len(args) > 7 else 100
    host = socket.gethostname().split(".")[0]
    node = args[1]
    tag = "openssl_rekey: s_%s TLS %s %s" % (role, "1.3" if args[4] == "13"
                                             else "1.2", args[5])
    p = None
    try:
        if role == "client":
            p, me, creation = start_client(args, host)
        elif role == "server":
            p, me, creation = start_server(args, host)
        else:
            raise Fail("unknown role %r" % role)
        print("%s: node %s connected" % (tag, me), flush=True)
        s = Session(p, me, creation, node)
        seq = 1
        for n, letter in enumerate(cmds + [None]):
            s.batch(seq, count)
            seq += count
            print("%s: batch %d: %d echoes in order" % (tag, n + 1, count),
                  flush=True)
            if letter is None:
                break
            if role == "client" and (role, letter) not in CONFIRM:
                raise Fail("s_client has no command %r" % letter)
            before = p.stderr_text().count(CONFIRM.get((role, letter), "-"))
            p.command(letter)
            s.probe("after_" + letter)
            confirmation = confirm(p, role, letter, before)
            print("%s: command %s: %s; a probe echo came back" %
                  (tag, letter, confirmation), flush=True)
        check_log(p.finish(), args[4], cmds, tag)
        if role == "server":
            check_server_confirmations(p, cmds)
        print("%s: ok: %d messages in order across %s" %
              (tag, seq - 1, ",".join(cmds) or "no command"), flush=True)
        return 0
    except (Fail, OSError, EOFError, RuntimeError) as e:
        err = p.last_err() if p else ""
        print("%s: FAIL: %s%s" % (tag, e, " (openssl: %s)" % err if err else
                                   ""), flush=True)
        return 1
    finally:
        if p:
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
