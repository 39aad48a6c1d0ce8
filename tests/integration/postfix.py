"""Private Postfix instances, an smtp-sink, swaks and msmilter for tests.

Standard library only (Debian's /usr/bin/python3 and pytest-3).  Nothing
here depends on msmilter's code except MsMilter, which just runs the built
binary with a generated MailScanner.conf.

Typical use (see conftest.py for the fixtures):

    def test_x(postfix_factory, msmilter_factory):
        m = msmilter_factory()
        pf = postfix_factory(milter=m.port)
        r = pf.send(data=b"Subject: x\\r\\n\\r\\nbody\\r\\n")
        assert data_reply(r.transcript).startswith("250")

Everything runs as root: Postfix's master must start as root, and smtp-sink
and msmilter drop to their own users.
"""

import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import namedtuple

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin") \
    or "/usr/sbin/postfix"
SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") \
    or "/usr/sbin/smtp-sink"
SWAKS = shutil.which("swaks", path="/usr/bin:/usr/local/bin") \
    or "/usr/bin/swaks"

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Keep temp dirs after the run for post-mortem: MSMTEST_KEEP=1.
KEEP = os.environ.get("MSMTEST_KEEP", "") not in ("", "0", "no")


# ---------------------------------------------------------------------------
# Environment checks


def skip_reason():
    """Why a private Postfix cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "private Postfix instance needs root (run the tests as root)"
    for tool in (POSTFIX, SMTP_SINK, SWAKS):
        if not os.access(tool, os.X_OK):
            return "%s not installed (sh tests/deps.sh all)" % tool
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "user postfix / group postdrop missing (reinstall postfix)"
    return None


def build_dir():
    """Directory holding the built binaries: $MSMILTER_BUILD or build/."""
    b = os.environ.get("MSMILTER_BUILD") or "build"
    if not os.path.isabs(b):
        b = os.path.join(PROJECT_ROOT, b)
    return b


# ---------------------------------------------------------------------------
# Ports

_handed_out = set()


def port_is_free(port, host="127.0.0.1"):
    """True if nothing listens on host:port and we can bind it ourselves.

    Postfix's master binds with SO_REUSEPORT, so a second instance on a
    taken port would start fine and share connections: check first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return False            # someone is listening
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))    # no SO_REUSEADDR/SO_REUSEPORT
        except OSError:
            return False
    return True


def free_port(host="127.0.0.1"):
    """A free TCP port on host, never the same twice in one test run."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port in _handed_out:
            continue
        if port_is_free(port, host):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Wait until host:port accepts connections.  False on timeout or when
    proc (a Popen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def milter_spec(milter):
    """smtpd_milters value for: None/"" (none), a port number (inet on
    127.0.0.1), "host:port", "inet:..."/"unix:..." (as is), "/abs/path"
    (unix socket), or a list of these (joined with commas)."""
    if milter is None or milter == "":
        return ""
    if isinstance(milter, (list, tuple)):
        return ",".join(milter_spec(m) for m in milter)
    if hasattr(milter, "milter"):           # an MsMilter
        return milter.milter
    if isinstance(milter, int):
        return "inet:127.0.0.1:%d" % milter
    milter = str(milter)
    if milter.startswith(("inet:", "unix:", "local:")):
        return milter
    if milter.startswith("/"):
        return "unix:" + milter
    if re.fullmatch(r"[^:\s]+:\d+", milter):
        return "inet:" + milter
    raise ValueError("bad milter target %r" % milter)


# ---------------------------------------------------------------------------
# Process helpers


def _proc_session(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # comm may contain spaces/parens: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[3])       # field 6: session id


def kill_session(sid, sig=signal.SIGKILL):
    """Send sig to every process in session sid (Postfix's master calls
    setsid(), so the session is the whole instance).  Returns the pids."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if _proc_session(pid) == sid and _pid_alive(pid):
            try:
                os.kill(pid, sig)
                pids.append(pid)
            except OSError:
                pass
    return pids


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rfind(")") + 2] != "Z"
    except OSError:
        return False


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------
# swaks


SwaksResult = namedtuple("SwaksResult", "rc transcript")

_SERVER_LINE = re.compile(r"^<(?:-|~|\*\*|~\*)\s+(.*)$")
_CLIENT_LINE = re.compile(r"^\s?(?:-|~|\*)\*?>\s?(.*)$")


