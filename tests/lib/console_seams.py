#!/usr/bin/env python3
"""The guest's serial console across live moves must read as one unbroken
stream. Usage: console_seams.py LOG1 LOG2 [LOG3 ...], the serial logs of
the hosts the guest ran on, in the order it ran on them.

Laid end to end, the logs are what the guest wrote. A line the guest was
writing at a switch-over starts in one log and ends in the next; joined,
it must be one whole line. Checked: every heartbeat line is whole and the
counter n goes up by exactly one through every seam (a byte lost or
repeated at a switch-over, a line written twice, or output the guest
wrote on the source after its state was taken, all break it). At least
one heartbeat must come after the last seam. Prints one line per seam.
Exit 0 if continuous, 1 if not."""
import re
import sys

HB = re.compile(rb"FERRY-GUEST hb n=(\d+) ")
HB_WHOLE = re.compile(rb"^FERRY-GUEST hb n=\d+ mib=\d+ gen=\d+ tsc=\d+$")


def main(paths):
    logs = [open(p, "rb").read() for p in paths]
    text, seams = b"", []
    for data in logs:
        seams.append(len(text))
        text += data
    seams = seams[1:]
    bad = []
    prev = None
    pos = 0
    line_of_seam = {}
    for line in text.split(b"\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        for s in seams:
            if start <= s <= end and s not in line_of_seam:
                line_of_seam[s] = (line, s - start)
        m = HB.match(line)
        if not m:
            continue
        if not HB_WHOLE.match(line):
            bad.append("heartbeat line broken: %r" % line[:80])
            continue
        n = int(m.group(1))
        if prev is not None and n != prev + 1:
            bad.append("heartbeat n=%d follows n=%d" % (n, prev))
        prev = n
    for i, s in enumerate(seams):
        line, at = line_of_seam.get(s, (b"", 0))
        where = "between lines, the next" if at == 0 else "inside a line, at byte %d, joined" % at
        print("seam %d (%s -> %s): %s: %r" % (i + 1, paths[i], paths[i + 1], where, line[:70]))
    if seams and not HB.search(text[seams[-1]:]):
        bad.append("no heartbeat after the last seam: it is not crossed")
    for b in bad:
        print("BROKEN:", b)
    print("console continuous through %d seam(s)%s" % (len(seams), "" if not bad else ": NO"))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
