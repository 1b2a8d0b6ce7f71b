"""Helpers for the hostile-client tests (test_hostile.py): a raw line-level
client over plaintext, STARTTLS or implicit TLS in which every socket
operation has a timeout, the "a new client is still served within 1 s"
checks for SMTP, IMAP and POP3, the daemon's resident memory from /proc, and
a guard around each daemon of the module that restarts it when an earlier
case killed or wedged it.

The daemons themselves are started by mx_env, sub_env and mra_env.
"""
import os
import socket
import ssl
import time

HOST = "127.0.0.1"
HANG = 3.0          # seconds a hostile exchange may wait for one answer
HEALTH = 1.0        # socket timeout of the "new normal client" check
RSS_MARGIN_KB = 8 * 1024


class Hang(AssertionError):
    """The daemon neither answered nor closed the connection in time."""


_CTX = []


def client_ctx():
    """One shared context that verifies nothing (the test certificate is
    self-signed); loading the system CA store per connection would cost
    0.2 s a handshake."""
    if not _CTX:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CTX.append(ctx)
    return _CTX[0]


class Conn:
    """A raw client connection. line() returns one line without its CRLF,
    or None when the peer closed; a timeout raises Hang."""

    def __init__(self, port, timeout=HANG, tls=False, sock=None):
        self.timeout = timeout
        self.s = sock or socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        if tls:
            self.wrap()

    def wrap(self):
        assert self.buf == b"", "bytes pending before the TLS handshake: %r" % self.buf
        self.s.settimeout(self.timeout)
        try:
            self.s = client_ctx().wrap_socket(self.s)
        except socket.timeout:
            raise Hang("no TLS handshake within %.1fs" % self.timeout)

    def send_hostile(self, data, timeout=None):
        """send(), but the daemon may refuse and close before it has read
        everything: False then (its answer may still be readable)."""
        try:
            self.send(data, timeout)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError,
                ssl.SSLZeroReturnError):
            return False

    def send(self, data, timeout=None):
        self.s.settimeout(timeout or self.timeout)
        try:
            self.s.sendall(data)
        except socket.timeout:
            raise Hang("the daemon stopped reading: %d bytes not taken within "
                       "%.1fs" % (len(data), timeout or self.timeout))

    def _fill(self, timeout):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise Hang("no answer within %.1fs (have %r)" % (timeout, self.buf[:200]))
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            d = b""
        except ssl.SSLError as e:
            if "EOF" in str(e) or "SHUTDOWN" in str(e).upper():
                d = b""
            else:
                raise
        return d

    def line(self, timeout=None):
        timeout = timeout or self.timeout
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise Hang("no complete line within %.1fs (have %r)"
                           % (timeout, self.buf[:200]))
            d = self._fill(left)
            if not d:
                if self.buf:
                    ln, self.buf = self.buf, b""
                    return ln
                return None
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln[:-1] if ln.endswith(b"\r") else ln

    def silent(self, seconds):
        """True when nothing arrives (and the peer stays open) for seconds."""
        if self.buf:
            return False
        try:
            d = self._fill(seconds)
        except Hang:
            return True
        self.buf += d
        return False

    def eof(self, timeout=None):
        """Read (and drop) until the peer closes; True if it did in time."""
        timeout = timeout or self.timeout
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return False
            try:
                d = self._fill(left)
            except Hang:
                return False
            except OSError:
                return True
            if not d:
                return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- SMTP ---------------------------------------------------------

    def reply(self, timeout=None):
        """One SMTP reply: (code, text of the last line, all lines) or
        (None, None, lines) when the peer closed."""
        lines = []
        while True:
            ln = self.line(timeout)
            if ln is None:
                return None, None, lines
            lines.append(ln)
            if len(ln) < 4 or ln[3:4] != b"-":
                try:
                    code = int(ln[:3])
                except ValueError:
                    raise AssertionError("not an SMTP reply: %r" % lines)
                return code, ln[4:].decode("latin-1"), lines

    def cmd(self, line, timeout=None):
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply(timeout)

    # ---- IMAP ---------------------------------------------------------

    def cmd_imap(self, tag, text, timeout=None):
        self.send(("%s %s\r\n" % (tag, text)).encode())
        return self.tagged(tag, timeout)

    def tagged(self, tag, timeout=None):
        """Lines up to the tagged answer (the last line), or up to close
        (then the list does not end in a tagged line)."""
        out = []
        t = tag.encode() + b" "
        while True:
            ln = self.line(timeout)
            if ln is None:
                return out
            out.append(ln)
            if ln.startswith(t):
                return out


