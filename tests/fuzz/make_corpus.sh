#!/usr/bin/env bash
# Regenerate the fuzz seed corpus (tests/fuzz/corpus/) from a real VM:
# boot the test guest, save its state through the control socket, then cut
# the multi-MiB state file down to a few KiB-sized seeds that keep every
# record kind (header, config, a few memory runs re-encoded raw / zero /
# zstd / lz4, sync, every section, state-end, end) plus hand-made hostile
# streams. Seeds stay small so the fuzzer mutates structure, not page data.
# Needs /dev/kvm, socat, python3 and the zstd CLI; run from anywhere.
set -eu
cd "$(dirname "$0")/../.."
root=$PWD
out=${1:-tests/fuzz/corpus}
vm=${FERRY_BIN:-$root/build/bin}/ferry-vm
guest=${FERRY_GUEST:-$root/build/guest/testguest.elf}
for tool in socat python3 zstd; do
	command -v $tool >/dev/null || { echo "make_corpus: $tool is needed"; exit 1; }
done
[ -x "$vm" ] && [ -f "$guest" ] || { echo "make_corpus: build first (make -j2)"; exit 1; }
T=$(mktemp -d /tmp/ferry-corpus.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$T"' EXIT

"$vm" --name seed --kernel "$guest" --memory 32M --cmdline "ws=4M rate=8" \
	--serial "$T/serial" --control "$T/sock" >"$T/vm.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'FERRY-GUEST hb n=1 ' "$T/serial" 2>/dev/null && break; sleep 0.1; done
printf '{"cmd":"save","path":"%s"}\n' "$T/state" | socat -t 30 - UNIX-CONNECT:"$T/sock" | grep -q '"ok":true' ||
	{ echo "make_corpus: save failed"; cat "$T/vm.log"; exit 1; }
printf '{"cmd":"stop"}\n' | socat -t 10 - UNIX-CONNECT:"$T/sock" >/dev/null || true
wait $pid || true
pid=

mkdir -p "$out"
python3 - "$T/state" "$out" <<'EOF'
import json, struct, subprocess, sys

src, out = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
hdr, pos, recs = data[:16], 16, []
while pos < len(data):
    t, n = struct.unpack_from('<II', data, pos)
    recs.append((t, data[pos + 8:pos + 8 + n]))
    pos += 8 + n
CONFIG, MEM, SECTION, SYNC, STATE_END, EOS = 1, 2, 3, 4, 5, 6
CPU_MODEL = 13

def rec(t, body):
    return struct.pack('<II', t, len(body)) + body

import ctypes
_xxh = ctypes.CDLL('libxxhash.so.0')
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

def mig_sum(b):
    return _xxh.XXH3_64bits(b, len(b))

def memhdr(gpa, npages, gen, enc, pages=b''):
    # v2: the header ends with the XXH3 of the run's uncompressed pages
    return struct.pack('<QIHBBQ', gpa, npages, gen, enc, 0, mig_sum(pages) if pages else 0)

def zstd(raw):
    return subprocess.run(['zstd', '-q', '-c', '-3'], input=raw, stdout=subprocess.PIPE, check=True).stdout

def lz4_literals(raw):
    # One LZ4 block sequence of literals only: a valid block any decoder accepts.
    n, ext = len(raw), b''
    rest = n - 15
    while rest >= 255:
        ext += b'\xff'
        rest -= 255
    return bytes([0xf0]) + ext + bytes([rest]) + raw

config = [b for t, b in recs if t == CONFIG][0]
mems = [b for t, b in recs if t == MEM]
sync = [b for t, b in recs if t == SYNC][0]
sections = [b for t, b in recs if t == SECTION]
raw_mems = [b for b in mems if b[14] == 0 and struct.unpack_from('<I', b, 8)[0] <= 2][:2]
zero_mems = [b for b in mems if b[14] == 1][:1]
tail = rec(SYNC, sync) + b''.join(rec(SECTION, s) for s in sections) + rec(STATE_END, b'') + rec(EOS, b'')
head = hdr + rec(CONFIG, config)

def recoded(enc):
    body = b''
    for m in raw_mems:
        gpa, npages, gen = struct.unpack_from('<QIH', m, 0)
        payload = m[24:]
        comp = zstd(payload) if enc == 2 else lz4_literals(payload)
        body += rec(MEM, memhdr(gpa, npages, gen, enc, payload) + comp)
    return body

def section(name, version, payload):
    nb = name.encode()
    return rec(SECTION, struct.pack('<H', len(nb)) + nb + struct.pack('<IQ', version, mig_sum(payload)) + payload)

mem_raw = b''.join(rec(MEM, m) for m in raw_mems + zero_mems)

DIGEST, BLOCK = 7, 64
def digest(mem_recs, flip=False):
    # docs/stream.md, DIGEST: one sum per 64-page block, XXH3 of the
    # block's page sums; a page no record brought is summed as zeros.
    # from version 3 the CONFIG payload opens with the u64 sum of its JSON
    version = struct.unpack_from('<I', hdr, 8)[0]
    npages = json.loads(config[8:] if version >= 3 else config)['memory'] // 4096
    pages = {}
    for m in mem_recs:
        gpa, npages_run, gen, enc = struct.unpack_from('<QIHB', m, 0)
        for i in range(npages_run):
            pages[gpa // 4096 + i] = m[24 + i * 4096:24 + (i + 1) * 4096] if enc == 0 else bytes(4096)
    zero = mig_sum(bytes(4096))
    sums = []
    for b in range((npages + BLOCK - 1) // BLOCK):
        ps = [mig_sum(pages[p]) if p in pages else zero
              for p in range(b * BLOCK, min(npages, (b + 1) * BLOCK))]
        sums.append(mig_sum(struct.pack(f'<{len(ps)}Q', *ps)))
    if flip:
        sums[0] ^= 1
    body = struct.pack(f'<{len(sums)}Q', *sums)
    return rec(DIGEST, struct.pack('<QIIQQ', 0, len(sums), BLOCK, npages, mig_sum(body)) + body)

DISK = 14
def disk_copy_config(cfg, nbytes):
    # CONFIG of version 3 on: the u64 sum of the JSON, then the JSON
    j = json.loads(cfg[8:])
    j.update(disk='/tmp/ferry-fuzz-copy.img', disk_copy_bytes=nbytes, disk_copy_allocated=0)
    text = json.dumps(j, separators=(',', ':')).encode()
    return struct.pack('<Q', mig_sum(text)) + text

def disk_run(off, data, bad_sum=False):
    return rec(DISK, struct.pack('<QIIQ', off, len(data), 0, mig_sum(data) ^ (1 if bad_sum else 0)) + data)

seeds = {
    # The destination checks its memory against the source's digest at
    # STATE_END: one that matches, one that does not.
    'real-digest': head + mem_raw + digest(raw_mems + zero_mems) + tail,
    'digest-mismatch': head + mem_raw + digest(raw_mems + zero_mems, True) + tail,
    'real-raw': head + mem_raw + tail,
    'real-zstd': head + recoded(2) + b''.join(rec(MEM, m) for m in zero_mems) + tail,
    'real-lz4': head + recoded(3) + tail,
    'real-no-memory': head + tail,
    # The live stream's vCPU model (version 1: TSC kHz, MCG_CAP, feature
    # MSRs), as a source sends it after CPUID; and one whose count overruns it.
    'cpu-model': head + rec(CPU_MODEL, struct.pack('<IIQI', 1, 2994374, 0x100010a, 2) +
                            struct.pack('<IQ', 0x10a, 0x20000c0eb) + struct.pack('<IQ', 0x345, 0x4f3)) + tail,
    'cpu-model-overrun': head + rec(CPU_MODEL, struct.pack('<IIQI', 1, 2994374, 0, 200) +
                                   struct.pack('<IQ', 0x10a, 1)) + tail,
    # Generations: a newer copy of a page, then an older one that must lose.
    'real-generations': head + b''.join(rec(MEM, memhdr(*struct.unpack_from('<QIH', m, 0)[:2], 3, 0, m[24:]) + m[24:])
                                        for m in raw_mems) + mem_raw + tail,
    # Hostile, each otherwise well-formed.
    # A move that copies the disk (stream version 7): CONFIG asks for the
    # copy, DISK runs at the image's start and end, one whose sum is off.
    'disk-copy': hdr + rec(CONFIG, disk_copy_config(config, 1 << 20)) + disk_run(0, bytes(range(256)) * 16) +
                 disk_run((1 << 20) - 512, b'\x5a' * 512) + disk_run(4096, bytes(512), True) + tail,
    'bad-magic': b'FERRYMIX' + hdr[8:] + rec(CONFIG, config) + tail,
    'bad-version': hdr[:8] + struct.pack('<II', 99, 0) + rec(CONFIG, config) + tail,
    'huge-length': head + struct.pack('<II', MEM, 0xffffffff) + b'\0' * 64,
    'huge-section-length': head + struct.pack('<II', SECTION, 0x00200000) + b'\x03\x00kvm' + b'\0' * 64,
    'page-beyond-ram': head + rec(MEM, memhdr(64 << 30, 1, 1, 0, b'\xaa' * 4096) + b'\xaa' * 4096) + tail,
    'bad-page-sum': head + rec(MEM, memhdr(0x100000, 1, 1, 0, b'\xbb' * 4096) + b'\xaa' * 4096) + tail,
    'page-straddles-end': head + rec(MEM, memhdr((32 << 20) - 4096, 2, 1, 1)) + tail,
    'page-huge-run': head + rec(MEM, memhdr(0, 0x10000000, 1, 1)) + tail,
    'duplicate-section': head + rec(SECTION, sections[0]) + tail,
    'config-not-first': hdr + tail,
    'record-after-state-end': head + tail[:-8] + rec(MEM, memhdr(0, 1, 1, 1)) + rec(EOS, b''),
    'section-trailing-bytes': head + b''.join(rec(SECTION, s + (b'\0' if i == 0 else b''))
                                              for i, s in enumerate(sections)) + rec(STATE_END, b'') + rec(EOS, b''),
    'zstd-garbage': head + rec(MEM, memhdr(0, 1, 1, 2) + b'\x28\xb5\x2f\xfd' + b'\xff' * 60) + tail,
    'lz4-short': head + rec(MEM, memhdr(0, 2, 1, 3, b'\x11' * 8192) + lz4_literals(b'\x11' * 4096)) + tail,
    'unknown-section': head + section('tpm', 1, b'\0' * 16) + tail,
    'truncated': (head + mem_raw + tail)[:len(head) + 3000],
}
total = 0
for name, blob in sorted(seeds.items()):
    assert len(blob) < 64 * 1024, name
    total += len(blob)
    open(f'{out}/{name}', 'wb').write(blob)
assert total < 512 * 1024
print(f'{len(seeds)} seeds, {total} bytes in {out}')
EOF
