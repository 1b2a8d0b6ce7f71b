"""Network namespaces and veth links for the two-host test, and the
processes that run inside them.

Everything created here is named with a per-run tag (so parallel runs and
other engineers' namespaces never collide), remembered, and removed by
cleanup() in reverse order: processes by PID (their whole process group),
then each namespace's /etc/netns/NS/ folder, then the namespaces (which
takes their veth ends with them).

Host names: `ip netns exec NS` bind-mounts every file of /etc/netns/NS/
over the one of the same name in /etc (ip-netns(8)), so hosts_file()
gives the processes of one namespace their own /etc/hosts, the way a
plain host resolves its neighbour's name. Python threads that join a
namespace with call() do not see it: they use addresses.

Code runs "inside" a namespace in two ways:
  * spawn(ns, argv): a daemon under `ip netns exec NS` in its own process
    group, stdout/stderr to a log file;
  * call(ns, fn, ...): a Python function on a fresh thread that first
    joins the namespace with setns(2); sockets it opens (smtplib, imaplib,
    poplib) live in that namespace. Only that thread changes namespace.
"""
import ctypes
import os
import signal
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsUnavailable(Exception):
    """ip netns add failed (no permission): the caller skips."""


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


class Topology:
    def __init__(self, tag):
        self.tag = tag
        self.namespaces = []
        self.procs = []       # (name, Popen, logfile)
        self.etc_dirs = []    # /etc/netns/NS folders made by hosts_file()

    # ---- namespaces and links -----------------------------------------
    def add_ns(self, role):
        name = "%s-%s" % (self.tag, role)
        r = _ip("netns", "add", name, check=False)
        if r.returncode != 0:
            if not self.namespaces:
                raise NetnsUnavailable("ip netns add %s: %s"
                                       % (name, r.stderr.strip()))
            raise RuntimeError("ip netns add %s: %s" % (name, r.stderr.strip()))
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, ns_a, if_a, addr_a, ns_b, if_b, addr_b):
        """A veth pair created directly inside the two namespaces (it never
        appears in the host's namespace), addresses with prefix, up."""
        _ip("link", "add", if_a, "netns", ns_a, "type", "veth",
            "peer", "name", if_b, "netns", ns_b)
        for ns, ifn, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            _ip("-n", ns, "addr", "add", addr, "dev", ifn)
            _ip("-n", ns, "link", "set", ifn, "up")

    def hosts_file(self, ns, entries):
        """/etc/hosts for the processes started in ns: (address, names)."""
        d = os.path.join("/etc/netns", ns)
        os.makedirs(d)
        self.etc_dirs.append(d)
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
            f.write("".join("%s %s\n" % (a, " ".join(n)) for a, n in entries))
        os.chmod(os.path.join(d, "hosts"), 0o644)

    def set_link(self, ns, ifname, up):
        _ip("-n", ns, "link", "set", ifname, "up" if up else "down")

    # ---- processes ----------------------------------------------------
    def spawn(self, ns, name, argv, log_path, env=None):
        logf = open(log_path, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv),
                             stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        self.procs.append((name, p, logf))
        return p

    def run(self, ns, argv, input=None, timeout=60, env=None, cwd=None):
        return subprocess.run(["ip", "netns", "exec", ns] + list(argv),
                              input=input, capture_output=True,
                              timeout=timeout, env=env, cwd=cwd)

    def stop(self, p, timeout=10.0):
        """SIGTERM to the process group, then SIGKILL after timeout."""
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def call(self, ns, fn, *args, timeout=60, **kw):
        box = {}

        def body():
            try:
                fd = os.open("/run/netns/" + ns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
                finally:
                    os.close(fd)
                box["result"] = fn(*args, **kw)
            except BaseException as e:  # re-raised in the caller
                box["error"] = e

        t = threading.Thread(target=body, name="in-" + ns, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("%s in %s did not finish in %ss"
                               % (getattr(fn, "__name__", fn), ns, timeout))
        if "error" in box:
            raise box["error"]
        return box.get("result")

    # ---- teardown -----------------------------------------------------
    def cleanup(self):
        errors = []
        for name, p, logf in reversed(self.procs):
            try:
                self.stop(p)
            except Exception as e:  # keep tearing down the rest
                errors.append("%s: %s" % (name, e))
            logf.close()
        self.procs = []
        for d in reversed(self.etc_dirs):
            try:
                os.unlink(os.path.join(d, "hosts"))
                os.rmdir(d)
            except OSError as e:
                errors.append("%s: %s" % (d, e))
        self.etc_dirs = []
        try:
            os.rmdir("/etc/netns")   # only when no other run uses it
        except OSError:
            pass
        for ns in reversed(self.namespaces):
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0:
                errors.append("netns del %s: %s" % (ns, r.stderr.strip()))
        self.namespaces = []
        return errors


def wait_for(pred, timeout, interval=0.1, what="condition"):
    """Poll pred() until it returns something true; return that value."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s"
                               % (timeout, what))
        time.sleep(interval)
