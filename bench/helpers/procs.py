"""Child processes that never outlive the benchmark, their CPU and I/O
counters, and a timestamped reader for the guest's serial console."""
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

_children = []
_libc = None
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGKILL if the benchmark dies,
    # even by SIGKILL. Called between fork and exec.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def spawn(argv, **kw):
    """Popen that registers the child for kill_all() and ties its life to
    ours. Must be called from the main thread (PDEATHSIG follows the thread
    that forked)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
    _children.append(p)
    return p


def stop(p, grace=3.0):
    """SIGTERM, then SIGKILL after grace seconds; reaps the child."""
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in _children:
        _children.remove(p)


def kill_all():
    for p in list(_children):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
        _children.remove(p)


def install_signal_handlers():
    """Ctrl-C and SIGTERM end the run through KeyboardInterrupt so that the
    finally blocks (and kill_all) run."""
    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


VCPU_THREAD = re.compile(r"^(CPU \d+/KVM|vcpu\d+)$")


def _ticks(stat_text):
    # comm may hold spaces and parentheses: fields start after the last ')'
    rest = stat_text[stat_text.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # utime + stime (fields 14, 15)


def cpu_snapshot(pid):
    """(process CPU seconds, CPU seconds of its vCPU threads). The process
    figure includes threads that have already exited."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            total = _ticks(f.read())
    except OSError:
        return None
    vcpu = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    comm = f.read().strip()
                if VCPU_THREAD.match(comm):
                    with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                        vcpu += _ticks(f.read())
            except OSError:
                pass
    except OSError:
        pass
    return total / CLK_TCK, vcpu / CLK_TCK


def cpu_delta(before, after):
    """CPU seconds spent outside the vCPU threads between two snapshots:
    the migration's cost, not the guest's own work."""
    if before is None or after is None:
        return None
    return round(max(0.0, (after[0] - before[0]) - (after[1] - before[1])), 3)


def lo_bytes():
    """Bytes received on the loopback interface of our network namespace
    (TCP/IP headers included): in the benchmark's own namespace, exactly
    the migration traffic."""
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    return int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return None


def enter_private_netns(argv):
    """Re-run this program in a fresh network namespace with only lo up, so
    that loopback counters count nothing but our own traffic. Returns True
    when already inside it; False when it cannot be done (not root)."""
    if os.environ.get("FERRY_BENCH_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return True
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    os.environ["FERRY_BENCH_NETNS"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable] + argv)


HB = re.compile(r"FERRY-GUEST hb n=(\d+) mib=(\d+) gen=(\d+) tsc=(\d+)")
TSC_HZ = re.compile(r"FERRY-GUEST info .*tsc_hz=(\d+)")


def heartbeat(t, text):
    """(t, n, mib, gen, tsc) if text is a heartbeat line, else None."""
    m = HB.search(text)
    return (t,) + tuple(int(x) for x in m.groups()) if m else None


class Console:
    """Reads a guest's serial output line by line in a thread, stamping each
    line with the host's monotonic clock on arrival, and copies it to a log.
    src is a file object (a pipe) or a path to poll (a file the VMM appends
    to). Bytes after the last newline are kept apart (partial()): a guest
    that moves mid-line ends its line on the destination's console."""

    def __init__(self, src, log_path, poll_s=0.002):
        self.lines = []  # (monotonic time, text)
        self.tail = b""  # bytes after the last newline so far
        self.cond = threading.Condition()
        self.log = open(log_path, "w")
        self.closed = False
        self.poll_s = poll_s
        if hasattr(src, "fileno"):
            target, arg = self._run_pipe, src.fileno()
        else:
            target, arg = self._run_path, src
        self.thread = threading.Thread(target=target, args=(arg,), daemon=True)
        self.thread.start()

    def _feed(self, chunk):
        *whole, rest = (self.tail + chunk).split(b"\n")
        stamp = time.monotonic()
        texts = [raw.decode("utf-8", "replace").rstrip("\r") for raw in whole]
        with self.cond:
            self.lines.extend((stamp, text) for text in texts)
            self.tail = rest
            self.cond.notify_all()
        self.log.writelines(text + "\n" for text in texts)
        self.log.flush()

    def _run_pipe(self, fd):
        # os.read, not readline: a partial line must be seen while the
        # process still runs
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._feed(chunk)
        self._eof()

    def _run_path(self, path):
        while not os.path.exists(path) and not self.closed:
            time.sleep(self.poll_s)
        with open(path, "rb") as f:
            while not self.closed:
                chunk = f.read(65536)
                if not chunk:
                    time.sleep(self.poll_s)
                    continue
                self._feed(chunk)
        self._eof()

    def _eof(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.log.close()

    def wait_for(self, pred, timeout):
        """Wait until pred(lines) returns a true value; returns it, or None
        after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = pred(self.lines)
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed and not r):
                    return None
                self.cond.wait(min(left, 0.5))

    def heartbeats(self):
        """[(arrival time, n, mib, gen, tsc)] of every heartbeat so far."""
        with self.cond:
            return [hb for hb in (heartbeat(t, text) for t, text in self.lines) if hb]

    def partial(self):
        """The unterminated last line, as text ("" if none)."""
        with self.cond:
            return self.tail.decode("utf-8", "replace")

    def tsc_hz(self):
        with self.cond:
            for _, text in self.lines:
                m = TSC_HZ.search(text)
                if m:
                    return int(m.group(1))
        return None

    def errors(self):
        with self.cond:
            return [text for _, text in self.lines if "FERRY-GUEST error" in text]