def smtp_open(port, mode, timeout=HANG, ehlo=True):
    c = Conn(port, timeout, tls=(mode == "tls"))
    try:
        code, text, lines = c.reply()
        assert code == 220, "greeting: %r" % lines
        if ehlo or mode == "starttls":
            code, text, lines = c.cmd("EHLO client.test")
            assert code == 250, "EHLO: %r" % lines
        if mode == "starttls":
            code, text, lines = c.cmd("STARTTLS")
            assert code == 220, "STARTTLS: %r" % lines
            c.wrap()
            if ehlo:
                code, text, lines = c.cmd("EHLO client.test")
                assert code == 250, "EHLO after STARTTLS: %r" % lines
    except BaseException:
        c.close()
        raise
    return c


def imap_open(port, mode, timeout=HANG):
    c = Conn(port, timeout, tls=(mode == "tls"))
    try:
        g = c.line()
        assert g is not None and g.startswith(b"* OK"), "greeting: %r" % g
        if mode == "starttls":
            r = c.cmd_imap("S", "STARTTLS")
            assert r and r[-1].startswith(b"S OK"), "STARTTLS: %r" % r
            c.wrap()
    except BaseException:
        c.close()
        raise
    return c


def pop3_open(port, mode, timeout=HANG):
    c = Conn(port, timeout, tls=(mode == "tls"))
    try:
        g = c.line()
        assert g is not None and g.startswith(b"+OK"), "greeting: %r" % g
        if mode == "starttls":
            c.send(b"STLS\r\n")
            r = c.line()
            assert r is not None and r.startswith(b"+OK"), "STLS: %r" % r
            c.wrap()
    except BaseException:
        c.close()
        raise
    return c


def pop3_multiline(c, timeout=None):
    first = c.line(timeout)
    if first is None or not first.startswith(b"+OK"):
        return first, None
    body = []
    while True:
        ln = c.line(timeout)
        if ln is None:
            raise AssertionError("closed inside a multi-line answer: %r" % body)
        if ln == b".":
            return first, body
        body.append(ln)


# ---- "is a new normal client served within 1 s" --------------------------

def smtp_health(port, mode):
    with smtp_open(port, mode, timeout=HEALTH):
        pass


def imap_health(port, mode):
    with imap_open(port, mode, timeout=HEALTH) as c:
        r = c.cmd_imap("h", "CAPABILITY")
        assert any(ln.startswith(b"* CAPABILITY") for ln in r) and \
            r[-1].startswith(b"h OK"), "CAPABILITY: %r" % r


def pop3_health(port, mode):
    with pop3_open(port, mode, timeout=HEALTH) as c:
        c.send(b"CAPA\r\n")
        first, body = pop3_multiline(c)
        assert body is not None, "CAPA: %r" % first


HEALTH_CHECK = {"smtp": smtp_health, "imap": imap_health, "pop3": pop3_health}


# ---- memory --------------------------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def rss_settle(pid, limit_kb, wait=2.0):
    """The daemon's RSS, polled for up to wait seconds until it is at most
    limit_kb (a session is freed a moment after its client closed)."""
    deadline = time.time() + wait
    while True:
        try:
            kb = rss_kb(pid)
        except (OSError, RuntimeError):
            return None
        if kb <= limit_kb or time.time() >= deadline:
            return kb
        time.sleep(0.1)