def swaks(port, sender="sender@example.org", to=("rcpt@example.com",),
          data=None, body=None, headers=(), host="127.0.0.1",
          xclient_addr=None, xclient_name=None, helo=None,
          quit_after=None, pipeline=False, extra_args=(), timeout=60):
    """Run swaks against host:port and return SwaksResult(rc, transcript).

    to: a string or a list of recipients.  data: the whole message as
    bytes/str (written to a temp file and passed as --data @FILE; swaks
    turns bare LF into CRLF, dot-stuffs, replaces %DATE%-style tokens and
    the two characters backslash-n, and drops a leading "From " line: use
    RawSMTP for byte-exact input).  The message arrives as given, ending in
    one line end.  body / headers (list of
    "Name: value"): alternatives for swaks' default message.
    rc is swaks' exit code: 0 ok, 2 connect error, 21 banner, 22 HELO,
    23 MAIL, 24 no RCPT accepted, 25 DATA refused, 26 message refused
    after DATA."""
    if isinstance(to, (list, tuple)):
        to = ",".join(to)
    args = [SWAKS, "--server", host, "--port", str(port),
            "--from", sender, "--to", to, "--timeout", "30s"]
    if helo:
        args += ["--helo", helo]
    if xclient_addr:
        args += ["--xclient-addr", xclient_addr]
    if xclient_name:
        args += ["--xclient-name", xclient_name]
    if quit_after:
        args += ["--quit-after", quit_after]
    if pipeline:
        args += ["--pipeline"]
    for h in headers:
        args += ["--add-header", h]
    tmpname = None
    try:
        if data is not None:
            if isinstance(data, str):
                data = data.encode()
            # swaks appends "\r\n.\r\n" as is: without this a message
            # ending in a line end would arrive with an extra empty line.
            if data.endswith(b"\r\n"):
                data = data[:-2]
            elif data.endswith(b"\n"):
                data = data[:-1]
            fd, tmpname = tempfile.mkstemp(prefix="swaks-data-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            args += ["--data", "@" + tmpname]
        elif body is not None:
            args += ["--body", body]
        args += list(extra_args)
        p = subprocess.run(args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    finally:
        if tmpname:
            os.unlink(tmpname)
    return SwaksResult(p.returncode, p.stdout.decode("utf-8", "replace"))


def server_replies(transcript):
    """[(client_command_or_None, full_reply_text)] from a swaks transcript,
    one entry per complete server reply (multi-line replies joined with
    newlines).  The command is the client line sent just before the reply
    (for DATA content: its last line, ".")."""
    out = []
    last_cmd = None
    cur = []
    for line in transcript.splitlines():
        m = _SERVER_LINE.match(line)
        if m:
            text = m.group(1)
            cur.append(text)
            if not re.match(r"^\d{3}-", text):
                out.append((last_cmd, "\n".join(cur)))
                cur = []
            continue
        m = _CLIENT_LINE.match(line)
        if m:
            last_cmd = m.group(1)
    if cur:
        out.append((last_cmd, "\n".join(cur)))
    return out


def data_reply(transcript):
    """The server's reply to the end of DATA (the "." line), e.g.
    "250 2.0.0 Ok: queued as ABC", or None if the session never got there."""
    for cmd, reply in server_replies(transcript):
        if cmd is not None and cmd.strip() == ".":
            return reply
    return None


def reply_to(transcript, verb):
    """The server's reply to the first client command starting with verb
    (e.g. "RCPT", "MAIL", "DATA", "EHLO", "XCLIENT"), or None."""
    verb = verb.upper()
    for cmd, reply in server_replies(transcript):
        if cmd is not None and cmd.upper().startswith(verb):
            return reply
    return None


def first_error(transcript):
    """The first 4xx/5xx reply in the transcript, or None."""
    for _cmd, reply in server_replies(transcript):
        if reply[:1] in ("4", "5"):
            return reply
    return None


# ---------------------------------------------------------------------------
# A raw SMTP client for byte-exact tests (swaks rewrites line endings)


class SMTPError(Exception):
    pass


class RawSMTP:
    """Minimal SMTP client that sends exactly the bytes it is given.

        with RawSMTP(port) as c:
            c.cmd("EHLO t")            -> (code, text)
            c.cmd("MAIL FROM:<a@b>")
            c.send(b"raw bytes")       (no reply read)
            c.reply()                  -> (code, text)
    """

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.banner = self.reply()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SMTPError("connection closed; partial: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n" if isinstance(line, str)
                  else line + b"\r\n")
        return self.reply()

    def starttls(self, helo="client.test.invalid"):
        """STARTTLS (certificate not checked: tests use a self-signed
        one), then EHLO again as RFC 3207 wants.  Returns the EHLO reply."""
        import ssl
        code, text = self.cmd("STARTTLS")
        if code != 220:
            raise SMTPError("STARTTLS refused: %d %s" % (code, text))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""
        return self.cmd("EHLO " + helo)

    def message(self, sender, rcpts, data, helo="client.test.invalid",
                ehlo=True):
        """One transaction.  data is sent as given and must already be
        CRLF, dot-stuffed and end with CRLF; this adds only ".\\r\\n".
        Returns the reply to end of DATA, or the first failing reply."""
        if ehlo is not None:
            code, text = self.cmd(("EHLO " if ehlo else "HELO ") + helo)
            if code != 250:
                return code, text
        code, text = self.cmd("MAIL FROM:<%s>" % sender)
        if code != 250:
            return code, text
        ok = 0
        last = None
        for r in ([rcpts] if isinstance(rcpts, str) else rcpts):
            last = self.cmd("RCPT TO:<%s>" % r)
            ok += last[0] // 100 == 2
        if not ok:
            return last
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        self.send(data if isinstance(data, bytes) else data.encode())
        return self.cmd(b".")


# ---------------------------------------------------------------------------
# smtp-sink

SinkMessage = namedtuple("SinkMessage", "path raw client helo sender "
                                        "recipients mail_args rcpt_args "
                                        "data")


def _angle_addr(args):
    """"<a@b> SIZE=1" -> "a@b"."""
    m = re.match(r"\s*<([^>]*)>", args)
    return m.group(1) if m else args.split()[0] if args.split() else ""


def parse_sink_dump(raw, path=None):
    """Parse one smtp-sink dump file into a SinkMessage.

    smtp-sink writes X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args (one per RCPT, in order), its own three-line
    Received: header, the message as received (CRLF turned into LF,
    dot-unstuffed) and an empty line.  data is exactly the message
    Postfix sent (without smtp-sink's lines and trailing empty line);
    sender/recipients are the bare addresses, mail_args/rcpt_args the
    full MAIL/RCPT arguments (with ORCPT=, SIZE= etc.)."""
    client = helo = mail_args = None
    rcpt_args = []
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i].decode("utf-8", "replace")
        name, _, value = line.partition(": ")
        if name == "X-Client-Addr":
            client = value
        elif name == "X-Helo-Args":
            helo = value
        elif name == "X-Mail-Args":
            mail_args = value
        elif name == "X-Rcpt-Args":
            rcpt_args.append(value)
        elif name != "X-Client-Proto":
            break
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received: from "):
        i += 1
        while i < len(lines) and lines[i][:1] in (b"\t", b" "):
            i += 1
    data = b"\n".join(lines[i:])
    if data.endswith(b"\n\n"):
        data = data[:-1]
    return SinkMessage(path, raw, client, helo,
                       _angle_addr(mail_args or ""),
                       [_angle_addr(r) for r in rcpt_args],
                       mail_args, rcpt_args, data)


class SmtpSink:
    """smtp-sink on a free 127.0.0.1 port, dumping each message to a file
    in self.dir (owned by postfix, since smtp-sink runs as postfix)."""

    def __init__(self, base, port=None, extra_args=()):
        self.dir = os.path.join(base, "sink")
        os.makedirs(self.dir, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self.port = port or free_port()
        self.log = os.path.join(base, "smtp-sink.log")
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        args = [SMTP_SINK, "-u", "postfix", "-h", "sink.test.invalid",
                "-d", os.path.join(self.dir, "msg.")] + self.extra_args + \
               ["127.0.0.1:%d" % self.port, "64"]
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=self._logf,
                                     start_new_session=True)
        if not wait_port(self.port, timeout=10, proc=self.proc):
            self.stop()
            raise RuntimeError("smtp-sink did not start on port %d:\n%s"
                               % (self.port, tail(self.log)))
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
            self._logf.close()

    def files(self):
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        # smtp-sink removes the dump of a transaction that was cut short:
        # a name listed a moment ago may be gone (seen under load).
        stamped = []
        for n in names:
            p = os.path.join(self.dir, n)
            try:
                stamped.append((os.stat(p).st_mtime_ns, p))
            except FileNotFoundError:
                pass
        return [p for _, p in sorted(stamped)]

    def open_files(self):
        """Dump files smtp-sink still has open (transactions in progress)."""
        if self.proc is None:
            return set()
        fddir = "/proc/%d/fd" % self.proc.pid
        out = set()
        try:
            fds = os.listdir(fddir)
        except OSError:
            return out
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fddir, fd))
            except OSError:
                continue
            if target.startswith(self.dir + "/"):
                out.add(target)
        return out

    def messages(self, settle=2.0):
        """Every complete message received so far, oldest first, as
        SinkMessage.  Waits up to settle seconds for dump files that
        smtp-sink is still writing; files still open after that are left
        out."""
        deadline = time.monotonic() + settle
        while self.open_files() and time.monotonic() < deadline:
            time.sleep(0.02)
        # Listed first, then checked: a dump created after the check but
        # listed with the others was read empty (seen under the
        # sanitizers).  One not yet listed waits for the next call.
        files = self.files()
        busy = self.open_files()
        out = []
        for p in files:
            if p in busy:
                continue
            try:
                with open(p, "rb") as f:
                    out.append(parse_sink_dump(f.read(), p))
            except FileNotFoundError:
                continue            # cut short and removed meanwhile
        return out

    def clear(self):
        for p in self.files():
            os.unlink(p)


