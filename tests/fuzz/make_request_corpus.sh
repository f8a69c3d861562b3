#!/usr/bin/env bash
# Regenerate the seed corpus of the request fuzz harness
# (tests/fuzz/corpus-request/) from the verbs of docs/api.md: a valid
# request for every verb of the table in src/daemon/verbs.c, as a local
# client, as a sealed TCP client and as a peer host (migration.prepare,
# migration.abort), the authentication line, replies from peer hosts and
# workers, and a few hostile inputs. Input layout: the header comment of
# tests/fuzz/fuzz_request.c. Needs python3; no VM, no network.
set -eu
cd "$(dirname "$0")/../.."
out=${1:-tests/fuzz/corpus-request}
command -v python3 >/dev/null || { echo "make_request_corpus: python3 is needed"; exit 1; }
mkdir -p "$out"
rm -f "$out"/*
python3 - "$out" src/daemon/verbs.c <<'EOF'
import json, re, struct, sys

out, table = sys.argv[1], sys.argv[2]
verbs = re.findall(r'\{ "([a-z.]+)",', open(table).read())

# byte 0: mode (bits 0-1), key (2), previous key (3), the fixture's
# outgoing move of run2 (bits 4-6: 0 none, 1 queued, 2 preparing,
# 3 migrating, 4 resolving, 5 finishing, 6 migrating with a cancel asked),
# bit 7 (mode 2): name the key proved
LOCAL, TCP_RAW, SEALED, PEER = 0, 1, 2, 3
KEY, PREV = 4, 8
def mv(state): return state << 4

DEF = {"name": "new1", "memory_mib": 64, "vcpus": 1, "kernel": "/bin/sh"}
SALT = "00112233445566778899aabbccddeeff"
# one valid request per verb (the fixture: vm1 stopped, run1 and run2
# running, in1 arriving as move mv-0000bbbb, run2's move mv-0000aaaa)
requests = {
    "host.info": [{}],
    "vm.new": [dict(DEF, cmdline="ws=16M rate=0"),
               dict(DEF, name="new2", disk="/bin/sh", tap="tap0", mac="52:54:00:12:34:56",
                    cpu_mask="-avx2,-avx512f", dirty_tracker="ring")],
    "vm.start": [{"name": "vm1"}],
    "vm.stop": [{"name": "run1", "timeout_s": 5}],
    "vm.list": [{}],
    "vm.status": [{"name": "run1"}, {"name": "in1"}],
    "vm.verify": [{"name": "run1"}],
    "vm.delete": [{"name": "vm1"}, {"name": "run1", "force": True}],
    "vm.console": [{"name": "run1"}],
    "vm.move": [{"name": "run1", "destination": "192.0.2.7:7450"}],
    "host.set": [{"max_migrations": 4, "transport": "multichannel",
                  "migration_networks": ["10.0.0.0/24", "fd00::/64"], "downtime_ms": 100,
                  "bandwidth_mibps": 500, "memory_reserve_mib": 256, "encrypt": True,
                  "verify_memory": True, "prealloc": True, "migration_ports": "7460-7469",
                  "cpu_baseline": "-avx512f"}, {"accept_moves": False}],
    "migration.start": [{"names": ["run1"], "destination": "[fd00::7]:7450", "downtime_ms": 50,
                         "bandwidth_mibps": 100, "transport": "compression", "codec": "zstd",
                         "max_duration_s": 60, "on_timeout": "cancel", "encrypt": False,
                         "verify_memory": True},
                        {"all_running": True, "destination": "192.0.2.7"},
                        {"names": ["run1", "run2"], "destination": "192.0.2.7", "copy_disk": True,
                         "disk_dir": "/srv/images/", "remove_source_disk": True}],
    "migration.list": [{"all": True}],
    "migration.status": [{"id": "mv-0000aaaa"}, {"name": "run2"},
                         {"ids": ["mv-0000aaaa", "mv-0000bbbb"]}, {"name": "run2", "wait_ms": 250}],
    "migration.cancel": [{"id": "mv-0000aaaa"}, {"name": "run2"}],
    "migration.set": [{"name": "run2", "bandwidth_mibps": 200}],
    "migration.history": [{"name": "run2", "limit": 10}],
    "migration.prepare": [{"name": "new1", "id": "mv-1234abcd", "source": "hosta",
                           "definition": DEF, "extents": [[0, 256], [1024, 16]],
                           "key_salt": SALT, "stream_version": 4}],
    "migration.abort": [{"id": "mv-0000bbbb", "name": "in1", "reason": "cancelled by request"}],
}
missing = [v for v in verbs if v not in requests]
if missing:
    sys.exit("make_request_corpus: no seed for verb(s) %s: add them" % ", ".join(missing))

def line(verb, args):
    return (json.dumps(dict({"cmd": verb}, **args), separators=(",", ":")) + "\n").encode()

def sealed(*chunks, raw=False, drain=True):
    b = b""
    for c in chunks:
        op = (1 if raw else 0) | (2 if drain else 0)
        b += struct.pack("<BH", op, len(c)) + c
    return b

n = 0
def seed(name, cfg, body):
    global n
    n += 1
    open("%s/%s" % (out, name), "wb").write(bytes([cfg]) + body)

for verb in verbs:
    for i, args in enumerate(requests[verb]):
        l = line(verb, args)
        # with run2 migrating (a move to cancel, limit, look at), and
        # without (a slot free for a prepare or a start)
        seed("local-%s-%d" % (verb, i), LOCAL | mv(3) | (KEY if verb == "migration.prepare" else 0), l)
        seed("sealed-%s-%d" % (verb, i), SEALED, sealed(l))
for st in range(1, 7):
    seed("local-cancel-state%d" % st, LOCAL | mv(st),
         line("migration.cancel", {"name": "run2"}) + line("migration.set", {"name": "run2", "bandwidth_mibps": 0}) +
         line("migration.status", {"name": "run2"}))

# a session: define, start, status, delete
seed("local-session", LOCAL,
     line("vm.new", DEF) + line("vm.start", {"name": "new1"}) + line("vm.status", {"name": "new1"}) +
     line("vm.delete", {"name": "new1"}) + line("migration.history", {}))
# framing: CRLF, blank lines, NUL, a line over 64 KiB, no final newline
seed("local-framing", LOCAL, b'{"cmd":"vm.list"}\r\n\n\n{"cmd":"vm.list"}\x00junk\n' +
     b"x" * 70000 + b'\n{"cmd":"host.info"}')
seed("local-badjson", LOCAL, b'{"cmd":"vm.new","name":"a","memory_mib":1e999}\n{"cmd":["x"]}\n[1,2]\n{"cmd":"vm.nope"}\n')
# prepare: each refusal
p = requests["migration.prepare"][0]
seed("local-prepare-refusals", LOCAL | KEY,
     line("migration.prepare", dict(p, id="bad id")) + line("migration.prepare", dict(p, stream_version=99)) +
     line("migration.prepare", dict(p, key_salt="zz")) + line("migration.prepare", dict(p, extents=[[0, 1 << 40]])) +
     line("migration.prepare", dict(p, name="vm1", definition=dict(DEF, name="vm1"))) +
     line("migration.prepare", dict(p, id="mv-0000aaaa")) +
     line("migration.prepare", {k: v for k, v in p.items() if k != "key_salt"}))
seed("local-prepare-prealloc", LOCAL | KEY,
     line("host.set", {"prealloc": True, "migration_ports": "7460-7461"}) + line("migration.prepare", p))

# the console: keystrokes right behind the request, then more than its
# buffer holds (the worker never reads)
con = line("vm.console", {"name": "run1"})
seed("local-console", LOCAL, con + b"ls -l\r" + b"k" * 70000)
seed("sealed-console", SEALED, sealed(con + b"echo hi\r", b"\x1d" * 60000, b"q" * 30000))
# more keystrokes behind the request than the console's buffer holds, in
# the frames opened while a request before it is served
seed("sealed-console-burst", SEALED | 0x80,
     sealed(line("vm.list", {}) + con + b"a" * 30000, b"b" * 60000, drain=False) + sealed(b"c" * 1000))
seed("local-console-read", LOCAL | 0x80, con + b"ls -l\r" + b"k" * 70000)

# TCP before authentication: no auth, a wrong proof, a malformed one, a long line
seed("tcp-noauth", TCP_RAW, line("vm.list", {}))
seed("tcp-badproof", TCP_RAW, line("auth", {"nonce": SALT, "proof": "00" * 32, "key": "0123456789abcdef"}))
seed("tcp-malformed", TCP_RAW, line("auth", {"nonce": "zz", "proof": 5}))
seed("tcp-long", TCP_RAW, b"{" * 66000)
# sealed: the previous key proved and named, pipelined behind the auth line,
# a request split over frames, hostile frames
seed("sealed-prevkey", SEALED | KEY | PREV | mv(3), sealed(line("migration.abort", {"id": "mv-0000bbbb"})))
seed("sealed-pipelined", SEALED | KEY | 0x80, sealed(line("vm.list", {}), drain=False) + sealed(line("host.info", {})))
l = line("migration.prepare", p)
seed("sealed-split", SEALED, sealed(l[:20], l[20:60], drain=False) + sealed(l[60:]))
seed("sealed-badlen", SEALED, sealed(struct.pack("<I", 0x7fffffff) + b"\0" * 16, raw=True))
seed("sealed-badtag", SEALED, sealed(struct.pack("<I", 4) + b"abcd" + b"\0" * 16, raw=True))
seed("sealed-plaintext", SEALED, sealed(line("vm.list", {}), raw=True))
# requests pipelined in one frame, then a frame bigger than the room they
# leave: every one is served (ferryd once answered E_TOO_LONG and dropped them)
seed("sealed-pipelined-big", SEALED, sealed(line("vm.status", {"name": "n" * 200}) * 150, drain=False) +
     sealed(line("vm.status", {"name": "x" * 40000})))
seed("sealed-long", SEALED, sealed(b"y" * 60000, b"y" * 6000))

# replies from a peer host (purpose byte, then what it sends) and from workers
PREPARE, ABORT, CONFIRM, RESOLVE, EXTENTS, POLL, IN_POLL = range(7)
greet_none = b'{"ferryd":"0.1.0","proto_min":1,"proto":1,"auth":"none"}\n'
greet_key = ('{"ferryd":"0.1.0","proto_min":1,"proto":1,"auth":"hmac-sha256","nonce":"%s",'
             '"seal":"aes-256-gcm","keys":["0123456789abcdef"]}\n' % SALT).encode()
def j(o): return (json.dumps(o, separators=(",", ":")) + "\n").encode()
seed("peer-prepare-ok", PEER | mv(2), bytes([PREPARE]) + greet_none + j({"ok": True, "name": "run2", "id": "mv-0000aaaa", "address": "127.0.0.1:7461"}))
seed("peer-prepare-refused", PEER | mv(2), bytes([PREPARE]) + greet_none + j({"ok": False, "code": "E_BAD_ARG", "error": "unknown field 'extents' for migration.prepare"}))
seed("peer-prepare-keyed", PEER | KEY | mv(2), bytes([PREPARE]) + greet_key + j({"ok": True, "proof": "00" * 32}))
seed("peer-prepare-oldproto", PEER | KEY | mv(2), bytes([PREPARE]) + b'{"ferryd":"9","proto_min":7,"proto":9,"auth":"hmac-sha256"}\n')
seed("peer-abort", PEER | mv(3), bytes([ABORT]) + greet_none + j({"ok": False, "code": "E_BAD_ARG", "error": "unknown field 'reason'"}))
seed("peer-confirm", PEER | mv(5), bytes([CONFIRM]) + greet_none + j({"ok": True, "state": "running"}))
seed("peer-resolve", PEER | mv(4), bytes([RESOLVE]) + greet_none + j({"ok": True, "state": "incoming", "migration": {"stage": "precopy"}}))
seed("worker-extents", PEER | mv(2), bytes([EXTENTS]) + j({"ok": True, "extents": [[0, 16], [32, 8]], "pages": 24}))
seed("worker-poll", PEER | mv(3), bytes([POLL]) + j({"ok": True, "migration": {"stage": "failed", "error": "peer gone"}}))
seed("worker-poll-done", PEER | mv(3), bytes([POLL]) + j({"ok": True, "migration": {"stage": "completed", "downtime_ms": 12}}))
seed("worker-in-poll", PEER, bytes([IN_POLL]) + j({"ok": True, "state": "running", "migration": {"stage": "resume"}}))
print("make_request_corpus: %d seeds in %s" % (n, out))
EOF
