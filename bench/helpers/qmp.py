"""A minimal QMP client over a unix socket (QEMU's JSON machine protocol)."""
import json
import os
import socket
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