# ---------------------------------------------------------------------------
# Postfix


class PostfixError(RuntimeError):
    pass


class Postfix:
    """A private Postfix instance under base (a directory of its own).

    milter: see milter_spec(); set on the SMTP listener only (with
    milter_default_action and milter_protocol=6).
    main_cf: dict of extra/overriding main.cf settings.
    smtpd_options: dict of extra "-o name=value" for the SMTP listener
    (values must not contain whitespace).
    sink: True (start an smtp-sink and relay everything to it), False
    (default_transport = discard), or an existing SmtpSink.
    reinject: also run a second smtpd listener without milters
    (self.reinject_port), as the relay's target.
    qmqp: also run qmqpd on 127.0.0.1 (self.qmqp_port); qmqp_unix: also as
    "qmqp unix" (socket self.qmqp_socket).
    master_cf_extra: more master.cf lines (a string).
    quick_start: skip postfix-script's slow integrity checks at start.
    """

    def __init__(self, base, milter=None, milter_default_action="tempfail",
                 main_cf=None, smtpd_options=None, sink=True,
                 reinject=False, qmqp=False, qmqp_unix=False,
                 master_cf_extra="", quick_start=True):
        self.base = base
        self.quick_start = quick_start
        self.config_dir = os.path.join(base, "etc")
        self.queue_dir = os.path.join(base, "spool")
        self.data_dir = os.path.join(base, "data")
        self.log_dir = os.path.join(base, "log")
        self.maillog_path = os.path.join(self.log_dir, "maillog")
        self.milter = milter_spec(milter)
        self.milter_default_action = milter_default_action
        self.main_cf_extra = dict(main_cf or {})
        self.smtpd_options = dict(smtpd_options or {})
        self.master_cf_extra = master_cf_extra
        self.smtp_port = free_port()
        self.reinject_port = free_port() if reinject else None
        self.qmqp_port = free_port() if qmqp else None
        self.qmqp_socket = os.path.join(self.queue_dir, "public", "qmqp") \
            if qmqp_unix else None
        self.tag = "msmtest-%d-%d" % (os.getpid(), self.smtp_port)
        if sink is True:
            self.sink = SmtpSink(base)
            self._own_sink = True
        elif sink:
            self.sink = sink
            self._own_sink = False
        else:
            self.sink = None
            self._own_sink = False
        self.master_pid = None
        self.running = False

    # -- configuration ----------------------------------------------------

    def main_cf_settings(self):
        s = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "myhostname": "mx.test.invalid",
            "mydomain": "test.invalid",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": "127.0.0.0/8",
            # XCLIENT may make the client look like any address: every
            # domain is a relay domain, so no client is refused at RCPT
            # (a bare "permit" trips smtpd's open-relay safety check).
            "relay_domains": "static:ALL",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "qmqpd_authorized_clients": "127.0.0.0/8",
            "in_flow_delay": "0",
            "smtpd_banner": "$myhostname ESMTP " + self.tag,
            "maillog_file": self.maillog_path,
            "maillog_file_prefixes": self.log_dir,
            "syslog_name": "postfix-test",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "yes",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "non_smtpd_milters": "",
            "smtpd_milters": "",
        }
        if self.sink is not None:
            s.update({
                "relayhost": "[127.0.0.1]:%d" % self.sink.port,
                "default_transport": "smtp",
                "relay_transport": "smtp",
            })
        else:
            s.update({
                "default_transport": "discard",
                "relay_transport": "discard",
            })
        s.update(self.main_cf_extra)
        return s

    def master_cf_text(self):
        o = {
            "smtpd_milters": self.milter,
            "milter_default_action": self.milter_default_action,
            "milter_protocol": "6",
        }
        o.update(self.smtpd_options)
        for k, v in o.items():
            if re.search(r"\s", str(v)):
                raise ValueError("-o %s=%r: no whitespace allowed (use "
                                 "main_cf instead)" % (k, v))
        opts = "".join("\n  -o %s=%s" % (k, v) for k, v in o.items())
        lines = [
            "# service type  private unpriv  chroot  wakeup  maxproc command",
            "127.0.0.1:%d inet n - n - - smtpd%s" % (self.smtp_port, opts),
        ]
        if self.reinject_port:
            lines.append("127.0.0.1:%d inet n - n - - smtpd\n"
                         "  -o smtpd_milters=\n"
                         "  -o syslog_name=postfix-test/reinject"
                         % self.reinject_port)
        if self.qmqp_port:
            lines.append("127.0.0.1:%d inet n - n - - qmqpd"
                         % self.qmqp_port)
        if self.qmqp_socket:
            lines.append("qmqp      unix  n       -       n       -       -"
                         "       qmqpd")
        lines.append("""\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd""")
        if self.master_cf_extra:
            lines.append(self.master_cf_extra.rstrip("\n"))
        return "\n".join(lines) + "\n"

    def write_config(self):
        pw = pwd.getpwnam("postfix")
        for d in (self.base, self.config_dir, self.queue_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, 0, 0)
            os.chmod(d, 0o755)
        os.makedirs(self.data_dir, exist_ok=True)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        # The queue subdirectories as postfix-files wants them.  `postfix
        # start` would create them itself, but its post-install takes over
        # two seconds to do so and well under one when nothing is missing.
        postdrop = grp.getgrnam("postdrop").gr_gid
        for name, gid, mode in (
                ("active", 0, 0o700), ("bounce", 0, 0o700),
                ("corrupt", 0, 0o700), ("defer", 0, 0o700),
                ("deferred", 0, 0o700), ("flush", 0, 0o700),
                ("hold", 0, 0o700), ("incoming", 0, 0o700),
                ("private", 0, 0o700), ("saved", 0, 0o700),
                ("trace", 0, 0o700), ("maildrop", postdrop, 0o730),
                ("public", postdrop, 0o710), ("pid", None, 0o755)):
            d = os.path.join(self.queue_dir, name)
            os.makedirs(d, exist_ok=True)
            if gid is None:
                os.chown(d, 0, 0)
            else:
                os.chown(d, pw.pw_uid, gid)
            os.chmod(d, mode)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for k, v in self.main_cf_settings().items():
                if v is None:
                    continue            # main_cf={"x": None}: drop a default
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(self.master_cf_text())
        # Postfix re-reads a table/config file until its mtime is a couple
        # of seconds old (it may still be being edited): every Postfix
        # command would stall ~2 s on a fresh main.cf.  Backdate them.
        old = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(os.path.join(self.config_dir, name), (old, old))

    # -- control ------------------------------------------------------------

    def postfix_cmd(self, *args, check=False, timeout=60):
        """Run `postfix -c CONFIG_DIR args...`; returns CompletedProcess."""
        p = subprocess.run([POSTFIX, "-c", self.config_dir] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if check and p.returncode != 0:
            raise PostfixError("postfix %s failed (%d): %s\n--- maillog:\n%s"
                               % (" ".join(args), p.returncode,
                                  p.stdout.decode("utf-8", "replace"),
                                  self.maillog_tail()))
        return p

    def postconf(self, *args):
        """Run `postconf -c CONFIG_DIR args...` and return its stdout."""
        p = subprocess.run(["postconf", "-c", self.config_dir] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           check=True)
        return p.stdout.decode()

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid",
                                   "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        """Write the configuration, start the sink and Postfix, and wait
        until the SMTP listener(s) answer with this instance's banner."""
        if not port_is_free(self.smtp_port):
            raise PostfixError("port %d already taken" % self.smtp_port)
        self.write_config()
        if self.quick_start:
            # Skip postfix-script's integrity checks (post-install alone
            # takes over two seconds); write_config made the queue
            # directories they would create.
            open(os.path.join(self.queue_dir, "quick-start"), "w").close()
        if self.sink is not None and self._own_sink:
            self.sink.start()
        p = self.postfix_cmd("start")
        self.master_pid = self._read_master_pid()
        self.running = True     # so stop() cleans up even if we fail below
        if p.returncode != 0:
            out = p.stdout.decode("utf-8", "replace")
            self.stop()
            raise PostfixError("postfix start failed (%d): %s\n--- maillog "
                               "tail:\n%s" % (p.returncode, out,
                                              self.maillog_tail()))
        ports = [self.smtp_port] + [x for x in (self.reinject_port,)
                                    if x]
        for port in ports:
            if not self._wait_banner(port, 15):
                self.stop()
                raise PostfixError("Postfix SMTP listener on port %d did not "
                                   "answer with banner %r\n--- maillog "
                                   "tail:\n%s" % (port, self.tag,
                                                  self.maillog_tail()))
        if self.qmqp_port and not wait_port(self.qmqp_port, timeout=10):
            self.stop()
            raise PostfixError("qmqpd port %d did not open\n%s"
                               % (self.qmqp_port, self.maillog_tail()))
        if self.master_pid is None:
            self.master_pid = self._read_master_pid()
        return self

    def _wait_banner(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=1) as s:
                    banner = s.recv(1024).decode("latin-1")
                    try:
                        s.sendall(b"QUIT\r\n")
                    except OSError:
                        pass
                    if self.tag in banner:
                        return True
                    if banner.startswith("220"):
                        # someone else's server on our port (SO_REUSEPORT)
                        return False
            except OSError:
                pass
            if re.search(r"(fatal|panic):|bad command startup",
                         self.maillog()):
                return False    # a daemon cannot start: fail fast
            time.sleep(0.05)
        return False

    def stop(self):
        """Stop Postfix (gracefully, then by force) and the sink.  Safe to
        call repeatedly; kills every process left in the master's
        session."""
        if self.running:
            pid = self.master_pid or self._read_master_pid()
            # SIGTERM to master is what `postfix stop` does, without its
            # one-second polling sleep.
            sent = False
            if pid and _pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                    sent = True
                except OSError:
                    pass
            if not sent:
                try:
                    self.postfix_cmd("stop", timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if pid:
                deadline = time.monotonic() + 10
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _pid_alive(pid):
                    try:
                        self.postfix_cmd("abort", timeout=30)
                    except subprocess.TimeoutExpired:
                        pass
                    time.sleep(0.2)
                # master did setsid(): its session is the instance
                for _ in range(20):
                    if not kill_session(pid):
                        break
                    time.sleep(0.05)
            self.running = False
        if self.sink is not None and self._own_sink:
            self.sink.stop()

    def leftover_pids(self):
        """Processes still running in this instance's session."""
        if not self.master_pid:
            return []
        return [int(d) for d in os.listdir("/proc")
                if d.isdigit() and _proc_session(int(d)) == self.master_pid
                and _pid_alive(int(d))]

    def reload(self):
        self.write_config()
        self.postfix_cmd("reload", check=True)

    def flush(self):
        """Ask the queue manager to retry deferred mail now."""
        self.postfix_cmd("flush")

    # -- observation --------------------------------------------------------

    QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def queue_files(self, queues=QUEUES):
        """Paths of the message files in the named queues (walked
        directly: no set-gid postqueue needed)."""
        out = []
        for q in queues:
            for dirpath, _dirs, files in os.walk(
                    os.path.join(self.queue_dir, q)):
                out += [os.path.join(dirpath, f) for f in files]
        return out

    def wait_queue_empty(self, timeout=20.0, queues=("maildrop", "incoming",
                                                     "active", "deferred")):
        """Wait until maildrop/incoming/active/deferred hold no message.
        Returns True, or False on timeout.  Deferred mail is retried
        (postfix flush) while waiting."""
        deadline = time.monotonic() + timeout
        next_flush = time.monotonic() + 2
        while True:
            files = self.queue_files(queues)
            if not files:
                return True
            if time.monotonic() >= deadline:
                return False
            if time.monotonic() >= next_flush and any(
                    "/deferred/" in f for f in files):
                self.flush()
                next_flush = time.monotonic() + 2
            time.sleep(0.05)

    def sink_messages(self):
        """What the smtp-sink received so far: [SinkMessage] oldest first
        (fields path, raw, client, sender, recipients, data)."""
        return self.sink.messages() if self.sink else []

    def wait_sink(self, count=1, timeout=20.0):
        """Wait until the sink holds at least count messages; returns the
        messages (possibly fewer, on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.sink_messages()
            if len(msgs) >= count or time.monotonic() >= deadline:
                return msgs
            time.sleep(0.05)

    def maillog(self):
        """The whole Postfix log of this instance, as text."""
        try:
            with open(self.maillog_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines=40):
        return tail(self.maillog_path, lines)

    def wait_log(self, pattern, timeout=10.0):
        """Wait until the maillog matches regex pattern; returns the match
        or None on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.maillog())
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.05)

    # -- clients ------------------------------------------------------------

    def send(self, sender="sender@example.org", to=("rcpt@example.com",),
             data=None, port=None, **kw):
        """swaks against this instance's SMTP listener (or port=...).
        Returns SwaksResult(rc, transcript); see swaks() for the rest."""
        return swaks(port or self.smtp_port, sender=sender, to=to,
                     data=data, **kw)

    def raw_smtp(self, port=None, timeout=30):
        """A RawSMTP connection to the SMTP listener (or port=...)."""
        return RawSMTP(port or self.smtp_port, timeout=timeout)

    def __repr__(self):
        return "<Postfix %s smtp=%s milter=%r>" % (self.base, self.smtp_port,
                                                   self.milter)


