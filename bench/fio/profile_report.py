#!/usr/bin/env python3
"""Turns what bench/fio/profile collected into Markdown (stdout): the Findings section (a summary of
every case, with the comparisons the numbers support), then one section per case.

Input directory: `cases`, one line per case: "TARGET JOB NAME[,NAME...]" (NAME = a profiled process:
slabd, nbdkit, nbdfuse), and per case, with P = TARGET.JOB:
  P.fio.json               fio over the perf window (--output-format=json)
  P.NAME.stat              perf stat -x, (syscall tracepoints + task-clock) of process NAME
  P.symbols.txt            perf report --stdio, the hottest symbols of all the case's processes
  P.strace-fio.json        fio while strace ran (optional)
  P.NAME.strace            strace -c -f of process NAME during that fio run (optional)
Window lengths come from PROFILE_WINDOW (fio's measured part = perf's window, seconds) and
PROFILE_STRACE (seconds, 0 = none).
"""
import json
import os
import sys


def load_fio(path):
    with open(path) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]
    return {
        "iops": job["read"]["iops"] + job["write"]["iops"],
        "ios": job["read"]["total_ios"] + job["write"]["total_ios"],
    }


def load_stat(path):
    """{event: count} from perf stat -x, output; task-clock in ms."""
    counters = {}
    if not os.path.exists(path):
        return counters
    for line in open(path):
        parts = line.strip().split(",")
        if len(parts) < 3 or not parts[0].replace(".", "").isdigit():
            continue
        counters[parts[2].replace("syscalls:sys_enter_", "")] = float(parts[0])
    return counters


def load_strace(path):
    """{syscall: (calls, seconds, errors)} from strace -c output."""
    calls = {}
    if not os.path.exists(path):
        return calls
    for line in open(path):
        parts = line.split()
        if len(parts) < 5 or parts[-1] == "total" or not parts[0][0].isdigit():
            continue
        try:
            seconds, count = float(parts[1]), int(parts[3])
            errors = int(parts[4]) if len(parts) >= 6 else 0
        except ValueError:
            continue
        calls[parts[-1]] = (count, seconds, errors)
    return calls


def load_cases(directory):
    cases = []
    for line in open(os.path.join(directory, "cases")):
        if not line.strip():
            continue
        target, job, names = line.split()
        prefix = os.path.join(directory, f"{target}.{job}")
        fio = load_fio(prefix + ".fio.json")
        ios = fio["ios"]  # fio's measured part is perf's window
        procs = []
        for name in names.split(","):
            stat = load_stat(f"{prefix}.{name}.stat")
            cpu = stat.pop("task-clock", None)
            procs.append({
                "name": name,
                "cpu_per_io": cpu * 1000 / ios if cpu is not None and ios else None,
                "syscalls_per_io": {k: v / ios for k, v in stat.items() if ios and v > 0},
                "strace": load_strace(f"{prefix}.{name}.strace"),
            })
        strace_fio = load_fio(prefix + ".strace-fio.json") if os.path.exists(prefix + ".strace-fio.json") else None
        symbols = open(prefix + ".symbols.txt").read().rstrip() if os.path.exists(prefix + ".symbols.txt") else ""
        cases.append({"target": target, "job": job, "iops": fio["iops"], "procs": procs,
                      "strace_fio": strace_fio, "symbols": symbols})
    return cases


def f1(value):
    return "–" if value is None else f"{value:,.1f}"


def f2(value):
    return "–" if value is None else f"{value:,.2f}"


def total_cpu(case):
    values = [p["cpu_per_io"] for p in case["procs"] if p["cpu_per_io"] is not None]
    return sum(values) if values else None


def strace_top(proc, ios, n=3):
    items = sorted(proc["strace"].items(), key=lambda kv: -kv[1][0])[:n]
    return ", ".join(f"{name} {calls / ios:.2f}" for name, (calls, _, _) in items) if ios and items else "–"


