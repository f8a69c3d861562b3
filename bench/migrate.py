#!/usr/bin/env python3
"""Live-migration benchmark: ferry beside QEMU 7.2, same guest, same machine,
same run.

    bench/migrate.py                      # full matrix, 3 runs per row
    bench/migrate.py --quick              # 1 run, a subset (< 10 min)
    bench/migrate.py --systems qemu --workloads ws512-r256 --runs 5
    bench/migrate.py --list               # workloads and variants

Each row is one workload (the project's test guest, build/guest/testguest.elf,
with a working set and a dirty rate) migrated by one variant of one system
(e.g. "qemu-mfd4-zstd-prealloc"), source and destination on this machine
over loopback TCP. See bench/README.md for what every column means.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from helpers import procs, report  # noqa: E402
from helpers.qmp import QMP, QMPError, qemu_cpu_model  # noqa: E402

GUEST = os.path.join(ROOT, "build", "guest", "testguest.elf")
FERRY_VM = os.path.join(ROOT, "build", "bin", "ferry-vm")
BUILD_BENCH = os.path.join(ROOT, "build", "bench")
RESULTS = os.path.join(HERE, "results")
QEMU = "qemu-system-x86_64"
UNLIMITED_BW = 100 << 30  # "raised" bandwidth: 100 GiB/s, i.e. no cap here


# ---------------------------------------------------------------- workloads

class Workload:
    def __init__(self, name, mem_mib, cmdline, ws_mib, rate, timeout_s,
                 bandwidth=None, what="", link=None, disk=None):
        self.name = name
        self.mem_mib = mem_mib
        self.cmdline = cmdline
        self.ws_mib = ws_mib        # 0: idle, nothing to wait for
        self.rate = rate            # MiB/s, "max", "once" or 0
        self.timeout_s = timeout_s  # migration gives up (cancel) after this
        self.bandwidth = bandwidth  # bytes/s forced on every variant, or None
        self.what = what
        self.link = link            # tc rate of the link itself (lo shaped), or None
        self.disk = disk            # (image MiB, MiB of data in it): copied with the VM, or None


WORKLOADS = [
    Workload("idle-1g", 1024, "rate=0", 0, 0, 60, what="idle, 1 GiB guest"),
    Workload("idle-4g", 4096, "rate=0", 0, 0, 90, what="idle, 4 GiB guest"),
    Workload("idle-16g", 16384, "rate=0", 0, 0, 180, what="idle, 16 GiB guest"),
    Workload("ws512-r64", 1024, "ws=512M rate=64", 512, 64, 120,
             what="512 MiB working set dirtied at 64 MiB/s"),
    Workload("ws512-r256", 1024, "ws=512M rate=256", 512, 256, 120,
             what="512 MiB working set dirtied at 256 MiB/s"),
    Workload("ws512-r1024", 1024, "ws=512M rate=1024", 512, 1024, 120,
             what="512 MiB working set dirtied at 1024 MiB/s"),
    Workload("ws512-max", 1024, "ws=512M rate=max", 512, "max", 120,
             what="512 MiB working set dirtied at full speed"),
    # Memory full of incompressible data that no longer changes: what a
    # transport itself moves per second, with no guest taking CPU from it
    # (the "single-stream throughput of incompressible memory").
    Workload("fill768", 1024, "ws=768M rate=once", 768, "once", 60,
             what="768 MiB of incompressible data written once, then idle"),
    Workload("max-cap128", 1024, "ws=512M rate=max", 512, "max", 60,
             bandwidth=128 << 20,
             what="full speed under a 128 MiB/s bandwidth cap (QEMU's shipped default)"),
    # A guest paced by time (it makes up at each wake-up what a throttle
    # held back) on a slow link: throttling cannot make it converge, so
    # pre-copy ends stopping it for what is left; post-copy switches over.
    Workload("paced-cap4", 1024, "ws=16M rate=16", 16, 16, 60, bandwidth=4 << 20,
             what="16 MiB working set dirtied at 16 MiB/s, paced by time, under a 4 MiB/s cap"),
    # The same two with compressible pages (guest data=text: ~2x lz4, ~3x
    # zstd, see guest/README.md), where compression has something to win.
    Workload("ws512-r256-text", 1024, "ws=512M rate=256 data=text", 512, 256, 120,
             what="512 MiB working set dirtied at 256 MiB/s, compressible pages"),
    Workload("max-cap128-text", 1024, "ws=512M rate=max data=text", 512, "max", 60,
             bandwidth=128 << 20,
             what="full speed under a 128 MiB/s bandwidth cap, compressible pages"),
    # A slow physical link rather than a limit either system sets itself:
    # the namespace's lo shaped to 1 Gbit/s (tc tbf), what a migration
    # network of many hosts still is. Each system has to measure the link.
    Workload("ws512-r64-1gbit", 1024, "ws=512M rate=64", 512, 64, 120, link="1gbit",
             what="512 MiB working set dirtied at 64 MiB/s over a 1 Gbit/s link"),
    Workload("ws512-r64-text-1gbit", 1024, "ws=512M rate=64 data=text", 512, 64, 120,
             link="1gbit",
             what="512 MiB working set dirtied at 64 MiB/s over a 1 Gbit/s link, "
                  "compressible pages"),
    # Hosts that share no storage: the disk image goes with the memory
    # (QEMU's block migration, ferry's --copy-disk), the guest writing a
    # record to it every second meanwhile.
    Workload("disk1g", 1024, "ws=256M rate=64 blk=1", 256, 64, 120, disk=(1024, 512),
             what="256 MiB working set at 64 MiB/s and a 1 GiB disk image holding 512 MiB, "
                  "copied with it"),
]
WL = {w.name: w for w in WORKLOADS}

# Variants per workload. A variant name is a system followed by options
# (see QemuSystem.parse / FerrySystem.parse), so any combination can also be
# asked for with --variants.
QEMU_ALL = ["qemu", "qemu-prealloc", "qemu-dt50", "qemu-dt50-prealloc",
            "qemu-mfd4", "qemu-mfd4-prealloc", "qemu-mfd4-zstd",
            "qemu-mfd4-zstd-prealloc", "qemu-shipped"]
FERRY_ALL = ["ferry", "ferry-tcp", "ferry-compression", "ferry-multichannel",
             "ferry-multichannel-compression", "ferry-prealloc", "ferry-multichannel-prealloc"]
FULL = {
    "idle-1g": ["qemu", "qemu-prealloc", "qemu-mfd4", "qemu-shipped", "ferry", "ferry-tcp"],
    "idle-4g": ["qemu", "qemu-prealloc", "qemu-mfd4", "qemu-shipped", "ferry", "ferry-tcp"],
    "idle-16g": ["qemu", "qemu-shipped", "ferry"],
    "ws512-r64": QEMU_ALL + FERRY_ALL,
    "ws512-r256": QEMU_ALL + FERRY_ALL,
    "ws512-r1024": QEMU_ALL + FERRY_ALL,
    "ws512-max": QEMU_ALL + FERRY_ALL,
    "max-cap128": ["qemu", "qemu-prealloc", "qemu-mfd4-zstd-prealloc", "qemu-postcopy", "ferry",
                   "ferry-multichannel", "ferry-postcopy"],
    "fill768": ["qemu", "qemu-prealloc", "qemu-mfd4-prealloc", "ferry-tcp", "ferry-tcp-prealloc",
                "ferry-multichannel-prealloc",
                # encrypted: QEMU's TLS beside ferry's sealed connections
                "qemu-prealloc-tls", "qemu-mfd4-prealloc-tls", "ferry-tcp-prealloc-auth",
                "ferry-tcp-prealloc-enc", "ferry-multichannel-prealloc-enc"],
    "ws512-r256-text": QEMU_ALL + FERRY_ALL,
    # every compressing and non-compressing transport of both systems: under
    # a cap, bytes saved are time saved
    "max-cap128-text": ["qemu", "qemu-prealloc", "qemu-mfd4", "qemu-mfd4-prealloc",
                        "qemu-mfd4-zstd", "qemu-mfd4-zstd-prealloc"] + FERRY_ALL,
    # the link, not memory, is the bottleneck: no -mem-prealloc rows
    "ws512-r64-1gbit": ["qemu", "qemu-dt50", "qemu-mfd4", "qemu-mfd4-zstd", "ferry", "ferry-tcp",
                        "ferry-multichannel", "ferry-multichannel-compression"],
    "ws512-r64-text-1gbit": ["qemu", "qemu-dt50", "qemu-mfd4", "qemu-mfd4-zstd", "ferry",
                             "ferry-tcp", "ferry-multichannel", "ferry-multichannel-compression"],
    "disk1g": ["qemu-blk", "qemu-blk-prealloc", "ferry-copydisk", "ferry-tcp-copydisk",
               "ferry-tcp-prealloc-copydisk"],
    "paced-cap4": ["qemu", "qemu-postcopy", "ferry-tcp", "ferry-tcp-postcopy"],
}
QUICK = {
    "idle-1g": ["qemu", "qemu-prealloc", "ferry"],
    "idle-4g": ["qemu", "ferry"],
    # QEMU's best on the working-set rows here is multifd 4 + -mem-prealloc
    "ws512-r256": ["qemu", "qemu-prealloc", "qemu-mfd4", "qemu-mfd4-prealloc",
                   "qemu-mfd4-zstd-prealloc", "qemu-shipped", "ferry", "ferry-tcp",
                   "ferry-multichannel", "ferry-multichannel-prealloc"],
    "ws512-max": ["qemu", "qemu-prealloc", "qemu-dt50-prealloc", "qemu-mfd4-prealloc", "ferry",
                  "ferry-multichannel-prealloc"],
    "max-cap128": ["qemu", "qemu-postcopy", "ferry", "ferry-postcopy"],
    "fill768": ["qemu-prealloc", "ferry-tcp", "ferry-tcp-prealloc"],
    "disk1g": ["qemu-blk", "qemu-blk-prealloc", "ferry-copydisk", "ferry-tcp-prealloc-copydisk"],
}
QUICK_TIMEOUT = 30  # --quick: every migration's limit, so the run stays under ~10 min


# ---------------------------------------------------------------- common

class RunError(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def wait_warm(con, wl, timeout):
    """Wait for the guest to be ready and, with a working set, to have
    written all of it once (steady state), then one more heartbeat."""
    if not con.wait_for(lambda ls: any("FERRY-GUEST ready" in t for _, t in ls), 30):
        raise RunError("source guest never printed 'ready' (errors: %s)" % con.errors())

    def filled(_):
        hbs = con.heartbeats()
        if not hbs:
            return None
        if wl.ws_mib == 0:
            return hbs[-1]
        full = [h for h in hbs if h[2] >= wl.ws_mib]
        return full[1] if len(full) > 1 else None
    if not con.wait_for(filled, timeout):
        raise RunError("guest did not fill its working set in %d s" % timeout)


def make_disk(tmp, wl):
    """The source's image: wl.disk[0] MiB, wl.disk[1] MiB of random data
    from 256 MiB on (allocated; the rest holes), the guest's records in its
    first sectors. Returns (source path, destination path)."""
    size, data = wl.disk
    src, dst = os.path.join(tmp, "src.img"), os.path.join(tmp, "dst.img")
    with open(src, "wb") as f:
        f.truncate(size << 20)
        f.seek(min(256, size - data) << 20)
        for _ in range(data):
            f.write(os.urandom(1 << 20))
    return src, dst


def disk_check(src, dst):
    """The destination's image against the source's, past the first 64 KiB
    (where the guest goes on writing its records on the destination)."""
    if not os.path.exists(dst):
        return "BROKEN: no disk image on the destination"
    if os.path.getsize(src) != os.path.getsize(dst):
        return "BROKEN: disk image of %d bytes, the source's %d" % (os.path.getsize(dst),
                                                                   os.path.getsize(src))
    with open(src, "rb") as a, open(dst, "rb") as b:
        a.seek(65536)
        b.seek(65536)
        while True:
            x, y = a.read(4 << 20), b.read(4 << 20)
            if x != y:
                return "BROKEN: the disk copy differs from the source's image"
            if not x:
                return "disk: copy equal"


def move_rate(row):
    """Bytes the system says it sent over the time it spent sending them
    (total minus setup), in MiB/s: the same measure for both systems, where
    ferry's pass-1 figure has no QEMU counterpart."""
    total, setup, sent = row.get("total_ms"), row.get("setup_ms") or 0, row.get("bytes_reported")
    if not row.get("converged") or not total or not sent or total <= setup:
        return None
    return sent / 2**20 / ((total - setup) / 1000.0)