# ---------------------------------------------------------------------------
# msmilter


class MsMilterError(RuntimeError):
    pass


class MsMilter:
    """build/msmilter -F -f CONF with a generated MailScanner.conf.

    settings: dict of extra/overriding config keys (value None removes a
    default key).  extra_conf: raw text appended to the config file.
    args: extra command line arguments.  env: extra environment."""

    def __init__(self, base, settings=None, extra_conf="", args=(),
                 env=None, binary=None):
        self.base = base
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        self.port = free_port()
        self.milter = "inet:127.0.0.1:%d" % self.port
        self.conf = os.path.join(base, "MailScanner.conf")
        self.milterin = os.path.join(base, "milterin")
        self.milterout = os.path.join(base, "milterout")
        self.pidfile = os.path.join(base, "msmilter.pid")
        self.chroot = os.path.join(base, "empty")
        # The audit log is on in every test: unkeyed unless a test runs
        # msmilter-audit keygen into audit_keydir.
        self.audit_log = os.path.join(base, "audit.log")
        self.audit_keydir = os.path.join(base, "audit-key")
        self.control = os.path.join(base, "control")
        self.stderr_path = os.path.join(base, "msmilter.stderr")
        self.binary = binary or os.path.join(build_dir(), "msmilter")
        self.args = list(args)
        self.env = dict(env or {})
        s = {
            "Incoming Queue Dir": self.milterin,
            "Outgoing Queue Dir": self.milterout,
            "MTA": "msmail",
            "Delivery Method": "queue",
            "Milter Bind": "127.0.0.1",
            "Milter Port": str(self.port),
            "Milter PID File": self.pidfile,
            "Run As User": "postfix",
            "Run As Group": "postfix",
            "Milter Ignore Loopback": "no",
            "Milter Scanner": "no",
            "Milter Chroot": self.chroot,
            "Milter User": "nobody",
            "Milter Audit Log": self.audit_log,
            "Milter Audit Key Dir": self.audit_keydir,
            # Its own, not /run/msmilter/control: tests run side by side.
            "Milter Control Socket": self.control,
        }
        for k, v in (settings or {}).items():
            # keys compare case- and space-insensitively: replace a default
            norm = k.replace(" ", "").lower()
            for dk in list(s):
                if dk.replace(" ", "").lower() == norm:
                    del s[dk]
            s[k] = v
        self.settings = s
        self.extra_conf = extra_conf
        self.proc = None

    def write_config(self):
        pw = pwd.getpwnam("postfix")
        gr = grp.getgrnam("postfix")
        for d in (self.milterin, self.milterout):
            os.makedirs(d, exist_ok=True)
            os.chown(d, pw.pw_uid, gr.gr_gid)
            os.chmod(d, 0o750)
        os.makedirs(self.chroot, exist_ok=True)
        os.chown(self.chroot, 0, 0)
        os.chmod(self.chroot, 0o755)
        with open(self.conf, "w") as f:
            f.write("# generated by tests/integration/postfix.py\n")
            for k, v in self.settings.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))
            if self.extra_conf:
                f.write(self.extra_conf.rstrip("\n") + "\n")

    def start(self, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            raise MsMilterError("%s not built (make)" % self.binary)
        self.write_config()
        env = dict(os.environ)
        env.setdefault("MSMILTER_LIBEXECDIR", os.path.dirname(self.binary))
        env.update(self.env)
        self._errf = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-f", self.conf] + self.args,
            stdin=subprocess.DEVNULL, stdout=self._errf, stderr=self._errf,
            env=env, cwd=self.base)
        if not wait_port(self.port, timeout=timeout, proc=self.proc):
            rc = self.proc.poll()
            self.stop()
            why = ("exited with status %s before accepting connections" % rc
                   if rc is not None else
                   "did not accept connections within %ss" % timeout)
            raise MsMilterError("msmilter (port %d) %s\n--- stderr:\n%s"
                                % (self.port, why, self.stderr()))
        return self

    def stop(self, timeout=10.0):
        """SIGTERM and wait; SIGKILL after timeout.  Returns the exit
        status (None if it was never started)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(5)
        self._errf.close()
        self.proc = None
        self.returncode = rc
        return rc

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def logged(self, *texts, timeout=10):
        """stderr once it holds every one of texts, or as it is after
        timeout seconds: the children's lines reach it through the
        parent, possibly after the SMTP reply they explain."""
        deadline = time.monotonic() + timeout
        while True:
            err = self.stderr()
            if all(t in err for t in texts) or time.monotonic() > deadline:
                return err
            time.sleep(0.05)

    def milterin_files(self):
        """Names in milterin (temp files included), sorted."""
        return sorted(os.listdir(self.milterin))

    def milterout_files(self):
        return sorted(os.listdir(self.milterout))

    def __repr__(self):
        return "<MsMilter %s port=%d>" % (self.base, self.port)



# ---------------------------------------------------------------------------
# msmilter's processes, seen through /proc


def child_pids(parent_pid):
    """{"capture": pid, "spooler": pid, "relay": pid} of msmilter's running
    children (None for one that is not running)."""
    out = {"capture": None, "spooler": None, "relay": None}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid != parent_pid:
            continue
        # comm is cut to 15 characters: "msmilter-captur".
        for name in out:
            if ("msmilter-" + name).startswith(comm):
                out[name] = int(d)
    return out


def vm_hwm_kb(pid):
    """Peak resident set size of pid, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)

