"""Summaries, the stdout table, CSV, Markdown and gnuplot plots for
bench/migrate.py."""
import csv
import os
import shutil
import statistics
import subprocess

# (key, column title, scale, decimals): numeric figures summarized as
# median (min-max) over the runs of a row
FIGURES = [
    ("total_ms", "total ms", 1, 0),
    ("downtime_ms", "downtime ms", 1, 0),
    ("guest_down_ms", "guest TSC gap ms", 1, 0),
    ("host_down_ms", "hb arrival gap ms", 1, 0),
    ("bytes_reported", "sent MiB", 1 / 2**20, 1),
    ("bytes_wire", "lo MiB", 1 / 2**20, 1),
    ("passes", "passes", 1, 0),
    ("pass1_mibps", "pass-1 MiB/s", 1, 0),
    ("move_mibps", "move MiB/s", 1, 0),
    ("src_cpu_s", "src CPU s", 1, 2),
    ("dst_cpu_s", "dst CPU s", 1, 2),
    ("dst_start_ms", "dst start ms", 1, 0),
    # what an administrator waits for: starting the destination (QEMU's
    # -mem-prealloc reserves all RAM there first) and then the move
    ("e2e_ms", "dst start + total ms", 1, 0),
]
RUN_FIELDS = ["workload", "variant", "run", "converged", "total_ms", "wall_ms", "setup_ms",
              "downtime_ms", "guest_down_ms", "host_down_ms", "bytes_reported", "bytes_wire",
              "passes", "pass1_mibps", "move_mibps", "src_cpu_s", "dst_cpu_s", "dst_start_ms", "e2e_ms",
              "integrity", "notes"]


def end_to_end(row):
    """The destination's start plus the move's total (ms), for a converged
    run that has both; else None."""
    if not row.get("converged") or row.get("total_ms") is None or row.get("dst_start_ms") is None:
        return None
    return row["dst_start_ms"] + row["total_ms"]


def _fmt(v, scale, dec):
    v = v * scale
    return ("%.*f" % (dec, v)) if dec else str(int(round(v)))


def one_line(row):
    if row.get("converged"):
        return "total %s ms, down %s ms, %s" % (row.get("total_ms"), row.get("downtime_ms"),
                                               row.get("integrity", ""))
    return "not converged: %s %s" % (row.get("integrity", ""), row.get("notes", ""))


def summarize(results, order):
    """One summary per (workload, variant) in order."""
    out = []
    for wl, v in order:
        runs = [r for r in results if r["workload"] == wl and r["variant"] == v]
        if not runs:
            continue
        for r in runs:
            r["e2e_ms"] = end_to_end(r)
        s = {"workload": wl, "variant": v, "runs": len(runs)}
        done = [r for r in runs if r.get("converged")]
        ran = [r for r in runs if r.get("converged") is not None]
        s["converged"] = "%d/%d" % (len(done), len(ran)) if ran else "-"
        for key, _, scale, dec in FIGURES:
            pool = done if key not in ("bytes_reported", "bytes_wire", "passes", "pass1_mibps",
                                       "move_mibps",
                                       "src_cpu_s", "dst_cpu_s", "dst_start_ms") else ran
            vals = [r[key] for r in pool if r.get(key) is not None]
            if not vals:
                s[key] = None
                continue
            med = statistics.median(vals)
            s[key + "_med"] = med * scale
            if len(vals) == 1:
                s[key] = _fmt(med, scale, dec)
            else:
                s[key] = "%s (%s–%s)" % (_fmt(med, scale, dec), _fmt(min(vals), scale, dec),
                                         _fmt(max(vals), scale, dec))
        checks = [r.get("integrity", "") for r in runs]
        if all(c.startswith("ok") for c in checks):
            s["integrity"] = "hb ok" + (", pages verified" if all("verify:" in c for c in checks)
                                        else "")
        elif len(set(checks)) == 1:
            s["integrity"] = checks[0]
        else:
            s["integrity"] = " | ".join(checks)
        notes = sorted({r.get("notes", "") for r in runs if r.get("notes")})
        s["notes"] = " | ".join(notes)
        out.append(s)
    return out


def _columns():
    return ([("workload", "workload"), ("variant", "variant"), ("converged", "converged")] +
            [(k, t) for k, t, _, _ in FIGURES] + [("integrity", "integrity")])


def text_table(summary, minfo):
    cols = _columns()
    rows = [[t for _, t in cols]]
    for s in summary:
        rows.append([str(s.get(k)) if s.get(k) is not None else "-" for k, _ in cols])
    width = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    figs = machine_line(minfo)
    return "\n".join(lines) + ("\n\n" + figs if figs else "")


