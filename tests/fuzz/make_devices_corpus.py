#!/usr/bin/env python3
"""Write the seed corpus of the device fuzz harness (tests/fuzz/fuzz_devices.c)
into tests/fuzz/corpus-devices/ (or the directory given): one small input per
thing a guest does, each encoded as the harness reads it, so the fuzzer starts
from working driver sessions and mutates them rather than finding the
protocol byte by byte. Run from anywhere; needs nothing but python3."""
import os
import struct
import sys

OUT, IN, POKE, DESC, AVAIL, AVAIL_IDX, KICK, DRIVER_INIT, CFG, FRAME, DRAIN, RX, \
    FEED, DISK, ANNOUNCE, MIGRATE = range(16)

# setup byte
READONLY, UNLOCKED, NO_BACKEND, DRIVER_UP = 0x01, 0x02, 0x04, 0x20
def disk_size(n):          # 0: 64 sectors, 1: empty, 2: 511 bytes, 3: 64 sectors + 100
    return n << 3

# queue selectors and port bases (take_queue / take_port)
BLK_Q, RX_Q, TX_Q = 0, 1, 2
P_UART, P_I8042, P_PCI, P_BLK, P_NET = 0, 1, 2, 3, 4
VIRTIO_NOTIFY, VIRTIO_STATUS, VIRTIO_ISR, VIRTIO_CONFIG = 0x10, 0x12, 0x13, 0x14
NEXT, WRITE, INDIRECT = 1, 2, 4
HDR, DATA, STATUS, BUF = 0x10000, 0x11000, 0x12000, 0x13000

u8 = lambda v: struct.pack('<B', v & 0xff)
u16 = lambda v: struct.pack('<H', v & 0xffff)
u32 = lambda v: struct.pack('<I', v & 0xffffffff)
u64 = lambda v: struct.pack('<Q', v & 0xffffffffffffffff)

def width(size, count=1):
    return u8({1: 0, 2: 1, 4: 2}[size] | (count - 1) << 4)

def out(base, off, size, *vals):
    return u8(OUT) + u8(base) + u8(off) + width(size, len(vals)) + b''.join(u32(v) for v in vals)

def inp(base, off, size, count=1):
    return u8(IN) + u8(base) + u8(off) + width(size, count)

def gpa(addr):
    if addr < 1 << 24:
        return u8(0) + u16(addr) + u8(addr >> 16)
    if addr >> 32 == 1 and addr & 0xffffffff < 0x10000:
        return u8(1) + u16(addr)
    return u8(3) + u64(addr)

def poke(addr, data):
    return u8(POKE) + gpa(addr) + u8(len(data)) + data

def desc(q, i, addr, length, flags, nxt=0):
    return u8(DESC) + u8(q) + u8(i) + gpa(addr) + u8(1) + u32(length) + u8(flags) + u16(nxt)

def avail(q, head):
    return u8(AVAIL) + u8(q) + u16(head)

def kick(q):
    return u8(KICK) + u8(q)

def cfg(dev, reg, size, val=None):
    w = {1: 0, 2: 1, 4: 2}[size] | (0x80 if val is not None else 0)
    return u8(CFG) + u8(dev) + u8(reg) + u8(w) + (u32(val) if val is not None else b'')

def frame(data):
    return u8(FRAME) + u16(len(data)) + data[:64]

def blk_req(kind, sector, data_len, write_data=None, head=0):
    """A three-descriptor request at table entries head..head+2."""
    hdr = u32(kind) + u32(0) + u64(sector)
    s = poke(HDR, hdr)
    if write_data is not None:
        s += poke(DATA, write_data)
    flags = 0 if kind == 1 else WRITE
    s += desc(BLK_Q, head, HDR, 16, NEXT, head + 1)
    s += desc(BLK_Q, head + 1, DATA, data_len, flags | NEXT, head + 2)
    s += desc(BLK_Q, head + 2, STATUS, 1, WRITE)
    return s + avail(BLK_Q, head) + kick(BLK_Q)

def migrate(mode=0, extra=b''):
    return u8(MIGRATE) + u8(mode) + extra

def uart_section(rx=b''):
    # dll dlm ier lcr mcr lsr msr scr fcr thr_ipending rx_len, rx
    return bytes([1, 0, 0x0f, 3, 0x0b, 0x61, 0xb0, 0, 0xc1, 1, len(rx)]) + rx

def virtio_section(host, guest, status, isr, sel, queues):
    s = u32(host) + u32(guest) + u8(status) + u8(isr) + u16(sel) + u16(len(queues))
    for size, pfn, last, used in queues:
        s += u16(size) + u32(pfn) + u16(last) + u16(used)
    return s

def replace(section, data, flip=0):
    """Migration whose section number `section` is replaced by `data`."""
    return migrate(3, u8(section) + u16(len(data)) + data + u8(flip))

