#!/usr/bin/env python3
"""Turns the fio JSON outputs of bench/fio/run into the Markdown report (stdout).

Input directory: TARGET.JOB.rROUND.json (fio --output-format=json) and TARGET.JOB.rROUND.json.cpu
("server_ticks_before server_ticks_after busy0 total0 busy1 total1 clk_tck").
Run facts come from REPORT_* environment variables set by bench/fio/run.
"""
import json
import os
import sys

JOBS = [
    ("randwrite-4k", "4K random write, QD32", "write"),
    ("randread-4k", "4K random read, QD32", "read"),
    ("write-1m", "1M sequential write, QD8", "write"),
    ("read-1m", "1M sequential read, QD8", "read"),
]
ORDER = ["raw", "nbdkit", "qemu-nbd", "slab"]
TARGET_RAW, TARGET_NBDKIT = 0.9, 1.0


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
        "errors": data.get("error", 0),
        "server_cpu": None,
        "others_cpu": None,
        "cpu_per_io": None,
    }
    cpu_path = path + ".cpu"
    if os.path.exists(cpu_path):
        s0, s1, b0, t0, b1, t1, hz = (float(x) for x in open(cpu_path).read().split())
        cpus = os.cpu_count()
        wall = (t1 - t0) / cpus  # ticks of one CPU over the job
        if wall > 0:
            server = 100.0 * (s1 - s0) / wall if target != "raw" else 0.0
            machine = 100.0 * (b1 - b0) / wall  # % of one CPU
            fio_cpu = data.get("usr_cpu", 0.0) + data.get("sys_cpu", 0.0)
            if target != "raw":
                result["server_cpu"] = server
            result["others_cpu"] = max(0.0, machine - server - fio_cpu)
            ios = side["total_ios"]
            if target != "raw" and ios > 0:
                # total_ios excludes the ramp; CPU includes it: scale by the measured share.
                runtime = float(os.environ.get("REPORT_RUNTIME", "0"))
                ramp = float(os.environ.get("REPORT_RAMP", "0"))
                share = runtime / (runtime + ramp) if runtime + ramp > 0 else 1.0
                result["cpu_per_io"] = 1e6 * (s1 - s0) / hz * share / ios
    return result


def load(directory, target, job, direction):
    """The best round (highest IOPS) of TARGET.JOB, with the number of rounds and their spread."""
    rounds = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(f"{target}.{job}.r") and name.endswith(".json"):
            rounds.append(load_one(os.path.join(directory, name), target, direction))
    if not rounds:
        return None
    best = max(rounds, key=lambda r: r["iops"])
    best["rounds"] = [r["iops"] for r in rounds]
    return best


def fmt(value, digits=0):
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio_cell(slab, other, goal):
    if slab is None or other is None or other["iops"] == 0:
        return "–"
    r = slab["iops"] / other["iops"]
    mark = "met" if r >= goal else "**missed**"
    return f"{r:.2f}× ({mark}, goal ≥ {goal:.1f}×)"