def machine_line(minfo):
    parts = []
    if "loopback_gib_s" in minfo:
        parts.append("loopback TCP one stream %.2f GiB/s" % minfo["loopback_gib_s"])
    if "loopback_mem_gib_s" in minfo:
        parts.append("the same moving 768 MiB of memory %.2f GiB/s" % minfo["loopback_mem_gib_s"])
    if "memcpy_gib_s" in minfo:
        parts.append("memcpy warm %.2f GiB/s" % minfo["memcpy_gib_s"])
    if "memcpy_fresh_gib_s" in minfo:
        parts.append("memcpy into fresh memory %.2f GiB/s" % minfo["memcpy_fresh_gib_s"])
    if "first_touch_us_per_page" in minfo:
        parts.append("first touch (host process) %.1f µs/page" % minfo["first_touch_us_per_page"])
    return ("machine, same run: " + "; ".join(parts)) if parts else ""


def loopback_ratios(summary, minfo):
    """Each row's best throughput figure as a share of the loopback TCP
    ceiling measured in the same run (fill768 rows only: there the guest
    is idle and the transport is all that runs)."""
    lo, lo_mem = minfo.get("loopback_gib_s"), minfo.get("loopback_mem_gib_s")
    out = []
    if not lo:
        return out
    for s in summary:
        if not s["workload"].startswith("fill"):
            continue
        for key, what in (("pass1_mibps", "pass 1"), ("move_mibps", "move")):
            v = s.get(key + "_med")
            if v:
                out.append("%s %s %s %.0f MiB/s = %.2f×%s" % (
                    s["workload"], s["variant"], what, v, v / 1024.0 / lo,
                    " (%.2f× the memory-moving stream)" % (v / 1024.0 / lo_mem) if lo_mem else ""))
    return out


def best_ratios(summary, key="total_ms"):
    """Per workload, each system's best row (every run converged, lowest
    median of key) and ferry's figure as a share of QEMU's. With total_ms
    (the move alone, QEMU's own total-time) it is the ratio issue 5 sets its
    targets on; with e2e_ms the destination's start counts too. Says which
    QEMU variants ran, since a row's "QEMU best" is only the best of those."""
    med = key + "_med"
    out = []
    for wl in dict.fromkeys(s["workload"] for s in summary):
        best, ran = {}, {}
        for s in summary:
            if s["workload"] != wl:
                continue
            system = s["variant"].split("-")[0]
            ran.setdefault(system, []).append(s["variant"])
            conv = s.get("converged", "-")
            if s.get(med) is None or "/" not in conv or \
                    conv.split("/")[0] != conv.split("/")[1]:
                continue
            if system not in best or s[med] < best[system][med]:
                best[system] = s
        if "qemu" not in best or "ferry" not in best:
            continue
        q, f = best["qemu"], best["ferry"]
        out.append("%s: QEMU %s %.0f ms (down %s) vs ferry %s %.0f ms (down %s): %.2f× "
                   "(best of QEMU's %s)" % (
                       wl, q["variant"], q[med], _med(q, "downtime_ms"), f["variant"],
                       f[med], _med(f, "downtime_ms"),
                       f[med] / q[med], ", ".join(ran["qemu"])))
    return out


def _med(s, key):
    v = s.get(key + "_med")
    return "%.0f ms" % v if v is not None else "unknown"


def read_runs(path):
    """The runs and machine figures back from a per-run CSV that write_all
    wrote: numbers as numbers, converged as True / False / None."""
    minfo, lines = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                k, _, v = line[2:].rstrip("\n").partition(": ")
                try:
                    minfo[k] = float(v)
                except ValueError:
                    minfo[k] = v
            else:
                lines.append(line)
    runs = []
    for r in csv.DictReader(lines):
        for k, v in list(r.items()):
            if k == "converged":
                r[k] = {"True": True, "False": False}.get(v)
            elif k not in ("workload", "variant", "integrity", "notes"):
                try:
                    r[k] = float(v) if v != "" else None
                except ValueError:
                    pass
        runs.append(r)
    return runs, minfo


def _header_lines(minfo):
    keys = ["date", "command", "uname", "cpu", "cores", "memory", "kvm", "network"]
    keys += sorted(k for k in minfo if k.startswith("version_"))
    keys += ["loopback_gib_s", "loopback_mem_gib_s", "memcpy_gib_s", "memcpy_fresh_gib_s",
             "first_touch_us_per_page"]
    return [(k, minfo[k]) for k in keys if k in minfo]


