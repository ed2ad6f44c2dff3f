#!/usr/bin/env python3
"""Turns the fio JSON outputs of bench/fio/run into the Markdown report (stdout).

Input directory: TARGET.JOB.njNUMJOBS.rROUND.json (fio --output-format=json, --group_reporting) and
TARGET.JOB.njNUMJOBS.rROUND.json.cpu ("server_ticks_before server_ticks_after busy0 total0 busy1
total1 clk_tck [nbdfuse_ticks_before nbdfuse_ticks_after]"; the server ticks include nbdfuse's),
TARGET.loop-dio (slabd's drive loop device) and TARGET.device ("DEVICE dio=N method=...").
Run facts come from REPORT_* environment variables set by bench/fio/run.
"""
import json
import os
import re
import sys

# id, title, direction, QD1 latency job
JOBS = [
    ("randwrite-4k-qd1", "4K random write, QD1", "write", True),
    ("randread-4k-qd1", "4K random read, QD1", "read", True),
    ("randwrite-4k", "4K random write, QD32", "write", False),
    ("randread-4k", "4K random read, QD32", "read", False),
    ("write-1m", "1M sequential write, QD8", "write", False),
    ("read-1m", "1M sequential read, QD8", "read", False),
]
TITLE = {j: t for j, t, _, _ in JOBS}
ORDER = ["raw", "raw-loop", "nbdkit", "qemu-nbd", "slab", "nbdkit-attached", "slab-attached", "slab-nbdfuse", "slab-kept"]
NO_SERVER = {"raw", "raw-loop"}  # the kernel serves these: no server process to count

# The target checks (IOPS ratios unless said otherwise).
GOAL_ATTACHED_VS_LOOP_4K = 0.5   # slab-attached / raw-loop, 4K jobs
GOAL_ATTACHED_VS_LOOP_1M = 0.9   # slab-attached / raw-loop, 1M jobs
GOAL_ATTACHED_VS_NBDKIT = 2.0    # slab-attached / nbdkit-attached
GOAL_SLAB_VS_BEST_PEER = 1.3     # slab / the better of nbdkit and qemu-nbd
GOAL_SLAB_CPU_VS_NBDKIT = 0.7    # slab CPU µs per I/O / nbdkit's (at most)

NAME = re.compile(r"^(?P<target>[a-z-]+)\.(?P<job>[a-z0-9-]+)\.nj(?P<nj>[0-9]+)\.r(?P<round>[0-9]+)\.json$")


def load_json(path):
    with open(path) as f:
        text = f.read()
    # fio's nbd engine may print notes before the JSON document.
    return json.loads(text[text.index("{"):])


def load_one(path, target, direction):
    data = load_json(path)["jobs"][0]
    side = data[direction]
    pct = side["clat_ns"].get("percentile", {})
    result = {
        "iops": side["iops"],
        "mbs": side["bw_bytes"] / 1e6,
        "p50": pct.get("50.000000", 0) / 1000.0,
        "p99": pct.get("99.000000", 0) / 1000.0,
        "p999": pct.get("99.900000", 0) / 1000.0,
        "errors": data.get("error", 0),
        "server_cpu": None,
        "helper_cpu": None,
        "others_cpu": None,
        "cpu_per_io": None,
    }
    cpu_path = path + ".cpu"
    if not os.path.exists(cpu_path):
        return result
    fields = [float(x) for x in open(cpu_path).read().split()]
    s0, s1, b0, t0, b1, t1, hz = fields[:7]
    h0, h1 = fields[7:9] if len(fields) >= 9 else (0.0, 0.0)
    cpus = os.cpu_count()
    wall = (t1 - t0) / cpus  # ticks of one CPU over the job
    if wall <= 0:
        return result
    has_server = target not in NO_SERVER
    server = 100.0 * (s1 - s0) / wall if has_server else 0.0
    machine = 100.0 * (b1 - b0) / wall  # % of one CPU
    fio_cpu = data.get("usr_cpu", 0.0) + data.get("sys_cpu", 0.0)
    if has_server:
        result["server_cpu"] = server
        if h1 > 0:
            result["helper_cpu"] = 100.0 * (h1 - h0) / wall
    result["others_cpu"] = max(0.0, machine - server - fio_cpu)
    ios = side["total_ios"]
    if has_server and ios > 0:
        # total_ios excludes the ramp; CPU includes it: scale by the measured share.
        runtime = float(os.environ.get("REPORT_RUNTIME", "0"))
        ramp = float(os.environ.get("REPORT_RAMP", "0"))
        share = runtime / (runtime + ramp) if runtime + ramp > 0 else 1.0
        result["cpu_per_io"] = 1e6 * (s1 - s0) / hz * share / ios
    return result