def guest_view(src_con, dst_con, t_start):
    """Downtime as the guest's heartbeats show it, after a completed move.
    The heartbeats of the source and the destination are joined by counter
    (every source line counts, also one the console reader took in only
    after the end was seen: the source guest stopped for good at the
    switch-over, so all it wrote came before); the largest step, minus the
    guest's own period, is the time the guest lost:
      - by its TSC (tsc values in the lines, in guest seconds), and
      - by arrival on the host (host monotonic clock), which also counts time
        the guest's clock did not see (a TSC restored to its pre-pause value).
    Also checks that the destination's counter continues the source's."""
    hz = src_con.tsc_hz() or dst_con.tsc_hz()
    src = src_con.heartbeats()
    dst = dst_con.heartbeats() if dst_con else []
    # A line the guest was writing when it moved starts on the source's
    # console and ends on the destination's: joined, it must read as one
    # whole heartbeat (a byte lost or repeated at the switch-over breaks it).
    split = None
    head = src_con.partial()
    if head and dst_con and dst_con.lines:
        t_first, first = dst_con.lines[0]
        split = procs.heartbeat(t_first, head + first)
        if split and (not dst or dst[0][1] != split[1]):
            dst = [split] + dst
    out = {"guest_down_ms": None, "host_down_ms": None, "hb_check": "no heartbeats"}
    if not src:
        return out
    if not dst:
        out["hb_check"] = "destination printed no heartbeat"
        return out
    last_src, first_dst = src[-1][1], dst[0][1]
    increasing = all(b[1] == a[1] + 1 for a, b in zip(dst, dst[1:]))
    if first_dst == last_src + 1 and increasing:
        out["hb_check"] = "ok (n=%d -> %d..%d%s)" % (
            last_src, first_dst, dst[-1][1], ", n=%d split across the move" % split[1] if split else "")
    else:
        out["hb_check"] = "BROKEN (source last n=%d, destination n=%s%s)" % (
            last_src, [h[1] for h in dst[:4]],
            "; source ends mid-line %r, destination starts %r" % (head[-40:], dst_con.lines[0][1][:40])
            if head and not split else "")
    # the window around the migration: heartbeats from shortly before it
    # started, through the destination's
    seq = [h for h in src if h[0] >= t_start - 3.0] + dst
    seq.sort(key=lambda h: h[1])
    steps = [(a, b) for a, b in zip(seq, seq[1:]) if b[1] == a[1] + 1]
    if not steps:
        return out
    if hz:
        tsc_steps = [(b[4] - a[4]) / hz for a, b in steps]
        out["guest_down_ms"] = ms(max(0.0, max(tsc_steps) - 1.0))
    host_steps = [b[0] - a[0] for a, b in steps]
    out["host_down_ms"] = ms(max(0.0, max(host_steps) - 1.0))
    return out