# ---------------------------------------------------------------------------
# Temp dirs


def make_base(prefix="msmtest-", parent="/tmp"):
    """A fresh root-owned 0755 directory under /tmp (not pytest's tmp_path:
    that sits below a 0700 directory that postfix-owned processes cannot
    traverse)."""
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    return d


def remove_base(d):
    if not KEEP:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# pytest fixtures.  conftest.py re-exports them; another test directory's
# conftest.py can do the same with `from postfix import *` (tests/pytest.ini
# puts tests/integration on sys.path).  All function-scoped; teardown stops
# everything a test started.

try:
    import pytest
except ImportError:             # usable without pytest, e.g. from a script
    pytest = None

if pytest is not None:
    @pytest.fixture
    def test_base():
        """A fresh root-owned 0755 directory under /tmp; skips the test
        when Postfix cannot run here."""
        reason = skip_reason()
        if reason:
            pytest.skip(reason)
        d = make_base()
        yield d
        remove_base(d)

    @pytest.fixture
    def postfix_factory(test_base):
        """postfix_factory(**kw) -> a started Postfix (kw as Postfix())."""
        made = []

        def factory(**kw):
            base = os.path.join(test_base, "pf%d" % (len(made) + 1))
            pf = Postfix(base, **kw)
            made.append(pf)
            pf.start()
            return pf

        yield factory
        errors = []
        for pf in reversed(made):
            try:
                pf.stop()
            except Exception as e:      # keep stopping the others
                errors.append("%r: %s" % (pf, e))
            left = pf.leftover_pids()
            if left:
                kill_session(pf.master_pid)
                errors.append("%r: processes left after stop: %s"
                              % (pf, left))
        if errors:
            pytest.fail("Postfix teardown: " + "; ".join(errors))

    @pytest.fixture
    def postfix(postfix_factory):
        """A started Postfix without milter, relaying to its smtp-sink."""
        return postfix_factory()

    @pytest.fixture
    def msmilter_factory(test_base):
        """msmilter_factory(settings=None, extra_conf="", args=(), env=None,
        start=True, binary=None) -> MsMilter (started unless start=False)."""
        made = []

        def factory(settings=None, extra_conf="", args=(), env=None,
                    start=True, binary=None):
            base = os.path.join(test_base, "msm%d" % (len(made) + 1))
            m = MsMilter(base, settings=settings, extra_conf=extra_conf,
                         args=args, env=env, binary=binary)
            made.append(m)
            if start:
                m.start()
            return m

        yield factory
        for m in reversed(made):
            m.stop()

    @pytest.fixture
    def msmilter(msmilter_factory):
        """A started msmilter with the default test settings."""
        return msmilter_factory()


__all__ = [
    # fixtures
    "test_base", "postfix_factory", "postfix", "msmilter_factory",
    "msmilter",
    # classes and helpers
    "Postfix", "PostfixError", "SmtpSink", "SinkMessage", "MsMilter",
    "MsMilterError", "RawSMTP", "SMTPError", "SwaksResult", "swaks",
    "server_replies", "data_reply", "reply_to", "first_error",
    "free_port", "port_is_free", "wait_port", "milter_spec", "build_dir",
    "child_pids", "vm_hwm_kb",
    "skip_reason", "make_base", "remove_base", "kill_session",
    "parse_sink_dump", "PROJECT_ROOT",
]
if pytest is None:
    __all__ = __all__[5:]