def load_all(directory):
    """{(target, job, numjobs): best round (highest IOPS), with the IOPS of every round}."""
    rounds = {}
    for name in sorted(os.listdir(directory)):
        m = NAME.match(name)
        if not m or m["job"] not in TITLE:
            continue
        key = (m["target"], m["job"], int(m["nj"]))
        direction = next(d for j, _, d, _ in JOBS if j == m["job"])
        rounds.setdefault(key, []).append(load_one(os.path.join(directory, name), m["target"], direction))
    results = {}
    for key, rs in rounds.items():
        best = max(rs, key=lambda r: r["iops"])
        best["rounds"] = [r["iops"] for r in rs]
        results[key] = best
    return results


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def pct(value):
    return "–" if value is None else f"{value:.0f} %"


class Checks:
    """Target checks: each cell is a ratio marked met or missed; counted per check for the summary."""

    def __init__(self):
        self.counts = {}  # check -> [met, computed]

    def cell(self, check, ratio, goal, at_most=False, note=""):
        if ratio is None:
            return "–"
        ok = ratio <= goal if at_most else ratio >= goal
        count = self.counts.setdefault(check, [0, 0])
        count[0] += int(ok)
        count[1] += 1
        mark = "met" if ok else "**missed**"
        return f"{ratio:.2f}×{note} ({mark}, {'≤' if at_most else '≥'} {goal:.1f}×)"


def iops_ratio(a, b):
    if a is None or b is None or not b["iops"]:
        return None
    return a["iops"] / b["iops"]


