"""A private clamd (Debian's clamav-daemon) for tests and benchmarks.

Its own config, socket and database in a directory of its own: the
database is one file this module writes (test.ndb), so clamd starts in a
second or two without any download, and the system clamd/freshclam
services are neither used nor needed.  clamd runs in the foreground as
our child: stop() ends it, pause()/resume() stall it with SIGSTOP."""

import os
import signal
import socket
import subprocess
import time

CLAMD = "/usr/sbin/clamd"

EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-"
         b"TEST-FILE!$H+H*")
# A test pattern of our own, and the names clamd reports for both (it
# adds .UNOFFICIAL to signatures from databases without a digital
# signature).
OWN_PATTERN = b"msmilter-own-test-pattern-7f3a9c"
EICAR_SIG = "Msmilter.Test.Eicar.UNOFFICIAL"
OWN_SIG = "Msmilter.Test.Pattern.UNOFFICIAL"


def available():
    return os.access(CLAMD, os.X_OK)


class Clamd:
    """limits: extra clamd.conf lines (e.g. StreamMaxLength 1M)."""

    def __init__(self, base, limits=None):
        self.base = base
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        self.socket = os.path.join(base, "clamd.sock")
        self.conf = os.path.join(base, "clamd.conf")
        self.db = os.path.join(base, "db")
        self.log = os.path.join(base, "clamd.log")
        self.limits = limits or {}
        self.proc = None

    def write(self):
        os.makedirs(self.db, exist_ok=True)
        with open(os.path.join(self.db, "test.ndb"), "w") as f:
            # Name:TargetType:Offset:HexSignature; target 0 = any file.
            f.write("Msmilter.Test.Eicar:0:*:%s\n" % EICAR.hex())
            f.write("Msmilter.Test.Pattern:0:*:%s\n" % OWN_PATTERN.hex())
        conf = {
            "LocalSocket": self.socket,
            "Foreground": "yes",
            "User": "root",
            "DatabaseDirectory": self.db,
            "LogFile": self.log,
            "LogTime": "yes",
            "SelfCheck": "0",
            # Big enough for the 30 MB message, reported when exceeded.
            "StreamMaxLength": "64M",
            "MaxFileSize": "64M",
            "MaxScanSize": "128M",
            "AlertExceedsMax": "yes",
        }
        conf.update(self.limits)
        with open(self.conf, "w") as f:
            for k, v in conf.items():
                f.write("%s %s\n" % (k, v))

    def start(self, timeout=60.0):
        self.write()
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen(
            [CLAMD, "-c", self.conf], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if self.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("clamd did not answer PING within %ss:\n%s"
                           % (timeout, self.log_tail()))

    def ping(self, timeout=2.0):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(self.socket)
                s.sendall(b"zPING\0")
                return s.recv(16) == b"PONG\0"
        except OSError:
            return False

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no clamd log)"
