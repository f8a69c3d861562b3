#!/usr/bin/env python3
"""Boot benchmark (issue 2): time from start to the test guest's ready line,
ferry beside QEMU 7.2 in the same run, and each VMM's own memory overhead
(resident memory beyond the guest RAM it has touched).

  bench/boot.py [--runs N] [--memory MIB] [--vcpus N]

ferry is measured two ways: `ferry vm start` through ferryd (what a user
runs) and ferry-vm started directly. QEMU: qemu-system-x86_64 -accel kvm
-cpu host -kernel <the same test guest> (host,-arch-capabilities where
the host's KVM refuses that MSR: bench/helpers/qmp.py). Overhead is read from
/proc/PID/smaps while the guest idles: total Rss minus the Rss of the guest
RAM mapping (ferry's memfd, QEMU's pc.ram). Results: a table on stdout,
bench/results/boot-latest.md and a CSV, with machine, command and date.
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, 'build', 'bin')
GUEST = os.path.join(ROOT, 'build', 'guest', 'testguest.elf')
READY = b'FERRY-GUEST ready'
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers.qmp import qemu_cpu_model  # noqa: E402


def wait_line(path, needle, timeout):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            with open(path, 'rb') as f:
                if needle in f.read():
                    return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f'{needle!r} not seen in {path} within {timeout}s')


def overhead_kib(pid, ram_pattern):
    """Rss of the whole process minus Rss of the guest-RAM mapping."""
    total = ram = 0
    cur_is_ram = False
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
                cur_is_ram = re.search(ram_pattern, line) is not None
            elif line.startswith('Rss:'):
                kb = int(line.split()[1])
                total += kb
                if cur_is_ram:
                    ram += kb
    return total - ram, ram


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_ferry_vm(tmp, args):
    serial = tempfile.mktemp(dir=tmp, suffix='.fv.serial')  # fresh each run: never see an old ready line
    t0 = time.monotonic()
    p = subprocess.Popen([os.path.join(BIN, 'ferry-vm'), '--name', 'boot', '--kernel', GUEST,
                          '--memory', f'{args.memory}M', '--vcpus', str(args.vcpus),
                          '--cmdline', f'ws=16M rate=0 cpus={args.vcpus}', '--serial', serial],
                         stderr=subprocess.DEVNULL)
    try:
        t1 = wait_line(serial, READY, 60)
        time.sleep(1.0)
        ovh, ram = overhead_kib(p.pid, r'memfd:ferry-guest-ram')
        return t1 - t0, ovh, ram
    finally:
        p.kill()
        p.wait()


def run_ferryd(tmp, args, state):
    ferry = os.path.join(BIN, 'ferry')
    port = free_port()
    env = dict(os.environ)
    # ferryd makes the state directory's cluster key; the CLI proves it over TCP.
    env['FERRY_KEY_FILE'] = os.path.join(state, 'cluster.key')
    d = subprocess.Popen([os.path.join(BIN, 'ferryd'), '--state-dir', state, '--listen', f'127.0.0.1:{port}'],
                         stderr=subprocess.DEVNULL)
    try:
        c = ['-c', f'127.0.0.1:{port}']
        for _ in range(100):
            if subprocess.run([ferry] + c + ['host', 'info'], capture_output=True, env=env).returncode == 0:
                break
            time.sleep(0.05)
        subprocess.run([ferry] + c + ['vm', 'new', '--name', 'boot', '--memory', f'{args.memory}M',
                        '--vcpus', str(args.vcpus), '--kernel', GUEST,
                        '--cmdline', f'ws=16M rate=0 cpus={args.vcpus}'], check=True, capture_output=True, env=env)
        serial = os.path.join(state, 'logs', 'boot.serial')
        t0 = time.monotonic()
        subprocess.run([ferry] + c + ['vm', 'start', 'boot'], check=True, capture_output=True, env=env)
        t1 = wait_line(serial, READY, 60)
        subprocess.run([ferry] + c + ['vm', 'stop', 'boot'], capture_output=True, env=env)
        return t1 - t0
    finally:
        d.terminate()
        d.wait()


def run_qemu(tmp, args):
    serial = tempfile.mktemp(dir=tmp, suffix='.q.serial')
    t0 = time.monotonic()
    p = subprocess.Popen(['qemu-system-x86_64', '-accel', 'kvm', '-cpu', qemu_cpu_model(), '-m', str(args.memory),
                          '-smp', str(args.vcpus), '-kernel', GUEST,
                          '-append', f'ws=16M rate=0 cpus={args.vcpus}', '-display', 'none', '-nodefaults',
                          '-serial', f'file:{serial}', '-no-reboot'],
                         stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        t1 = wait_line(serial, READY, 60)
        time.sleep(1.0)
        # QEMU's guest RAM is the anonymous mapping of exactly the guest's size
        size_kb = args.memory * 1024
        ovh = ram = 0
        total = 0
        rams = []
        with open(f'/proc/{p.pid}/smaps') as f:
            cur = None
            for line in f:
                m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', line)
                if m:
                    cur = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
                elif line.startswith('Rss:'):
                    kb = int(line.split()[1])
                    total += kb
                    if cur is not None and size_kb <= cur <= size_kb + 4096:
                        rams.append(kb)
        ram = max(rams) if rams else 0
        return t1 - t0, total - ram, ram
    finally:
        p.kill()
        p.wait()


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--memory', type=int, default=256, help='guest MiB (default 256)')
    ap.add_argument('--vcpus', type=int, default=1)
    args = ap.parse_args()
    for f in (os.path.join(BIN, 'ferry-vm'), GUEST):
        if not os.path.exists(f):
            sys.exit(f'boot.py: {f} missing: run make first')
    have_qemu = shutil.which('qemu-system-x86_64') is not None
    res = {'ferry vm start (ferryd)': [], 'ferry-vm direct': [], 'qemu -kernel': []}
    ovh = {'ferry-vm direct': [], 'qemu -kernel': []}
    tmp = tempfile.mkdtemp(prefix='ferry-bootbench.')
    try:
        for i in range(args.runs):
            state = tempfile.mkdtemp(dir=tmp)
            res['ferry vm start (ferryd)'].append(run_ferryd(tmp, args, state))
            t, o, _ = run_ferry_vm(tmp, args)
            res['ferry-vm direct'].append(t)
            ovh['ferry-vm direct'].append(o)
            if have_qemu:
                t, o, _ = run_qemu(tmp, args)
                res['qemu -kernel'].append(t)
                ovh['qemu -kernel'].append(o)
            print(f'run {i + 1}/{args.runs} done', file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    machine = f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} cores"
    with open('/proc/cpuinfo') as f:
        model = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '?')
    date = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    cmd = ' '.join(['bench/boot.py'] + sys.argv[1:])
    lines = [f'# Boot: start to `FERRY-GUEST ready`, test guest, {args.memory} MiB, {args.vcpus} vCPU',
             '', f'- date: {date}; command: `{cmd}`; runs: {args.runs} (median, min–max)',
             f'- machine: {machine}, {model}', '',
             '| system | start → ready ms | VMM memory beyond guest RAM touched (MiB) |', '|---|---|---|']
    for k, xs in res.items():
        if not xs:
            lines.append(f'| {k} | not run (QEMU missing) | |')
            continue
        m, lo, hi = stats([x * 1000 for x in xs])
        o = ''
        if k in ovh and ovh[k]:
            om, olo, ohi = stats([x / 1024 for x in ovh[k]])
            o = f'{om:.1f} ({olo:.1f}–{ohi:.1f})'
        lines.append(f'| {k} | {m:.0f} ({lo:.0f}–{hi:.0f}) | {o} |')
    text = '\n'.join(lines) + '\n'
    print(text)
    out = os.path.join(ROOT, 'bench', 'results')
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'boot-latest.md'), 'w') as f:
        f.write(text)
    stamp = time.strftime('%Y%m%d-%H%M', time.gmtime())
    with open(os.path.join(out, f'boot-{stamp}.csv'), 'w') as f:
        f.write('system,run,ready_ms,overhead_mib\n')
        for k, xs in res.items():
            for i, x in enumerate(xs):
                o = ovh.get(k, [])
                f.write(f'{k},{i},{x * 1000:.1f},{o[i] / 1024 if i < len(o) else ""}\n')


if __name__ == '__main__':
    main()