def main():
    directory = sys.argv[1]
    env = os.environ.get
    names = os.listdir(directory)
    targets = [t for t in ORDER if any(n.startswith(f"{t}.{j}.r") for j, _, _ in JOBS for n in names)]
    rounds = int(env("REPORT_ROUNDS", "1"))
    results = {(t, j): load(directory, t, j, d) for t in targets for j, _, d in JOBS}

    out = []
    w = out.append
    w("# fio, single node: raw file vs nbdkit vs qemu-nbd vs Slab")
    w("")
    w(f"- Date: {env('REPORT_DATE', '?')}")
    w(f"- Machine: {env('REPORT_MACHINE', '?')}")
    w(f"- Software: {env('REPORT_VERSIONS', '?')}")
    w(f"- Command: `{env('REPORT_COMMAND', '?')}`")
    w(f"- Backing storage (every target): {env('REPORT_BACKING', '?')}")
    w(f"- Each job: {env('REPORT_RAMP', '?')} s ramp + {env('REPORT_RUNTIME', '?')} s measured, time-based, "
      f"numjobs=1, direct=1, over a {env('REPORT_SIZE', '?')} GiB file/volume written sequentially once "
      f"before the jobs (reads hit allocated data); page cache dropped before every job. Jobs interleaved "
      f"(each job on every target in turn), {rounds} round(s); the table shows each job's best round.")
    w(f"- Targets: raw = the file, `ioengine=libaio`, O_DIRECT; nbdkit = `nbdkit file cache={env('REPORT_NBDKIT_CACHE', '?')}` "
      f"on a unix socket; qemu-nbd = `--format=raw --cache=none --aio={env('REPORT_QEMU_AIO', '?')}` on a unix socket; "
      f"slab = slabd (Release) with one drive image on the same filesystem, one {env('REPORT_SIZE', '?')} GiB volume, "
      f"its drive attached by slabd through a direct-I/O loop device. "
      f"NBD targets through fio's `nbd` engine (libnbd), one connection.")
    dio = []
    for t in targets:
        path = os.path.join(directory, f"{t}.loop-dio")
        if os.path.exists(path):
            dio.append(f"{t}: {open(path).read().strip()}")
    if dio:
        w(f"- slabd's drive loop device, `/sys/block/loopN/loop/dio` during the jobs: {', '.join(dio)}")
    w("")
    w("## Results")
    w("")
    w("Latency = completion latency (clat) in µs. Server CPU = the server process's CPU time over the job "
      "(utime+stime), % of one core; CPU/IO = server CPU µs per I/O; others = CPU used during the job by "
      f"everything but fio and the server (kernel workers such as loop and XFS threads, and any other load "
      f"on the machine), % of one core, of {os.cpu_count()}.")
    w("")
    spread = rounds > 1
    w("| job | target | IOPS | MB/s | p50 µs | p99 µs | server CPU | CPU/IO µs | others |"
      + (" IOPS of each round |" if spread else ""))
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if spread else ""))
    for job, title, _ in JOBS:
        for t in targets:
            r = results[(t, job)]
            if r is None:
                continue
            server = "–" if r["server_cpu"] is None else f"{r['server_cpu']:.0f} %"
            others = "–" if r["others_cpu"] is None else f"{r['others_cpu']:.0f} %"
            each = (" " + " / ".join(f"{x:,.0f}" for x in r["rounds"]) + " |") if spread else ""
            per_io = fmt(r["cpu_per_io"], 1)
            err = f" (fio error {r['errors']})" if r["errors"] else ""
            w(f"| {title} | {t}{err} | {fmt(r['iops'])} | {fmt(r['mbs'], 1)} | {fmt(r['p50'], 1)} | {fmt(r['p99'], 1)} "
              f"| {server} | {per_io} | {others} |{each}")
    w("")
    w("## Slab against the targets (IOPS ratio; MB/s gives the same ratio)")
    w("")
    for slab in [t for t in targets if t.startswith("slab")]:
        if slab != "slab":
            w(f"{slab}:")
            w("")
        w("| job | Slab/raw | Slab/nbdkit | Slab/qemu-nbd | p99 Slab/raw |")
        w("|---|---|---|---|---:|")
        for job, title, _ in JOBS:
            s = results.get((slab, job))
            raw = results.get(("raw", job))
            nbdkit = results.get(("nbdkit", job))
            qemu = results.get(("qemu-nbd", job))
            q = f"{s['iops'] / qemu['iops']:.2f}×" if s and qemu and qemu["iops"] else "–"
            p99 = f"{s['p99'] / raw['p99']:.2f}×" if s and raw and raw["p99"] else "–"
            w(f"| {title} | {ratio_cell(s, raw, TARGET_RAW)} | {ratio_cell(s, nbdkit, TARGET_NBDKIT)} | {q} | {p99} |")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
