"""A minimal QMP client over a unix socket (QEMU's JSON machine protocol)."""
import json
import os
import socket
import subprocess
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=30.0, alive=None):
        """Connect to the QMP socket at path, retrying until it exists and
        QEMU sends its greeting; alive() may return False to give up early
        (the QEMU process died)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(max(1.0, deadline - time.monotonic()))
                s.connect(path)
                break
            except OSError:
                s.close()
                if alive is not None and not alive():
                    raise QMPError("QEMU exited before its QMP socket %s came up" % path)
                if time.monotonic() > deadline:
                    raise QMPError("no QMP socket at %s after %.0f s" % (path, timeout))
                time.sleep(0.02)
        self.sock = s
        self.file = s.makefile("rb")
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError("unexpected QMP greeting: %r" % greeting)
        # QEMU greets at once but answers only when its main loop runs:
        # after -mem-prealloc has faulted in all guest RAM (16 GiB: over a
        # minute here), so the first command gets the whole start deadline.
        self.sock.settimeout(max(30.0, deadline - time.monotonic()))
        self.cmd("qmp_capabilities")
        self.sock.settimeout(30.0)

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QMPError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        """Run one command; returns its "return" value, raises QMPError on
        an "error" reply. Asynchronous events are kept in self.events."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"].get("desc", r["error"])))
            return r.get("return")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def wait_socket_gone(path):
    try:
        os.unlink(path)
    except OSError:
        pass


_cpu_model = None


def qemu_cpu_model(qemu="qemu-system-x86_64"):
    """The -cpu value to run QEMU with on this host: "host", or
    "host,-arch-capabilities" where the host's KVM lists
    IA32_ARCH_CAPABILITIES (MSR 0x10a) as a feature MSR but refuses to have
    it written. kvm_pvm on AMD EPYC does that, and QEMU 7.2 then aborts at
    its first vCPU reset ("failed to set MSR 0x10a"). The guest never reads
    that MSR, so dropping it changes nothing the benchmark measures; hosts
    where plain "host" works keep it. Probed once (~50 ms): QEMU stopped
    before its first instruction (-S), asked over QMP on stdio to quit."""
    global _cpu_model
    if _cpu_model is not None:
        return _cpu_model
    quit_cmds = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    errors = []
    for model in ("host", "host,-arch-capabilities"):
        try:
            p = subprocess.run([qemu, "-accel", "kvm", "-cpu", model, "-m", "16", "-display", "none",
                                "-nodefaults", "-S", "-qmp", "stdio"], input=quit_cmds, text=True,
                               capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append("-cpu %s: %s" % (model, e))
            continue
        if p.returncode == 0:
            _cpu_model = model
            return model
        last = (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[0]
        errors.append("-cpu %s: %s" % (model, last))
    raise QMPError("QEMU cannot start a KVM guest on this host: " + "; ".join(errors))