def self_feeding():
    """Chain A writes the used index to sector 5, chain B reads it back over
    the avail index; the avail ring alternates A, B (see
    test_virtio_blk.c, self_feeding_ring)."""
    ring = 0x1000
    used_idx, avail_idx = ring + 0x2000 + 2, ring + 16 * 256 + 2
    s = poke(used_idx, u16(4)) + poke(HDR, u32(1) + u32(0) + u64(5)) + \
        poke(HDR + 0x100, u32(0) + u32(0) + u64(5))
    s += desc(BLK_Q, 10, HDR, 16, NEXT, 11) + desc(BLK_Q, 11, used_idx, 2, NEXT, 12) + \
        desc(BLK_Q, 12, STATUS, 1, WRITE) + desc(BLK_Q, 13, HDR + 0x100, 16, NEXT, 14) + \
        desc(BLK_Q, 14, avail_idx, 2, NEXT | WRITE, 15) + desc(BLK_Q, 15, STATUS + 1, 1, WRITE)
    ring_entries = b''.join(u16(13 if i % 2 else 10) for i in range(256))
    for off in range(0, 512, 128):
        s += poke(avail_idx + 2 + off, ring_entries[off:off + 128])
    return s + u8(AVAIL_IDX) + u8(BLK_Q) + u16(0) + u16(2)

