#!/usr/bin/env python3
"""A byte-mangling TCP relay for stream-corruption tests.

mangle_proxy.py LISTEN_PORT TARGET_PORT MODE OFFSET [CONN]
mangle_proxy.py LISTEN_PORT TARGET_PORT tap FILE
  MODE flip: XOR one byte at OFFSET of the client->target direction
  MODE cut:  close both sides once OFFSET bytes have passed
  MODE tap:  change nothing; append every byte of every connection, both
             directions, to FILE (what someone on the path would see)
  CONN: which accepted connection to mangle (0 = first, the main channel)
Relays everything else untouched, both directions, until both ends close.
"""
import socket, sys, threading

listen_port, target_port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
tap = open(sys.argv[4], 'ab', buffering=0) if mode == 'tap' else None
tap_lock = threading.Lock()
offset = 0 if tap else int(sys.argv[4])
conn_idx = int(sys.argv[5]) if len(sys.argv) > 5 else 0

def pump(src, dst, mangle):
    seen = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if tap:
                with tap_lock:
                    tap.write(data)
            if mangle and mode == 'flip' and seen <= offset < seen + len(data):
                b = bytearray(data)
                b[offset - seen] ^= 0x5a
                data = bytes(b)
            if mangle and mode == 'cut' and seen + len(data) >= offset:
                dst.sendall(data[:max(0, offset - seen)])
                break
            dst.sendall(data)
            seen += len(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', listen_port))
ls.listen(16)
print('ready', flush=True)
n = 0
while True:
    c, _ = ls.accept()
    t = socket.create_connection(('127.0.0.1', target_port))
    m = n == conn_idx
    threading.Thread(target=pump, args=(c, t, m), daemon=True).start()
    threading.Thread(target=pump, args=(t, c, False), daemon=True).start()
    n += 1
