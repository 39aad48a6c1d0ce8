"""A milter client that sends exactly the packets it is given, to play a
hostile or broken MTA against capture.

A milter packet is a 4-byte big-endian length (of what follows), a command
byte and its data (libmilter's mfdef.h; Postfix's milter8.c)."""

import socket
import struct

# Commands (MTA -> milter)
ABORT, BODY, CONNECT, MACRO, BODYEOB, HELO = b"A", b"B", b"C", b"D", b"E", b"H"
QUIT_NC, HEADER, MAIL, EOH, OPTNEG, QUIT = b"K", b"L", b"M", b"N", b"O", b"Q"
RCPT, DATA, UNKNOWN = b"R", b"T", b"U"
# Replies (milter -> MTA)
R_CONTINUE, R_TEMPFAIL, R_REPLYCODE = b"c", b"t", b"y"
R_ACCEPT, R_DISCARD, R_REJECT, R_OPTNEG = b"a", b"d", b"r", b"O"

SMFIP_NR_ALL = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | \
    0x40000 | 0x80000 | 0x100000 | 0x200000   # what Postfix 3.7 offers
ALL_ACTIONS = 0x1ff


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def cstr(*parts):
    """NUL-terminated strings, as the milter protocol sends arguments."""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0"
                    for p in parts)


def connect_data(host="client.example.net", addr="192.0.2.25", port=4321):
    return cstr(host) + b"4" + struct.pack(">H", port) + cstr(addr)


class RawMilter:
    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        """port: a TCP port on host, or the path of a unix socket."""
        if isinstance(port, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(port)
        else:
            self.sock = socket.create_connection((host, port),
                                                 timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, cmd, data=b""):
        self.sock.sendall(packet(cmd, data))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def reply(self):
        """(command byte, data), or None when the milter hung up."""
        hdr = self._exact(4)
        if hdr is None:
            return None
        n = struct.unpack(">I", hdr)[0]
        body = self._exact(n)
        if body is None or n == 0:
            return None
        return body[:1], body[1:]

    def ask(self, cmd, data=b""):
        self.send(cmd, data)
        return self.reply()

    def negotiate(self, version=6, actions=ALL_ACTIONS, protocol=SMFIP_NR_ALL):
        r = self.ask(OPTNEG, struct.pack(">III", version, actions, protocol))
        assert r is not None and r[0] == R_OPTNEG, r
        return struct.unpack(">III", r[1][:12])

    def closed(self, timeout=None):
        """True when the milter closed the connection (EOF or reset)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