def sanitized(binary):
    """True for a build under AddressSanitizer (make asan): its allocator
    keeps freed memory in quarantine, so RSS says nothing about leaks."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


# ---- one daemon shared by the module --------------------------------------

class Guard:
    """Wraps a started environment (MX, SubEnv or MraEnv).

    ports: {name: (protocol, attribute of env holding the port number)}.
    ensure() restarts the daemon (same configuration) when an earlier case
    left it dead or no longer answering, so later cases stay meaningful;
    the case that broke it has already failed its own checks."""

    def __init__(self, name, env, ports, start, log):
        self.name = name
        self.sanitized = sanitized(env.proc.args[0])
        self.env = env
        self.ports = ports
        self._start = start
        self._log = log
        self.restarts = 0

    def port(self, name):
        return getattr(self.env, self.ports[name][1])

    def proto(self, name):
        return self.ports[name][0]

    @property
    def proc(self):
        return self.env.proc

    @property
    def pid(self):
        return self.env.proc.pid

    def alive(self):
        return self.env.proc is not None and self.env.proc.poll() is None

    def log_tail(self, n=15):
        """The end of the daemon's log, or its sanitizer report."""
        try:
            text = self._log()
        except OSError:
            return ""
        for mark in ("ERROR: AddressSanitizer", "runtime error:"):
            at = text.rfind(mark)
            if at >= 0:
                at = text.rfind("\n", 0, at) + 1
                return "\n".join(text[at:].splitlines()[:25])
        return "\n".join(text.splitlines()[-n:])

    def responsive(self):
        for name in self.ports:
            proto = self.proto(name)
            mode = "tls" if name in ("465", "993", "995") else "plain"
            try:
                HEALTH_CHECK[proto](self.port(name), mode)
            except (AssertionError, OSError, ssl.SSLError):
                return False
        return True

    def warm_up(self):
        """One normal session per port and mode, so that what a daemon
        allocates once (TLS library state, thread arenas) is not counted
        against the first hostile case."""
        for name in self.ports:
            proto = self.proto(name)
            modes = ["tls"] if name in ("465", "993", "995") else ["plain", "starttls"]
            for mode in modes:
                try:
                    HEALTH_CHECK[proto](self.port(name), mode)
                except (AssertionError, OSError, ssl.SSLError):
                    pass

    def ensure(self):
        if not (self.alive() and self.responsive()):
            self.restart()

    def restart(self):
        """Kill (our own child, by PID) and start again, same ports."""
        if self.alive():
            self.env.proc.kill()
            self.env.proc.wait()
        self.restarts += 1
        self._start()
        deadline = time.time() + 10
        while not self.responsive():
            if time.time() > deadline or not self.alive():
                raise RuntimeError("%s does not come back after a restart:\n%s"
                                   % (self.name, self.log_tail()))
            time.sleep(0.1)
        self.warm_up()

    def close(self):
        """Before the environment's cleanup: a wedged daemon would not
        stop on SIGTERM, so it is killed first."""
        if self.alive() and not self.responsive():
            self.env.proc.kill()
            self.env.proc.wait()
        self.env.cleanup()


def cpu_ticks(pid):
    """utime + stime of the process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def spinning(pid, seconds=0.3, samples=6):
    """None when the daemon is idle; otherwise why it is not: a thread
    runnable in every sample, or more than half a CPU used (on a loaded
    machine a spinning thread may get much less than a whole CPU)."""
    hz = os.sysconf("SC_CLK_TCK")
    running = None
    try:
        t0 = cpu_ticks(pid)
        for _ in range(samples):
            now = set()
            for t in os.listdir("/proc/%d/task" % pid):
                try:
                    with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "R":
                            now.add(t)
                except OSError:
                    pass
            running = now if running is None else running & now
            time.sleep(seconds / samples)
        share = (cpu_ticks(pid) - t0) / (hz * seconds)
    except OSError:
        return None
    if running:
        return "thread %s runnable throughout (%d%% of a CPU)" % (
            ",".join(sorted(running)), share * 100)
    if share > 0.5:
        return "%d%% of a CPU" % (share * 100)
    return None