def after_cancel_check(src_con, t_cancel, timeout=4.0):
    """After a cancelled migration the source must keep running: a new
    heartbeat must arrive."""
    got = src_con.wait_for(lambda _: [h for h in src_con.heartbeats() if h[0] > t_cancel], timeout)
    if got:
        return "source kept running (hb n=%d after cancel)" % got[0][1]
    return "BROKEN: source printed no heartbeat after the cancel"


# ---------------------------------------------------------------- QEMU

class QemuSystem:
    name = "qemu"

    def available(self):
        if not shutil.which(QEMU):
            return "%s not installed" % QEMU
        try:
            qemu_cpu_model(QEMU)
        except QMPError as e:
            return str(e)
        return None

    def version(self):
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
        return "%s, -cpu %s" % (out.splitlines()[0] if out else "?", qemu_cpu_model(QEMU))

    @staticmethod
    def parse(variant):
        """qemu[-mfdN][-zstd][-prealloc][-dtN][-shipped][-tls][-blk][-postcopy]"""
        opt = {"channels": 0, "zstd": False, "prealloc": False,
               "downtime_ms": None, "bandwidth": UNLIMITED_BW, "tls": False, "blk": False,
               "postcopy": False}
        for tok in variant.split("-")[1:]:
            if re.fullmatch(r"mfd\d+", tok):
                opt["channels"] = int(tok[3:])
            elif tok == "zstd":
                opt["zstd"] = True
                opt["channels"] = opt["channels"] or 4
            elif tok == "prealloc":
                opt["prealloc"] = True
            elif re.fullmatch(r"dt\d+", tok):
                opt["downtime_ms"] = int(tok[2:])
            elif tok == "shipped":
                opt["bandwidth"] = None  # leave QEMU's default (128 MiB/s)
            elif tok == "tls":
                opt["tls"] = True  # TLS with a pre-shared key (tls-creds-psk) on every channel
            elif tok == "postcopy":
                # capability postcopy-ram, and migrate-start-postcopy once
                # pass 1 is done (its first dirty sync after it), as ferry
                # --post-copy switches after a pass 1 that did not converge
                opt["postcopy"] = True
            elif tok == "blk":
                # block migration (capability "block", zero blocks skipped):
                # the disk image copied with the memory
                opt["blk"] = True
            else:
                raise ValueError("unknown QEMU variant option '%s' in %s" % (tok, variant))
        return opt

    def _argv(self, wl, qmp_path, incoming=False, prealloc=False, psk_dir=None, disk=None):
        argv = [QEMU, "-accel", "kvm", "-cpu", qemu_cpu_model(QEMU), "-m", str(wl.mem_mib), "-smp", "1",
                "-kernel", GUEST, "-append", wl.cmdline, "-display", "none", "-nodefaults",
                "-serial", "stdio", "-no-reboot",
                # named threads ("CPU 0/KVM") so the vCPU's CPU time can be told apart
                "-name", "bench,debug-threads=on",
                "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
        if prealloc:
            argv.append("-mem-prealloc")
        if disk:
            # the test guest drives legacy virtio-pci
            argv += ["-drive", "if=none,id=d0,format=raw,file=%s" % disk,
                     "-device", "virtio-blk-pci,drive=d0,disable-modern=on"]
        if psk_dir:
            argv += ["-object", "tls-creds-psk,id=tls0,endpoint=%s,dir=%s%s" % (
                "server" if incoming else "client", psk_dir, "" if incoming else ",username=qemu")]
        if incoming:
            # defer: multifd capabilities must be set before the listen
            argv += ["-incoming", "defer"]
        return argv

    def run(self, wl, variant, tmp, timeout_s):
        opt = self.parse(variant)
        res = {"notes": []}
        port = free_port()
        src_qmp_path, dst_qmp_path = os.path.join(tmp, "src.qmp"), os.path.join(tmp, "dst.qmp")
        src = dst = src_con = dst_con = src_q = dst_q = None
        psk_dir = None
        if opt["tls"]:
            psk_dir = os.path.join(tmp, "psk")
            os.makedirs(psk_dir, exist_ok=True)
            with open(os.open(os.path.join(psk_dir, "keys.psk"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write("qemu:%s\n" % os.urandom(32).hex())
        src_img = dst_img = None
        if wl.disk:
            if not opt["blk"]:
                raise RunError("a workload with a disk moves it: give the variant -blk")
            src_img, dst_img = make_disk(tmp, wl)
            with open(dst_img, "wb") as f:  # block migration writes into the destination's drive
                f.truncate(wl.disk[0] << 20)
        try:
            src = procs.spawn(self._argv(wl, src_qmp_path, psk_dir=psk_dir, disk=src_img),
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "src.err"), "w"))
            src_con = procs.Console(src.stdout, os.path.join(tmp, "src.log"))
            src_q = QMP(src_qmp_path, alive=lambda: src.poll() is None)
            warm = 30 + (wl.ws_mib / wl.rate if isinstance(wl.rate, int) and wl.rate else 10)
            wait_warm(src_con, wl, warm)

            t = time.monotonic()
            dst = procs.spawn(self._argv(wl, dst_qmp_path, incoming=True, prealloc=opt["prealloc"],
                                         psk_dir=psk_dir, disk=dst_img),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=open(os.path.join(tmp, "dst.err"), "w"))
            dst_con = procs.Console(dst.stdout, os.path.join(tmp, "dst.log"))
            dst_q = QMP(dst_qmp_path, timeout=300, alive=lambda: dst.poll() is None)
            res["dst_start_ms"] = ms(time.monotonic() - t)

            caps = [{"capability": "multifd", "state": opt["channels"] > 0}]
            if opt["postcopy"]:
                caps.append({"capability": "postcopy-ram", "state": True})
            if opt["blk"]:
                caps += [{"capability": "block", "state": True},
                         {"capability": "zero-blocks", "state": True}]
            params = {}
            if opt["channels"]:
                params["multifd-channels"] = opt["channels"]
                params["multifd-compression"] = "zstd" if opt["zstd"] else "none"
            if opt["tls"]:
                params["tls-creds"] = "tls0"
            for q in (src_q, dst_q):
                q.cmd("migrate-set-capabilities", capabilities=caps)
                if params:
                    q.cmd("migrate-set-parameters", **params)
            bw = wl.bandwidth if wl.bandwidth else opt["bandwidth"]
            sp = {}
            if bw:
                sp["max-bandwidth"] = bw
            if opt["downtime_ms"]:
                sp["downtime-limit"] = opt["downtime_ms"]
            if bw and opt["postcopy"]:
                # QEMU's post-copy caps only its background sweep, with its
                # own parameter (default: none); ferry's keeps the move's cap
                # for the sweep and serves the guest's faults at once too
                sp["max-postcopy-bandwidth"] = bw
            if sp:
                src_q.cmd("migrate-set-parameters", **sp)
            p = src_q.cmd("query-migrate-parameters")
            res["notes"].append("bw %s MiB/s, downtime-limit %s ms" % (
                round(p["max-bandwidth"] / 2**20), p["downtime-limit"]))
            uri = "tcp:127.0.0.1:%d" % port
            dst_q.cmd("migrate-incoming", uri=uri)

            cpu0 = (procs.cpu_snapshot(src.pid), procs.cpu_snapshot(dst.pid))
            lo0 = procs.lo_bytes()
            t0 = time.monotonic()
            src_q.cmd("migrate", uri=uri)
            status, info = None, {}
            switched = False
            while True:
                time.sleep(0.02)
                info = src_q.cmd("query-migrate")
                status = info.get("status")
                if status in ("completed", "failed", "cancelled"):
                    break
                if (opt["postcopy"] and not switched and status == "active" and
                        info.get("ram", {}).get("dirty-sync-count", 0) >= 2):
                    src_q.cmd("migrate-start-postcopy")
                    switched = True
                    res["notes"].append("migrate-start-postcopy after %d ms" % ms(time.monotonic() - t0))
                if time.monotonic() - t0 > timeout_s:
                    break
            t1 = time.monotonic()
            cpu1 = (procs.cpu_snapshot(src.pid), procs.cpu_snapshot(dst.pid))
            res["wall_ms"] = ms(t1 - t0)
            ram = info.get("ram", {})
            res["bytes_reported"] = ram.get("transferred")
            res["passes"] = ram.get("dirty-sync-count")
            res["src_cpu_s"] = procs.cpu_delta(cpu0[0], cpu1[0])
            res["dst_cpu_s"] = procs.cpu_delta(cpu0[1], cpu1[1])

            if status == "completed":
                res["converged"] = True
                res["total_ms"] = info.get("total-time")
                res["downtime_ms"] = info.get("downtime")
                if not res["total_ms"]:
                    # seen once in 72 runs: "completed" with total-time and
                    # downtime 0; our own clock stands in, downtime unknown
                    res["total_ms"] = res["wall_ms"]
                    res["downtime_ms"] = None
                    res["notes"].append("QEMU reported total-time 0: wall time used, downtime unknown")
                res["setup_ms"] = info.get("setup-time")
                # two heartbeats from the destination prove it runs on
                dst_con.wait_for(lambda _: len(dst_con.heartbeats()) >= 2, 5)
                st = dst_q.cmd("query-status")
                if st.get("status") != "running":
                    res["notes"].append("destination is %s" % st.get("status"))
                res.update(guest_view(src_con, dst_con, t0))
                res["integrity"] = res.pop("hb_check")
                if src_img:
                    res["integrity"] += ", " + disk_check(src_img, dst_img)
            elif status is not None and status not in ("failed", "cancelled"):
                # did not converge: cancel, the source must go on running
                res["converged"] = False
                res["notes"].append("did not finish in %d s (status %s, %s passes)" % (
                    timeout_s, status, res["passes"]))
                src_q.cmd("migrate_cancel")
                tc = time.monotonic()
                for _ in range(500):
                    s = src_q.cmd("query-migrate").get("status")
                    if s in ("cancelled", "failed", "completed"):
                        break
                    time.sleep(0.02)
                res["notes"].append("after migrate_cancel: %s" % s)
                st = src_q.cmd("query-status").get("status")
                res["integrity"] = after_cancel_check(src_con, tc) + ", state %s" % st
            else:
                res["converged"] = False
                res["integrity"] = "migration %s: %s" % (status, info.get("error-desc", ""))
            lo1 = procs.lo_bytes()
            if lo0 is not None and lo1 is not None:
                res["bytes_wire"] = lo1 - lo0
            errs = src_con.errors() + (dst_con.errors() if dst_con else [])
            if errs:
                res["notes"].append("guest errors: %s" % "; ".join(errs[:3]))
            return res
        finally:
            for q in (src_q, dst_q):
                if q:
                    try:
                        q.cmd("quit")
                    except (QMPError, OSError):
                        pass
                    q.close()
            for p in (src, dst):
                if p:
                    procs.stop(p)
            for c in (src_con, dst_con):
                if c:
                    c.close()


# ---------------------------------------------------------------- ferry

class FerrySystem:
    """ferry's own live migration, driven directly through two ferry-vm
    processes' control sockets: the destination is started with
    --incoming, the source is told {"cmd":"migrate",...} and polled with
    {"cmd":"migrate-status"}."""
    name = "ferry"

    def available(self):
        if not os.access(FERRY_VM, os.X_OK):
            return "%s not built (make)" % os.path.relpath(FERRY_VM, ROOT)
        out = subprocess.run([FERRY_VM, "--help"], capture_output=True, text=True)
        text = out.stdout + out.stderr
        if "--incoming" not in text:
            return "ferry-vm has no --incoming yet (live migration not landed)"
        return None

    def version(self):
        try:
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
        except OSError:
            rev = "?"
        try:
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src"],
                                   capture_output=True, text=True).stdout.strip()
        except OSError:
            dirty = ""
        built = datetime.datetime.fromtimestamp(os.path.getmtime(FERRY_VM))
        return "ferry-vm built %s from %s%s" % (built.strftime("%Y-%m-%d %H:%M"), rev,
                                                " + uncommitted changes in src/" if dirty else "")

    @staticmethod
    def parse(variant):
        """ferry[-tcp|-compression|-multichannel[-compression]][-chN][-prealloc][-dtN][-auth|-enc][-ring][-copydisk][-postcopy]"""
        opt = {"transport": None, "downtime_ms": None, "prealloc": False, "channels": None,
               "auth": False, "encrypt": False, "ring": False, "copydisk": False,
               "postcopy": False}
        toks = variant.split("-")[1:]
        tr = [t for t in toks if t in ("tcp", "compression", "multichannel")]
        for t in toks:
            if re.fullmatch(r"dt\d+", t):
                opt["downtime_ms"] = int(t[2:])
            elif re.fullmatch(r"ch\d+", t):
                opt["channels"] = int(t[2:])  # multichannel: this many connections
            elif t == "prealloc":
                # the destination reserves the guest's memory before the
                # move (ferry-vm --prealloc), as QEMU's -mem-prealloc, but
                # only the part the guest uses (--prealloc-extents)
                opt["prealloc"] = True
            elif t == "auth":
                # as between two ferryds: every connection proves a move key
                opt["auth"] = True
            elif t == "ring":
                # the source tracks dirty pages with KVM's dirty rings
                # (ferry-vm --dirty-tracker ring) instead of the bitmap
                opt["ring"] = True
            elif t == "copydisk":
                # the disk image copied with the memory (--copy-disk)
                opt["copydisk"] = True
            elif t == "postcopy":
                # a move that does not converge switches over and its
                # dirty pages follow (--post-copy), instead of throttling
                opt["postcopy"] = True
            elif t == "enc":
                # ... and is encrypted (AES-256-GCM), as QEMU's -tls rows
                opt["auth"] = opt["encrypt"] = True
            elif t not in ("tcp", "compression", "multichannel"):
                raise ValueError("unknown ferry variant option '%s' in %s" % (t, variant))
        if tr:
            opt["transport"] = "+".join(tr)
        return opt

    @staticmethod
    def ctl(path, msg, timeout=10.0):
        """One JSON-lines request on a ferry-vm control socket -> the reply."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.sendall(json.dumps(msg).encode() + b"\n")
            line = s.makefile("rb").readline()
        finally:
            s.close()
        if not line:
            raise RunError("ferry-vm closed its control socket on %s" % msg.get("cmd"))
        return json.loads(line)

    def _wait_ctl(self, path, proc, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RunError("ferry-vm exited with %s before its control socket came up"
                               % proc.returncode)
            try:
                return self.ctl(path, {"cmd": "status"}, timeout=2.0)
            except (OSError, RunError, ValueError):
                if time.monotonic() > deadline:
                    raise RunError("no control socket at %s" % path)
                time.sleep(0.02)

    def run(self, wl, variant, tmp, timeout_s):
        opt = self.parse(variant)
        res = {"notes": []}
        port = free_port()
        name = "bench"
        src_ctl, dst_ctl = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
        src_ser, dst_ser = os.path.join(tmp, "src.serial"), os.path.join(tmp, "dst.serial")
        src = dst = src_con = dst_con = None
        src_img = dst_img = None
        if wl.disk:
            if not opt["copydisk"]:
                raise RunError("a workload with a disk moves it: give the variant -copydisk")
            src_img, dst_img = make_disk(tmp, wl)
        try:
            src = procs.spawn([FERRY_VM, "--name", name, "--kernel", GUEST, "--cmdline", wl.cmdline,
                               "--memory", "%dM" % wl.mem_mib, "--vcpus", "1",
                               "--serial", src_ser, "--control", src_ctl] +
                              (["--dirty-tracker", "ring"] if opt["ring"] else []) +
                              (["--disk", src_img] if src_img else []),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "src.err"), "w"))
            src_con = procs.Console(src_ser, os.path.join(tmp, "src.log"))
            self._wait_ctl(src_ctl, src)
            warm = 30 + (wl.ws_mib / wl.rate if isinstance(wl.rate, int) and wl.rate else 10)
            wait_warm(src_con, wl, warm)

            t = time.monotonic()
            prealloc = []
            if opt["prealloc"]:
                # as ferryd does (host set --prealloc on): the destination
                # reserves the memory the source's worker says it uses
                ext = self.ctl(src_ctl, {"cmd": "extents"})
                if not ext.get("ok"):
                    raise RunError("extents: %s" % ext.get("error"))
                ext_path = os.path.join(tmp, "dst.extents")
                with open(ext_path, "w") as f:
                    for first, n in ext["extents"]:
                        f.write("%d %d\n" % (first, n))
                prealloc = ["--memory", "%dM" % wl.mem_mib, "--prealloc", "--prealloc-extents", ext_path]
            keyargs = []
            key = os.urandom(32).hex()
            if opt["auth"]:
                kpath = os.path.join(tmp, "dst.mkey")
                with open(os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                    f.write(key + "\n")
                keyargs = ["--migration-key-file", kpath]
            dst = procs.spawn([FERRY_VM, "--incoming", "127.0.0.1:%d" % port, "--name", name,
                               "--serial", dst_ser, "--control", dst_ctl] + prealloc + keyargs,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "dst.err"), "w"))
            dst_con = procs.Console(dst_ser, os.path.join(tmp, "dst.log"))
            self._wait_ctl(dst_ctl, dst)
            res["dst_start_ms"] = ms(time.monotonic() - t)

            req = {"cmd": "migrate", "uri": "127.0.0.1:%d" % port}
            if opt["transport"]:
                parts = opt["transport"].split("+")
                req["transport"] = parts[0]
                if parts[0] == "multichannel":
                    req["compress"] = "compression" in parts
            if opt["channels"]:
                req["channels"] = opt["channels"]
            if opt["downtime_ms"]:
                req["downtime_ms"] = opt["downtime_ms"]
            if wl.bandwidth:
                req["bandwidth_mibps"] = wl.bandwidth >> 20
            if opt["auth"]:
                req["key"] = key
                req["encrypt"] = opt["encrypt"]
            if dst_img:
                req["disk_copy_path"] = dst_img
            if opt["postcopy"]:
                req["postcopy"] = True

            cpu0 = (procs.cpu_snapshot(src.pid), procs.cpu_snapshot(dst.pid))
            lo0 = procs.lo_bytes()
            t0 = time.monotonic()
            r = self.ctl(src_ctl, req)
            if not r.get("ok"):
                raise RunError("migrate refused: %s" % r.get("error"))
            m, throttle = {}, 0
            while True:
                time.sleep(0.02)
                m = self.ctl(src_ctl, {"cmd": "migrate-status"}).get("migration", {})
                throttle = max(throttle, m.get("throttle_pct") or 0)
                if m.get("stage") in ("completed", "failed", "cancelled", "unknown", "lost"):
                    break
                if time.monotonic() - t0 > timeout_s:
                    break
            t1 = time.monotonic()
            cpu1 = (procs.cpu_snapshot(src.pid), procs.cpu_snapshot(dst.pid))
            res["wall_ms"] = ms(t1 - t0)
            res["bytes_reported"] = m.get("bytes_on_wire")
            res["passes"] = m.get("pass")
            res["pass1_mibps"] = m.get("pass1_mibps")
            res["src_cpu_s"] = procs.cpu_delta(cpu0[0], cpu1[0])
            res["dst_cpu_s"] = procs.cpu_delta(cpu0[1], cpu1[1])
            res["notes"].append("transport %s" % m.get("transport"))
            if throttle:
                res["notes"].append("throttled up to %d%%" % throttle)
            pc = m.get("postcopy") or {}
            if pc.get("used"):
                res["notes"].append("post-copy: %d pages in %d ms after the switch-over, %d asked for"
                                    % (pc.get("pages", 0), pc.get("ms", 0), pc.get("requested", 0)))
            stage = m.get("stage")
            if stage == "completed":
                res["converged"] = True
                res["total_ms"] = m.get("elapsed_ms")
                res["downtime_ms"] = m.get("downtime_ms")
                res["setup_ms"] = m.get("setup_ms")
                dst_con.wait_for(lambda _: len(dst_con.heartbeats()) >= 2, 5)
                res.update(guest_view(src_con, dst_con, t0))
                check = res.pop("hb_check")
                v = self.ctl(dst_ctl, {"cmd": "verify"}, timeout=60)
                if v.get("verified"):
                    check += ", verify: %d pages ok" % v.get("pages_checked", 0)
                else:
                    check = "BROKEN: verify: %s; hb %s" % (v.get("detail") or v.get("error"), check)
                if src_img:
                    check += ", " + disk_check(src_img, dst_img)
                res["integrity"] = check
            elif stage in ("failed", "cancelled", "unknown", "lost"):
                res["converged"] = False
                res["integrity"] = "migration %s: %s" % (stage, m.get("error", ""))
            else:
                res["converged"] = False
                res["notes"].append("did not finish in %d s (stage %s, pass %s)" % (
                    timeout_s, stage, m.get("pass")))
                self.ctl(src_ctl, {"cmd": "migrate-cancel"})
                tc = time.monotonic()
                for _ in range(500):
                    s = self.ctl(src_ctl, {"cmd": "migrate-status"}).get("migration", {}).get("stage")
                    if s in ("cancelled", "failed", "completed", "unknown"):
                        break
                    time.sleep(0.02)
                res["notes"].append("after migrate-cancel: %s" % s)
                res["integrity"] = after_cancel_check(src_con, tc)
            lo1 = procs.lo_bytes()
            if lo0 is not None and lo1 is not None:
                res["bytes_wire"] = lo1 - lo0
            errs = src_con.errors() + dst_con.errors()
            if errs:
                res["notes"].append("guest errors: %s" % "; ".join(errs[:3]))
            return res
        finally:
            for path, p in ((dst_ctl, dst), (src_ctl, src)):
                if p and p.poll() is None:
                    try:
                        self.ctl(path, {"cmd": "stop"}, timeout=2)
                    except (OSError, RunError, ValueError):
                        pass
            for p in (src, dst):
                if p:
                    procs.stop(p)
            for c in (src_con, dst_con):
                if c:
                    c.close()


SYSTEMS = {"qemu": QemuSystem(), "ferry": FerrySystem()}


# ---------------------------------------------------------------- machine

def machine_info():
    info = {"uname": " ".join(platform.uname()), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1) if m else "?"
    except OSError:
        info["cpu"] = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
            info["memory"] = "%.1f GiB" % (kb / 2**20)
    except (OSError, AttributeError):
        info["memory"] = "?"
    mods = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm"))
    info["kvm"] = ",".join(mods) or "none"
    info["tag"] = "%dc-%s" % (info["cores"], mods[-1] if mods else "nokvm")
    return info


def build_tool(name):
    """Compile bench/tools/NAME.c into build/bench/NAME when it is stale."""
    os.makedirs(BUILD_BENCH, exist_ok=True)
    src = os.path.join(HERE, "tools", name + ".c")
    out = os.path.join(BUILD_BENCH, name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-Wall", "-o", out, src], check=True)
    return out


def machine_figures():
    """Loopback TCP ceiling for one stream (a cached buffer, and 768 MiB of
    memory read and written as a migration must) and memcpy bandwidth, now."""
    figs = {}
    for tool, args in (("tcpbw", ["2"]), ("tcpbw", ["2", "768"]), ("membw", ["256", "1.5"])):
        try:
            out = subprocess.run([build_tool(tool)] + args, capture_output=True,
                                 text=True, timeout=60).stdout
            for line in out.splitlines():
                k, _, v = line.partition("=")
                figs[k] = float(v)
        except (subprocess.SubprocessError, OSError, ValueError) as e:
            print("machine figure %s failed: %s" % (tool, e), file=sys.stderr)
    return figs


# ---------------------------------------------------------------- main

_link_now = [None]


def set_link(rate):
    """Shape lo, the private namespace's only link, to rate (tc tbf), or
    take the shaping off (None). Only ever called inside that namespace."""
    if rate == _link_now[0]:
        return
    if _link_now[0]:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=True)
        _link_now[0] = None
    if rate:
        # 1 MiB of burst: lo's 64 KiB segments pass whole; 50 ms of queue.
        subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate,
                        "burst", "1mb", "latency", "50ms"], check=True)
        _link_now[0] = rate


def plan(args):
    table = QUICK if args.quick else FULL
    wls = args.workloads.split(",") if args.workloads else list(table)
    for w in wls:
        if w not in WL:
            sys.exit("unknown workload '%s' (see --list)" % w)
    systems = args.systems.split(",")
    for s in systems:
        if s not in SYSTEMS:
            sys.exit("unknown system '%s' (qemu, ferry)" % s)
    rows = []
    for w in wls:
        vs = args.variants.split(",") if args.variants else table.get(w, FULL[w])
        for v in vs:
            sysname = v.split("-")[0]
            if sysname not in SYSTEMS:
                sys.exit("variant '%s' names no system" % v)
            if sysname in systems:
                SYSTEMS[sysname].parse(v)  # reject typos before running anything
                rows.append((WL[w], v))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="qemu,ferry", help="comma list: qemu,ferry")
    ap.add_argument("--workloads", help="comma list (default: all, or the quick subset)")
    ap.add_argument("--variants", help="comma list of variants for every workload, e.g. "
                    "qemu,qemu-mfd4-zstd-prealloc,ferry-tcp (default: per workload)")
    ap.add_argument("--runs", type=int, help="runs per row (default 3, --quick 1)")
    ap.add_argument("--quick", action="store_true", help="1 run of a subset, under ~10 min")
    ap.add_argument("--timeout", type=int, help="override every migration's timeout (s)")
    ap.add_argument("--out", default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--keep-logs", action="store_true", help="keep guest logs (printed path)")
    ap.add_argument("--shared-net", action="store_true",
                    help="stay in the host's network namespace (lo bytes then count "
                    "everyone's loopback traffic)")
    ap.add_argument("--list", action="store_true", help="list workloads and variants")
    ap.add_argument("--summarize", metavar="CSV",
                    help="run nothing: summarize the per-run CSV of an earlier run (its table "
                    "and best-of-each-system lines, figures added since included)")
    args = ap.parse_args()

    if args.summarize:
        results, minfo = report.read_runs(args.summarize)
        order = list(dict.fromkeys((r["workload"], r["variant"]) for r in results))
        summary = report.summarize(results, order)
        print(report.text_table(summary, minfo))
        for line in report.best_ratios(summary):
            print("best: " + line)
        for line in report.best_ratios(summary, "e2e_ms"):
            print("best end to end: " + line)
        return 0

    if args.list:
        for w in WORKLOADS:
            print("%-16s %s\n%17sfull: %s\n%17squick: %s" % (
                w.name, w.what, "", ",".join(FULL[w.name]), "",
                ",".join(QUICK.get(w.name, [])) or "-"))
        print("\nqemu variants: %s\nferry variants: %s" % (QemuSystem.parse.__doc__,
                                                           FerrySystem.parse.__doc__))
        return 0
    runs = args.runs or (1 if args.quick else 3)
    rows = plan(args)
    if not os.path.exists(GUEST):
        sys.exit("%s missing: run make guest" % os.path.relpath(GUEST, ROOT))

    netns = False
    if not args.shared_net:
        netns = procs.enter_private_netns([os.path.abspath(__file__)] + sys.argv[1:])
    procs.install_signal_handlers()
    started = datetime.datetime.now()
    minfo = machine_info()
    minfo["date"] = started.strftime("%Y-%m-%d %H:%M:%S")
    minfo["command"] = " ".join(["bench/migrate.py"] + sys.argv[1:])
    minfo["network"] = ("private network namespace (lo counts only the benchmark)" if netns
                        else "host network namespace (lo bytes include other traffic)")
    unavailable = {}
    for name in sorted({v.split("-")[0] for _, v in rows}):
        why = SYSTEMS[name].available()
        if why:
            unavailable[name] = why
            print("%s: not run: %s" % (name, why), file=sys.stderr)
        else:
            minfo["version_" + name] = SYSTEMS[name].version()

    tmp_root = tempfile.mkdtemp(prefix="ferry-bench-")
    results = []  # dict per run
    try:
        print("machine: %s, %s cores, %s, kvm: %s" % (minfo["cpu"], minfo["cores"],
                                                       minfo["memory"], minfo["kvm"]))
        figs = machine_figures()
        minfo.update({k: v for k, v in figs.items()})
        print("machine figures: " + ", ".join("%s %s" % kv for kv in figs.items()))
        todo = [(r, wl, v) for r in range(runs) for wl, v in rows]
        for i, (r, wl, v) in enumerate(todo):
            sysname = v.split("-")[0]
            row = {"workload": wl.name, "variant": v, "run": r + 1}
            if sysname in unavailable:
                if r == 0:
                    row.update(converged=None, integrity="not run: " + unavailable[sysname])
                    results.append(row)
                continue
            if wl.link and not netns:
                if r == 0:
                    row.update(converged=None, integrity="not run: shaping the link needs the "
                               "private network namespace (root, not --shared-net)")
                    results.append(row)
                continue
            try:
                set_link(wl.link)
            except (OSError, subprocess.CalledProcessError) as e:
                if r == 0:
                    row.update(converged=None, integrity="not run: cannot shape the link: %s" % e)
                    results.append(row)
                continue
            timeout = args.timeout or (min(QUICK_TIMEOUT, wl.timeout_s) if args.quick
                                       else wl.timeout_s)
            tmp = os.path.join(tmp_root, "%s-%s-%d" % (wl.name, v, r + 1))
            os.makedirs(tmp)
            print("[%d/%d] %s %s run %d ..." % (i + 1, len(todo), wl.name, v, r + 1),
                  end="", flush=True)
            t = time.monotonic()
            try:
                row.update(SYSTEMS[sysname].run(wl, v, tmp, timeout))
            except (RunError, QMPError, OSError, ValueError, KeyError) as e:
                row.update(converged=None, integrity="run failed: %s" % e)
            row["notes"] = "; ".join(row.get("notes", []))
            row["move_mibps"] = move_rate(row)
            results.append(row)
            print(" %s (%.0f s)" % (report.one_line(row), time.monotonic() - t), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: writing what was measured", file=sys.stderr)
    finally:
        procs.kill_all()
        if netns:
            set_link(None)
        if args.keep_logs:
            print("guest logs kept in %s" % tmp_root)
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)

    if not results:
        return 1
    summary = report.summarize(results, [(wl.name, v) for wl, v in rows])
    print()
    print(report.text_table(summary, minfo))
    for line in report.best_ratios(summary):
        print("best: " + line)
    for line in report.best_ratios(summary, "e2e_ms"):
        print("best end to end: " + line)
    paths = report.write_all(args.out, started, minfo, results, summary,
                             {w.name: w.what for w in WORKLOADS}, plots=not args.no_plots)
    for p in paths:
        print("wrote %s" % os.path.relpath(p, os.getcwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