def main():
    directory = sys.argv[1]
    env = os.environ.get
    results = load_all(directory)
    present = {t for t, _, _ in results}
    targets = [t for t in ORDER if t in present]
    jobs = [j for j, _, _, _ in JOBS if any(k[1] == j for k in results)]
    runs = sorted({(j, n) for _, j, n in results}, key=lambda jn: ([x for x, _, _, _ in JOBS].index(jn[0]), jn[1]))
    rounds = int(env("REPORT_ROUNDS", "1"))
    spread = rounds > 1

    out = []
    w = out.append
    w("# fio, single node: raw file and loop device vs nbdkit vs qemu-nbd vs Slab, NBD and attached")
    w("")
    w(f"- Date: {env('REPORT_DATE', '?')}")
    w(f"- Machine: {env('REPORT_MACHINE', '?')}")
    w(f"- Software: {env('REPORT_VERSIONS', '?')}")
    w(f"- Command: `{env('REPORT_COMMAND', '?')}`")
    w(f"- Backing storage (every target): {env('REPORT_BACKING', '?')}")
    w(f"- Each job: {env('REPORT_RAMP', '?')} s ramp + {env('REPORT_RUNTIME', '?')} s measured, time-based, "
      f"direct=1, numjobs {env('REPORT_NUMJOBS', '?')} (QD1 jobs: numjobs 1; sequential jobs with numjobs > 1: "
      f"a slice of the file each), over a {env('REPORT_SIZE', '?')} GiB file/volume written sequentially once "
      f"before the jobs (reads hit allocated data); page cache dropped before every job. Jobs interleaved "
      f"(each job and numjobs on every target in turn), {rounds} round(s); the tables show each job's best round.")
    size = env("REPORT_SIZE", "?")
    described = {
        "raw": "the file, `ioengine=libaio`, O_DIRECT",
        "raw-loop": "`losetup --direct-io=on` over the file, libaio O_DIRECT on the device",
        "nbdkit": f"`nbdkit file cache={env('REPORT_NBDKIT_CACHE', '?')}` on a unix socket, fio's `nbd` engine",
        "qemu-nbd": f"`qemu-nbd --format=raw --cache=none --aio={env('REPORT_QEMU_AIO', '?')}` on a unix socket, "
                    "fio's `nbd` engine",
        "slab": f"slabd (Release) with one drive image on the same filesystem (attached by slabd through a "
                f"direct-I/O loop device), one {size} GiB volume, fio's `nbd` engine",
        "nbdkit-attached": "its own nbdkit (same flags) behind nbdfuse + a direct-I/O loop device, made the way "
                           "slabd makes them; libaio O_DIRECT on the device",
        "slab-attached": f"a second slabd like slab, its volume attached with `slabctl host attach` "
                         f"({env('REPORT_ATTACH_METHOD', '?')}); libaio O_DIRECT on the device",
        "slab-nbdfuse": "a slabd like slab-attached started with `--attach-method nbdfuse`: nbdfuse + loop over "
                        "slabd's attach socket (the attach path before slabd had its own FUSE server)",
        "slab-kept": "a third slabd like slab-attached but started with `--keep-attachments`: nbdfuse reaches "
                     "slabd through its reconnecting relay (nbdkit nbd plugin, retry and exitlast filters); "
                     "the relay's CPU counts with nbdfuse's",
    }
    w("- Targets: " + "; ".join(f"{t} = {described[t]}" for t in targets)
      + (". fio's `nbd` engine (libnbd) opens one connection per fio job." if {"nbdkit", "qemu-nbd", "slab"} & present else "."))
    facts = []
    for t in targets:
        path = os.path.join(directory, f"{t}.loop-dio")
        if os.path.exists(path):
            facts.append(f"{t}'s drive loop dio={open(path).read().strip()}")
    for t in targets:
        path = os.path.join(directory, f"{t}.device")
        if os.path.exists(path):
            dev, _, rest = open(path).read().strip().partition(" ")
            facts.append(f"{t}: `{dev}` {rest}")
    if facts:
        w(f"- Devices (`/sys/block/loopN/loop/dio` during the jobs): {'; '.join(facts)}")
    w("")
    w("Latency = completion latency (clat) in µs. Server CPU = the server's CPU time over the job "
      "(utime+stime of all its threads), % of one core; for the attached targets it is the server plus its "
      "nbdfuse (shown on its own too). CPU/IO = server CPU µs per I/O. Others = CPU used during the job by "
      "everything but fio and the server (kernel workers such as loop, FUSE and XFS threads, and any other load "
      f"on the machine), % of one core, of {os.cpu_count()}.")
    w("")

    latency_jobs = [j for j in jobs if next(q for x, _, _, q in JOBS if x == j)]
    if latency_jobs:
        w("## Latency: 4K, QD1, numjobs 1")
        w("")
        w("| job | target | p50 µs | p99 µs | p99.9 µs | IOPS | server CPU | of it nbdfuse | CPU/IO µs | others |"
          + (" IOPS of each round |" if spread else ""))
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if spread else ""))
        for job in latency_jobs:
            for t in targets:
                r = results.get((t, job, 1))
                if r is None:
                    continue
                err = f" (fio error {r['errors']})" if r["errors"] else ""
                each = (" " + " / ".join(f"{x:,.0f}" for x in r["rounds"]) + " |") if spread else ""
                w(f"| {TITLE[job]} | {t}{err} | {fmt(r['p50'], 1)} | {fmt(r['p99'], 1)} | {fmt(r['p999'], 1)} "
                  f"| {fmt(r['iops'])} | {pct(r['server_cpu'])} | {pct(r['helper_cpu'])} | {fmt(r['cpu_per_io'], 1)} "
                  f"| {pct(r['others_cpu'])} |{each}")
        w("")

    throughput = [(j, n) for j, n in runs if j not in latency_jobs]
    if throughput:
        w("## Results")
        w("")
        w("| job | numjobs | target | IOPS | MB/s | p50 µs | p99 µs | server CPU | of it nbdfuse | CPU/IO µs | others |"
          + (" IOPS of each round |" if spread else ""))
        w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if spread else ""))
        for job, nj in throughput:
            for t in targets:
                r = results.get((t, job, nj))
                if r is None:
                    continue
                err = f" (fio error {r['errors']})" if r["errors"] else ""
                each = (" " + " / ".join(f"{x:,.0f}" for x in r["rounds"]) + " |") if spread else ""
                w(f"| {TITLE[job]} | {nj} | {t}{err} | {fmt(r['iops'])} | {fmt(r['mbs'], 1)} | {fmt(r['p50'], 1)} "
                  f"| {fmt(r['p99'], 1)} | {pct(r['server_cpu'])} | {pct(r['helper_cpu'])} | {fmt(r['cpu_per_io'], 1)} "
                  f"| {pct(r['others_cpu'])} |{each}")
        w("")

    # ------------------------------------------------------------ target checks
    checks = Checks()
    w("## Target checks")
    w("")
    w(f"IOPS ratios (MB/s gives the same) per job and numjobs: slab-attached ≥ {GOAL_ATTACHED_VS_LOOP_4K}× raw-loop on "
      f"the 4K jobs and ≥ {GOAL_ATTACHED_VS_LOOP_1M}× on the 1M jobs (raw-loop is the same file behind the same "
      f"kind of block device, so the ratio is the cost of nbdfuse + NBD + slabd; the ratio to the raw file is "
      f"for information), slab-attached ≥ {GOAL_ATTACHED_VS_NBDKIT:.0f}× nbdkit-attached, slab (nbd engine) ≥ "
      f"{GOAL_SLAB_VS_BEST_PEER}× the better of nbdkit and qemu-nbd, and slab's server CPU µs per I/O ≤ "
      f"{GOAL_SLAB_CPU_VS_NBDKIT}× nbdkit's. – = a target of the ratio was not run.")
    w("")
    w("| job | numjobs | slab-attached / raw-loop | slab-attached / raw (info) | slab-attached / nbdkit-attached "
      "| slab / better of nbdkit, qemu-nbd | slab / raw (info) | slab CPU/IO / nbdkit's |")
    w("|---|---:|---|---:|---|---|---:|---|")
    for job, nj in runs:
        get = lambda t: results.get((t, job, nj))  # noqa: E731
        attached, loop, raw = get("slab-attached"), get("raw-loop"), get("raw")
        goal = GOAL_ATTACHED_VS_LOOP_1M if job.endswith("-1m") else GOAL_ATTACHED_VS_LOOP_4K
        c1 = checks.cell(f"slab-attached ≥ {GOAL_ATTACHED_VS_LOOP_4K}× raw-loop (4K) / ≥ {GOAL_ATTACHED_VS_LOOP_1M}× (1M)",
                         iops_ratio(attached, loop), goal)
        info_a = iops_ratio(attached, raw)
        c2 = checks.cell(f"slab-attached ≥ {GOAL_ATTACHED_VS_NBDKIT:.0f}× nbdkit-attached", iops_ratio(attached, get("nbdkit-attached")),
                         GOAL_ATTACHED_VS_NBDKIT)
        peers = [(p, get(p)) for p in ("nbdkit", "qemu-nbd") if get(p) is not None]
        slab = get("slab")
        c3 = "–"
        if slab is not None and peers:
            name, best = max(peers, key=lambda pr: pr[1]["iops"])
            c3 = checks.cell(f"slab ≥ {GOAL_SLAB_VS_BEST_PEER}× the better of nbdkit, qemu-nbd", iops_ratio(slab, best),
                             GOAL_SLAB_VS_BEST_PEER, note=f" vs {name}")
        info_s = iops_ratio(slab, raw)
        nbdkit = get("nbdkit")
        cpu = None
        if slab and nbdkit and slab["cpu_per_io"] is not None and nbdkit["cpu_per_io"]:
            cpu = slab["cpu_per_io"] / nbdkit["cpu_per_io"]
        c4 = checks.cell(f"slab CPU/IO ≤ {GOAL_SLAB_CPU_VS_NBDKIT}× nbdkit's", cpu, GOAL_SLAB_CPU_VS_NBDKIT, at_most=True)
        w(f"| {TITLE[job]} | {nj} | {c1} | {'–' if info_a is None else f'{info_a:.2f}×'} | {c2} | {c3} "
          f"| {'–' if info_s is None else f'{info_s:.2f}×'} | {c4} |")
    w("")
    for other, what in (("slab-nbdfuse", "what slabd's own FUSE server gains over nbdfuse (slab-attached / slab-nbdfuse)"),
                        ("slab-kept", "what `--keep-attachments` costs (slab-kept / slab-attached)")):
        if other not in present or "slab-attached" not in present:
            continue
        first, second = ("slab-attached", other) if other == "slab-nbdfuse" else (other, "slab-attached")
        w(f"Information, no target: {what}, IOPS, and server + helpers CPU µs per I/O.")
        w("")
        w(f"| job | numjobs | IOPS ratio | CPU/IO, {first} | CPU/IO, {second} |")
        w("|---|---:|---:|---:|---:|")
        for job, nj in runs:
            a, b = results.get((first, job, nj)), results.get((second, job, nj))
            ratio = iops_ratio(a, b)
            cpu = lambda r: "–" if not r or r.get("cpu_per_io") is None else f"{r['cpu_per_io']:.0f} µs"  # noqa: E731
            w(f"| {TITLE[job]} | {nj} | {'–' if ratio is None else f'{ratio:.2f}×'} | {cpu(a)} | {cpu(b)} |")
        w("")
    met = sum(c[0] for c in checks.counts.values())
    total = sum(c[1] for c in checks.counts.values())
    if total:
        w(f"**{met} of {total} checks met**:")
        w("")
        for check, (m, n) in checks.counts.items():
            w(f"- {check}: {m} of {n} met" + ("" if m == n else f" ({n - m} **missed**)"))
    else:
        w("No check could be computed with these targets.")
    if env("REPORT_ATTACH_METHOD", "") == "kernel nbd":
        w("")
        w("Note: slabd attached through the kernel nbd driver here, while nbdkit-attached goes through "
          "nbdfuse + loop: slab-attached / nbdkit-attached compares two different paths.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
