# The test lab's client check: send one 0x88b5 frame to a MAC from an
# interface and wait for the test guest's echo of it (its net=1 mode).
# Usage: netlab_ping.py IFNAME MAC WAIT_S; exit 0 on the echo.
import socket, sys, time
ifname, mac, wait = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((ifname, 0x88b5))
me = s.getsockname()[4]
payload = b'lab-ping-%d' % int(time.time() * 1000)
t0 = time.time()
s.send(mac + me + b'\x88\xb5' + payload + b'\0' * 20)
s.settimeout(0.05)
while time.time() - t0 < wait:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if f[6:12] == mac and payload in f:
        print('echo after %.0f ms' % ((time.time() - t0) * 1000)); sys.exit(0)
print('no echo within %.1f s' % wait); sys.exit(1)