SEEDS = {
    'blk-read': u8(DRIVER_UP) + blk_req(0, 2, 1024) + inp(P_BLK, VIRTIO_ISR, 1),
    'blk-write': u8(DRIVER_UP) + blk_req(1, 3, 512, b'\xab' * 64),
    'blk-flush-getid': u8(DRIVER_UP) + blk_req(4, 0, 0) + blk_req(8, 0, 20, head=3),
    'blk-past-end': u8(DRIVER_UP) + blk_req(0, 63, 1024),
    'blk-readonly': u8(DRIVER_UP | READONLY) + blk_req(1, 0, 512, b'\x11' * 32),
    'blk-unlocked': u8(DRIVER_UP | UNLOCKED) + blk_req(1, 0, 512, b'\x22' * 32) +
                    u8(DISK) + u8(1) + blk_req(0, 0, 512),
    'blk-tiny-disk': u8(DRIVER_UP | disk_size(2)) + blk_req(0, 0, 512),
    'blk-loop': u8(DRIVER_UP) + desc(BLK_Q, 0, HDR, 16, NEXT, 1) +
                desc(BLK_Q, 1, DATA, 16, NEXT, 0) + avail(BLK_Q, 0) + kick(BLK_Q) +
                out(P_BLK, VIRTIO_STATUS, 1, 0),
    'blk-indirect': u8(DRIVER_UP) + desc(BLK_Q, 0, HDR, 16, INDIRECT) + avail(BLK_Q, 0) +
                    kick(BLK_Q),
    'blk-outside-ram': u8(DRIVER_UP) + desc(BLK_Q, 0, 0x1fff0, 0x100, 0) +
                       desc(BLK_Q, 1, 0x1_0000_7ff0, 0x20, WRITE) + avail(BLK_Q, 0) +
                       avail(BLK_Q, 1) + kick(BLK_Q),
    'blk-self-feeding': u8(DRIVER_UP) + self_feeding() + kick(BLK_Q),
    'restore-blk-self-feeding': u8(DRIVER_UP) + self_feeding() +
                                replace(2, virtio_section(0x244, 0x244, 7, 0, 0,
                                                          [(256, 1, 0, 100)]) + u64(64)) +
                                kick(BLK_Q),
    'blk-handoff': u8(DRIVER_UP) + blk_req(1, 1, 512, b'\x33' * 16) + u8(DISK) + u8(0) +
                   blk_req(0, 1, 512, head=3) + u8(DISK) + u8(2),
    'driver-high-ram': u8(0) + u8(DRIVER_INIT) + u8(0) + u32(0) + u8(0xf0) + u8(0) +
                       blk_req(0, 0, 512),
    'driver-bad-pfn': u8(0) + u8(DRIVER_INIT) + u8(1) + u32(0xffffffff) + u8(0xff) +
                      u32(0x7fffffff) + u8(43) + u8(1) + u8(0x0f) + kick(TX_Q),
    'net-tx': u8(DRIVER_UP) + poke(BUF, bytes(10) + b'\xff' * 6 + b'\x52\x54\x00\x01\x02\x03') +
              desc(TX_Q, 0, BUF, 74, 0) + avail(TX_Q, 0) + kick(TX_Q) + u8(DRAIN),
    'net-rx': u8(DRIVER_UP) + desc(RX_Q, 0, BUF, 1526, WRITE) + desc(RX_Q, 1, BUF + 0x800, 1526, WRITE) +
              avail(RX_Q, 0) + avail(RX_Q, 1) + kick(RX_Q) + frame(b'\x01' * 60) +
              frame(b'\x02' * 1514) + inp(P_NET, VIRTIO_ISR, 1),
    'net-rx-small': u8(DRIVER_UP) + desc(RX_Q, 0, BUF, 12, WRITE) + avail(RX_Q, 0) +
                    kick(RX_Q) + frame(b'\x03' * 100) + u8(RX),
    'net-mac-announce': u8(DRIVER_UP) + b''.join(out(P_NET, VIRTIO_CONFIG + i, 1, v)
                                                 for i, v in enumerate([1, 2, 3, 4, 5, 6])) +
                        u8(ANNOUNCE) + inp(P_NET, VIRTIO_CONFIG, 4, 2),
    'net-no-backend': u8(DRIVER_UP | NO_BACKEND) + desc(TX_Q, 0, BUF, 64, 0) + avail(TX_Q, 0) +
                      kick(TX_Q) + u8(ANNOUNCE),
    'pci-enumerate': u8(0) + b''.join(cfg(d, r, 4) for d in range(6) for r in (0, 8, 0x2c, 0x3c)),
    'pci-bar-move': u8(0) + cfg(1, 4, 2, 0) + cfg(1, 0x10, 4, 0xffffffff) + cfg(1, 0x10, 4) +
                    cfg(1, 0x10, 4, 0xd001) + cfg(1, 4, 2, 5) + inp(P_BLK, 0, 4) +
                    cfg(2, 0x10, 4, 0xd001) + cfg(2, 4, 2, 5),
    'pci-master-off': u8(DRIVER_UP) + cfg(1, 4, 2, 1) + blk_req(0, 0, 512) + cfg(1, 4, 2, 5),
    'pci-intx': u8(DRIVER_UP) + cfg(2, 4, 2, 0x405) + blk_req(0, 0, 512) + cfg(1, 6, 2) +
                inp(P_BLK, VIRTIO_ISR, 1),
    'pci-odd-access': u8(0) + out(P_PCI, 3, 1, 0) + out(P_PCI, 0, 2, 0x8000) +
                      out(P_PCI, 0, 4, 0x80000810) + inp(P_PCI, 6, 4) + inp(P_PCI, 7, 2),
    'uart': u8(0) + out(P_UART, 3, 1, 0x80) + out(P_UART, 0, 1, 1) + out(P_UART, 3, 1, 3) +
            out(P_UART, 1, 1, 3) + out(P_UART, 2, 1, 0xc7) + out(P_UART, 0, 1, 0x41, 0x42) +
            inp(P_UART, 2, 1) + u8(FEED) + u8(5) + b'hello' + inp(P_UART, 0, 1, 3) +
            out(P_UART, 4, 1, 0x1a) + out(P_UART, 0, 1, 0x55) + inp(P_UART, 6, 1) +
            inp(P_UART, 5, 4) + inp(P_UART, 0, 2),
    'i8042-reset': u8(0) + inp(P_I8042, 4, 1) + out(P_I8042, 4, 1, 0xfe) + inp(P_UART, 0, 1),
    'migrate-busy': u8(DRIVER_UP) + blk_req(0, 1, 512) + desc(RX_Q, 0, BUF, 1526, WRITE) +
                    avail(RX_Q, 0) + kick(RX_Q) + u8(FEED) + u8(3) + b'abc' + migrate(0) +
                    frame(b'\x04' * 60) + blk_req(1, 2, 512, b'\x44' * 8, head=3),
    'migrate-unlocked': u8(UNLOCKED) + migrate(0) + u8(DRIVER_INIT) + u8(0) + u32(0) + u8(0) +
                        u8(0) + blk_req(0, 0, 512),
    'migrate-cancelled': u8(DRIVER_UP) + migrate(1) + blk_req(0, 0, 512),
    'migrate-patched': u8(DRIVER_UP) + migrate(2, u8(2) + u8(0) + u16(14) + u8(2) + b'\x05\x01') +
                       blk_req(0, 0, 512),
    'migrate-truncated': u8(DRIVER_UP) + migrate(2, u8(1) + u8(1) + u16(100) + u8(0)),
    'restore-uart': u8(0) + replace(0, uart_section(b'xyz')) + inp(P_UART, 2, 1) +
                    inp(P_UART, 0, 1, 4),
    'restore-uart-fifo-overrun': u8(0) + replace(0, uart_section(b'q' * 64)[:10] + b'\x41' + b'q' * 65),
    'restore-blk': u8(0) + replace(2, virtio_section(0x244, 0x244, 7, 1, 0, [(256, 1, 0, 0)]) +
                                   u64(64)) + blk_req(0, 0, 512),
    'restore-blk-indices': u8(0) + replace(2, virtio_section(0x244, 0x244, 7, 0, 0,
                                                             [(256, 1, 0, 100)]) + u64(64)) +
                           blk_req(0, 0, 512),
    'restore-net': u8(0) + replace(3, virtio_section(0x10020, 0x10020, 7, 0, 1,
                                                     [(256, 4, 0, 0), (256, 0x100004, 0, 0)]) +
                                   bytes([0x52, 0x54, 0, 9, 9, 9]) + u16(1)) +
                   desc(TX_Q, 0, BUF, 64, 0) + avail(TX_Q, 0) + kick(TX_Q),
}

def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus-devices')
    os.makedirs(out_dir, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out_dir, name), 'wb') as f:
            f.write(data)
    print(f'{len(SEEDS)} seeds in {out_dir}')

if __name__ == '__main__':
    main()