def write_all(outdir, started, minfo, results, summary, what, plots=True):
    os.makedirs(outdir, exist_ok=True)
    stem = "migrate-%s-%s" % (started.strftime("%Y%m%d-%H%M"), minfo["tag"])
    paths = []

    p = os.path.join(outdir, stem + ".csv")
    with open(p, "w", newline="") as f:
        for k, v in _header_lines(minfo):
            f.write("# %s: %s\n" % (k, v))
        w = csv.DictWriter(f, fieldnames=RUN_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow(r)
    paths.append(p)

    p = os.path.join(outdir, stem + "-summary.csv")
    with open(p, "w", newline="") as f:
        for k, v in _header_lines(minfo):
            f.write("# %s: %s\n" % (k, v))
        cols = _columns() + [("notes", "notes")]
        w = csv.writer(f)
        w.writerow([k for k, _ in cols] + ["total_ms_median", "downtime_ms_median"])
        for s in summary:
            w.writerow([s.get(k) if s.get(k) is not None else "" for k, _ in cols] +
                       [s.get("total_ms_med", ""), s.get("downtime_ms_med", "")])
    paths.append(p)

    md = os.path.join(outdir, "latest.md")
    with open(md, "w") as f:
        f.write("# Live migration benchmark: latest results\n\n")
        f.write("Written by `bench/migrate.py` (see `bench/README.md`). Median (min–max) "
                "over the runs of each row.\n\n")
        for k, v in _header_lines(minfo):
            f.write("- %s: `%s`\n" % (k, v))
        f.write("- raw runs: `%s`\n\n" % os.path.basename(paths[0]))
        f.write("Workloads: " + "; ".join("`%s` %s" % (k, v) for k, v in what.items()
                                          if any(s["workload"] == k for s in summary)) + ".\n\n")
        cols = _columns()
        f.write("| " + " | ".join(t for _, t in cols) + " |\n")
        f.write("|" + "---|" * len(cols) + "\n")
        for s in summary:
            f.write("| " + " | ".join(str(s.get(k)) if s.get(k) is not None else "–"
                                      for k, _ in cols) + " |\n")
        notes = [(s["workload"], s["variant"], s["notes"]) for s in summary if s.get("notes")]
        if notes:
            f.write("\nNotes:\n\n")
            for wl, v, n in notes:
                f.write("- %s / %s: %s\n" % (wl, v, n))
        mline = machine_line(minfo)
        if mline:
            f.write("\n%s%s.\n" % (mline[0].upper(), mline[1:]))
        ratios = loopback_ratios(summary, minfo)
        if ratios:
            f.write("\nAgainst the loopback ceiling: %s.\n" % "; ".join(ratios))
        best = best_ratios(summary)
        if best:
            f.write("\nBest of each system (median total; ferry / QEMU):\n\n")
            for line in best:
                f.write("- %s\n" % line)
        best = best_ratios(summary, "e2e_ms")
        if best:
            f.write("\nBest of each system end to end (median of the destination's start "
                    "plus the total; ferry / QEMU):\n\n")
            for line in best:
                f.write("- %s\n" % line)
    paths.append(md)

    if plots and shutil.which("gnuplot"):
        for key, title, fname in (("total_ms", "total migration time (ms, log scale)", "total"),
                                  ("downtime_ms", "downtime reported by the system (ms, log scale)",
                                   "downtime")):
            png = os.path.join(outdir, "latest-%s.png" % fname)
            if plot(summary, key, title, png, os.path.join(outdir, ".plot-%s.dat" % fname)):
                paths.append(png)
    return paths


def plot(summary, key, title, png, datfile):
    """One bar per row (workload / variant), grouped by workload, coloured
    by system: QEMU variants in shades of red, ferry's in blue."""
    rows = [s for s in summary if s.get(key + "_med") is not None]
    if not rows:
        return False
    qemu_colors = ["#b2182b", "#d6604d", "#f4a582", "#e08214", "#fdb863", "#8c510a",
                   "#bf812d", "#dfc27d", "#7f3b08"]
    ferry_colors = ["#2166ac", "#4393c3", "#92c5de", "#35978f", "#80cdc1"]
    color = {}
    for s in rows:
        v = s["variant"]
        if v not in color:
            pool = ferry_colors if v.startswith("ferry") else qemu_colors
            used = sum(1 for k in color if k.startswith("ferry") == v.startswith("ferry"))
            color[v] = pool[used % len(pool)]
    with open(datfile, "w") as f:
        x, prev = 0, None
        for s in rows:
            if prev is not None and s["workload"] != prev:
                x += 1  # a gap between workloads
            prev = s["workload"]
            f.write('%d "%s / %s" %.3f 0x%s\n' % (x, s["workload"], s["variant"],
                                                 max(s[key + "_med"], 0.1), color[s["variant"]][1:]))
            x += 1
    script = """
set terminal pngcairo size 1400,700 noenhanced font ",10"
set output '{png}'
set title '{title}'
set style fill solid 0.9 border -1
set boxwidth 0.8
set logscale y
set grid ytics
set key off
set bmargin 14
set xtics rotate by -60 nomirror
set xrange [-1:*]
plot '{dat}' using 1:3:4:xtic(2) with boxes lc rgb variable, \\
     '' using 1:3:(sprintf("%.0f", $3)) with labels offset 0,0.7 font ",8"
""".format(png=png, title=title, dat=datfile)
    ok = False
    for term in ("pngcairo", "png"):  # pngcairo may be missing from a gnuplot build
        try:
            r = subprocess.run(["gnuplot"], input=script.replace("pngcairo", term), text=True,
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            break
        if r.returncode == 0:
            ok = True
            break
    try:
        os.unlink(datfile)
    except OSError:
        pass
    return ok and os.path.exists(png)