def findings(cases, window, strace_secs):
    out = []
    w = out.append
    w("## Findings")
    w("")
    w(f"Generated from the numbers below. CPU µs per I/O from `perf stat` task-clock over {window} s (all threads "
      "of each process); syscalls per I/O = the traced syscalls (perf tracepoints) summed"
      + (f"; top syscalls = the three most frequent in `strace -c -f` over a {strace_secs} s fio run, calls per I/O "
         "(strace slows the process: counts per I/O hold, the IOPS under strace do not)" if strace_secs else "")
      + ".")
    w("")
    w("| job | target | IOPS | process | CPU µs/IO | syscalls/IO | top syscalls/IO (strace) |")
    w("|---|---|---:|---|---:|---:|---|")
    for c in cases:
        ios = c["strace_fio"]["ios"] if c["strace_fio"] else 0
        for i, p in enumerate(c["procs"]):
            job, target, iops = (c["job"], c["target"], f"{c['iops']:,.0f}") if i == 0 else ("", "", "")
            syscalls = sum(p["syscalls_per_io"].values()) if p["syscalls_per_io"] else None
            w(f"| {job} | {target} | {iops} | {p['name']} | {f1(p['cpu_per_io'])} | {f2(syscalls)} | {strace_top(p, ios)} |")
        if len(c["procs"]) > 1:
            w(f"| | | | **all** | **{f1(total_cpu(c))}** | | |")
    w("")
    # Comparisons between the two targets of each job: slab(-attached) against nbdkit(-attached).
    by_job = {}
    for c in cases:
        by_job.setdefault(c["job"], {})[c["target"]] = c
    lines = []
    for job, targets in by_job.items():
        slab = targets.get("slab-attached") or targets.get("slabd")
        peer = targets.get("nbdkit-attached") or targets.get("nbdkit")
        if not slab or not peer:
            continue
        s_cpu, p_cpu = total_cpu(slab), total_cpu(peer)
        text = (f"- {job}: {slab['target']} {slab['iops']:,.0f} IOPS vs {peer['target']} {peer['iops']:,.0f} "
                f"({slab['iops'] / peer['iops']:.2f}×)" if peer["iops"] else f"- {job}:")
        if s_cpu is not None and p_cpu:
            text += f"; CPU µs/IO {s_cpu:,.1f} vs {p_cpu:,.1f} ({s_cpu / p_cpu:.2f}×)"
        fuse = [(c["target"], p["cpu_per_io"]) for c in (slab, peer) for p in c["procs"]
                if p["name"] == "nbdfuse" and p["cpu_per_io"] is not None]
        if len(fuse) == 2:
            text += f"; of it nbdfuse {fuse[0][1]:,.1f} vs {fuse[1][1]:,.1f}"
            server = next((p for p in slab["procs"] if p["name"] == "slabd"), None)
            if server and server["cpu_per_io"] is not None and s_cpu:
                text += f" (slabd {server['cpu_per_io']:,.1f} = {100 * server['cpu_per_io'] / s_cpu:.0f} % of the attached path's CPU)"
        lines.append(text + ".")
    if lines:
        w("Side by side:")
        w("")
        out.extend(lines)
        w("")
    return out


def details(cases, window, strace_secs):
    out = []
    w = out.append
    for c in cases:
        names = [p["name"] for p in c["procs"]]
        w(f"### {c['target']}, {c['job']}: {c['iops']:,.0f} IOPS")
        w("")
        w(f"Per I/O over {window} s (perf stat on each process, all threads):")
        w("")
        w("| counter | " + " | ".join(names) + " |")
        w("|---|" + "---:|" * len(names))
        w("| CPU µs (task-clock) | " + " | ".join(f1(p["cpu_per_io"]) for p in c["procs"]) + " |")
        events = sorted({e for p in c["procs"] for e in p["syscalls_per_io"]},
                        key=lambda e: -sum(p["syscalls_per_io"].get(e, 0) for p in c["procs"]))
        for e in events:
            w(f"| {e} | " + " | ".join(f2(p["syscalls_per_io"].get(e)) for p in c["procs"]) + " |")
        w("")
        if c["strace_fio"]:
            ios = c["strace_fio"]["ios"]
            w(f"`strace -c -f` over a {strace_secs} s fio run ({ios:,} I/Os, {c['strace_fio']['iops']:,.0f} IOPS while "
              "traced): calls per I/O, and the share of the process's syscall time (top 12 by calls):")
            w("")
            w("| syscall | " + " | ".join(f"{n} calls/IO | {n} time %" for n in names) + " |")
            w("|---|" + "---:|---:|" * len(names))
            syscalls = sorted({s for p in c["procs"] for s in p["strace"]},
                              key=lambda s: -sum(p["strace"].get(s, (0, 0, 0))[0] for p in c["procs"]))[:12]
            for s in syscalls:
                cells = []
                for p in c["procs"]:
                    total = sum(v[1] for v in p["strace"].values()) or 1.0
                    calls, secs, _ = p["strace"].get(s, (0, 0.0, 0))
                    cells.append(f"{calls / ios:.2f} | {100 * secs / total:.0f} %" if ios and calls else "– | –")
                w(f"| {s} | " + " | ".join(cells) + " |")
            w("")
        if c["symbols"]:
            w("Hottest symbols (perf record -g, self time, top 25; comm = thread name):")
            w("")
            w("```")
            w(c["symbols"])
            w("```")
            w("")
    return out


def main():
    directory = sys.argv[1]
    window = float(os.environ.get("PROFILE_WINDOW", "1"))
    strace_secs = int(os.environ.get("PROFILE_STRACE", "0"))
    cases = load_cases(directory)
    window_text = f"{window:g}"
    print("\n".join(findings(cases, window_text, strace_secs) + ["## Details", ""] + details(cases, window_text, strace_secs)))


if __name__ == "__main__":
    main()
