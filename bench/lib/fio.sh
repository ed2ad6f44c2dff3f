# shellcheck shell=bash
# Shared by bench/fio/run and bench/fio/profile: the fio jobs, starting the servers (slabd, nbdkit),
# the attached paths (slabd's `host attach`; nbdfuse + a direct-I/O loop device made the way
# slabd's NbdFuseLoopAttacher makes it), CPU ticks of processes, and the removal of whatever a
# crashed server or an interrupted run left behind. Sourced (after scripts/lib.sh), not run.
#
# The sourcing script sets WORK (a fresh `mktemp -d` directory: run directories, sockets, logs) and
# SIZE_GIB before it starts anything. Functions that start a process set BENCH_PID (a child of the
# calling shell, so that it can `wait` for it); attach functions set BENCH_DEV and BENCH_HELPER_PID.

# ---------------------------------------------------------------- packages
# The bench's own tools, beyond SLAB_PACKAGES (scripts/lib.sh), with the command that tells whether
# each is installed.
BENCH_PACKAGES=(strace linux-perf)
declare -A BENCH_PACKAGE_PROBE=([strace]=strace [linux-perf]=perf)

bench_install_packages() {   # bench_install_packages PACKAGE...: installs those of them that are missing
  local package missing=()
  for package in "$@"; do
    [[ " ${BENCH_PACKAGES[*]} " == *" $package "* ]] || slab_die "bench_install_packages: $package is not in BENCH_PACKAGES"
    command -v "${BENCH_PACKAGE_PROBE[$package]}" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    slab_say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || slab_die "could not install ${missing[*]}"
  fi
}

# ---------------------------------------------------------------- the jobs
# The QD1 latency jobs first (they run at numjobs=1 only), then the throughput jobs.
FIO_JOBS=(randwrite-4k-qd1 randread-4k-qd1 randwrite-4k randread-4k write-1m read-1m)

fio_job_args() {   # fio_job_args JOB: the fio arguments of a job (without size, engine, numjobs)
  case "$1" in
    randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1 --norandommap --randrepeat=0" ;;
    randread-4k-qd1)  echo "--rw=randread --bs=4k --iodepth=1 --norandommap --randrepeat=0" ;;
    randwrite-4k)     echo "--rw=randwrite --bs=4k --iodepth=32 --norandommap --randrepeat=0" ;;
    randread-4k)      echo "--rw=randread --bs=4k --iodepth=32 --norandommap --randrepeat=0" ;;
    write-1m)         echo "--rw=write --bs=1m --iodepth=8" ;;
    read-1m)          echo "--rw=read --bs=1m --iodepth=8" ;;
    *) slab_die "unknown job '$1' (jobs: ${FIO_JOBS[*]})" ;;
  esac
}

fio_job_is_qd1() { case "$1" in *-qd1) return 0 ;; *) return 1 ;; esac; }

# fio_size_args JOB NUMJOBS BYTES: what each of NUMJOBS fio jobs covers. Random jobs: all of it,
# each with its own random offsets. Sequential jobs: a slice each (BYTES/NUMJOBS, 1 MiB aligned),
# so that NUMJOBS streams do not write or read the same blocks one after another.
fio_size_args() {
  local job="$1" n="$2" bytes="$3" slice
  case "$job" in
    write-1m|read-1m)
      if [ "$n" -gt 1 ]; then
        slice=$(((bytes / n) >> 20 << 20))
        echo "--size=$slice --offset_increment=$slice"
        return
      fi ;;
  esac
  echo "--size=$bytes"
}

# ---------------------------------------------------------------- processes
bench_proc_ticks() {   # bench_proc_ticks PID...: CPU ticks (utime+stime, all threads) of the processes, summed
  local pid sum=0 t
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    t="$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    sum=$((sum + t))
  done
  echo "$sum"
}

bench_machine_ticks() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; total=busy+$5+$6; print busy, total}' /proc/stat; }

bench_stop_pid() {   # bench_stop_pid PID NAME: SIGTERM, wait up to 60 s (slabd unmounts and flushes), then SIGKILL
  local pid="$1"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: $2 ($pid) ignored SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

bench_wait_for_socket() {   # bench_wait_for_socket PATH PID NAME
  for _ in $(seq 1 300); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || slab_die "$3 exited before opening $1"
    sleep 0.1
  done
  slab_die "$3 did not open $1 within 30 s"
}

# ---------------------------------------------------------------- backing storage
# bench_make_xfs IMAGE_DIR GIB: "the backing storage": a sparse image of GIB GiB in IMAGE_DIR, a
# loop device over it with direct I/O (O_DIRECT on the XFS inside reaches the host disk without
# the page cache), XFS (reflink=1) on it, mounted at WORK/mnt. Sets OUTER_IMG (set before anything
# is made, so that bench_remove_xfs removes a half-made one), OUTER_LOOP, MNT and BACKING_DESC.
bench_make_xfs() {
  local host_fs
  OUTER_IMG="$(mktemp "$1/slab-fio-backing.XXXXXX.img")"
  truncate -s "$(($2 << 30))" "$OUTER_IMG"
  OUTER_LOOP="$(losetup --find --show --direct-io=on "$OUTER_IMG")"
  mkfs.xfs -f -q -m reflink=1 "$OUTER_LOOP"
  MNT="$WORK/mnt"
  mkdir -p "$MNT"
  mount -t xfs -o noatime "$OUTER_LOOP" "$MNT"
  host_fs="$(findmnt -n -o SOURCE,FSTYPE --target "$1" | tr -s ' ' | sed 's/ / (/;s/$/)/')"
  BACKING_DESC="XFS (reflink=1) made by the script on \`$OUTER_LOOP\` (loop, direct-io=on) over the sparse image \`$OUTER_IMG\` on $host_fs"
}

bench_remove_xfs() {   # bench_remove_xfs: unmounts MNT, detaches the loop over OUTER_IMG, deletes it
  local dev
  if [ -n "${MNT:-}" ] && mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT" || true; fi
  if [ -n "${OUTER_IMG:-}" ]; then
    for dev in $(losetup -j "$OUTER_IMG" -O NAME -n 2>/dev/null); do losetup -d "$dev" || true; done
    rm -f "$OUTER_IMG"
  fi
}

# ---------------------------------------------------------------- servers
bench_slab_run() { echo "$WORK/run/$1"; }   # bench_slab_run NAME: that slabd's --run-dir

bench_slabctl() {   # bench_slabctl NAME ARGS...: slabctl against slabd NAME's API socket
  local name="$1"; shift
  timeout 300 dotnet "$SLABCTL_DLL" --endpoint "unix://$(bench_slab_run "$name")/api.sock" "$@"
}

# bench_start_slabd NAME DRIVE [ENV=VALUE...] [-- SLABD-ARGS...]: a slabd (Release build) with data
# in WORK/NAME/data, run directory WORK/run/NAME, log WORK/NAME.log, its one drive the image DRIVE
# (slabd formats it and attaches it through a direct-I/O loop device), no TCP ports, no Docker
# plugin, plus SLABD-ARGS; waits for "slabd ready" and creates the volume "bench" of SIZE_GIB.
# Sets BENCH_PID.
bench_start_slabd() {
  local name="$1" drive="$2"; shift 2
  local run log environment=() arg
  while [ $# -gt 0 ]; do
    arg="$1"; shift
    [ "$arg" = "--" ] && break
    environment+=("$arg")
  done
  run="$(bench_slab_run "$name")" log="$WORK/$name.log"
  mkdir -p "$WORK/$name/data" "$run"
  env "${environment[@]}" dotnet "$SLABD_DLL" --data-dir "$WORK/$name/data" --run-dir "$run" --drive "$drive" \
    --api-port 0 --nbd-port 0 --metrics-port 0 --skip-pool-benchmark --no-docker-plugin --node-name "bench-$name" "$@" >"$log" 2>&1 &
  BENCH_PID=$!
  for _ in $(seq 1 1200); do
    grep -qs "slabd ready" "$log" && break
    kill -0 "$BENCH_PID" 2>/dev/null || { cat "$log" >&2; slab_die "slabd ($name) exited during start-up"; }
    sleep 0.1
  done
  grep -qs "slabd ready" "$log" || slab_die "slabd ($name) was not ready within 120 s (log: $log)"
  bench_slabctl "$name" volume create bench --size "$SIZE_GIB" >/dev/null
}

bench_drive_loop_dio() {   # bench_drive_loop_dio DRIVE: /sys/block/loopN/loop/dio of the loop over DRIVE
  local loop
  loop="$(losetup -j "$1" -O NAME -n | head -n1)"
  [ -n "$loop" ] || slab_die "cannot find the loop device over $1"
  cat "/sys/block/$(basename "$loop")/loop/dio"
}

# bench_start_nbdkit NAME FILE CACHE: nbdkit's file plugin serving FILE (cache=CACHE) on the unix
# socket WORK/run/NAME.sock, log WORK/NAME.log. Sets BENCH_PID.
bench_start_nbdkit() {
  local sock="$WORK/run/$1.sock"
  mkdir -p "$WORK/run"
  nbdkit --foreground --exit-with-parent --unix "$sock" file "$2" cache="$3" >"$WORK/$1.log" 2>&1 &
  BENCH_PID=$!
  bench_wait_for_socket "$sock" "$BENCH_PID" "nbdkit ($1)"
}

# ---------------------------------------------------------------- attached devices
bench_dio_of() { cat "/sys/block/$(basename "$1")/loop/dio" 2>/dev/null || echo "n/a"; }   # bench_dio_of DEV

# bench_slab_attach NAME SLABD_PID: `slabctl host attach bench` on slabd NAME; sets BENCH_DEV (the
# device it printed), BENCH_HELPER_PID (its nbdfuse, a child of slabd: RUN/attach/bench/nbdfuse.pid,
# else pgrep -P; empty for the kernel nbd driver) and BENCH_ATTACH_METHOD.
bench_slab_attach() {
  local name="$1" slabd="$2" dir
  dir="$(bench_slab_run "$name")/attach/bench"
  BENCH_DEV="$(bench_slabctl "$name" host attach bench)" || slab_die "slabctl host attach bench failed ($name)"
  [ -b "$BENCH_DEV" ] || slab_die "host attach printed '$BENCH_DEV', which is not a block device"
  BENCH_HELPER_PID=""
  case "$BENCH_DEV" in
    /dev/loop*)
      if grep -qs '"Method": "FuseLoop"' "$dir/state.json"; then
        BENCH_ATTACH_METHOD="slabd's FUSE file + loop"   # served inside slabd: no helper process
        return 0
      fi
      BENCH_ATTACH_METHOD="nbdfuse + loop"
      BENCH_HELPER_PID="$(cat "$dir/nbdfuse.pid" 2>/dev/null || true)"
      [ -n "$BENCH_HELPER_PID" ] || BENCH_HELPER_PID="$(pgrep -P "$slabd" -x nbdfuse | head -n1 || true)"
      [ -n "$BENCH_HELPER_PID" ] && [ -d "/proc/$BENCH_HELPER_PID" ] || slab_die "cannot find the nbdfuse of $BENCH_DEV (no $dir/nbdfuse.pid)"
      # --keep-attachments: the reconnecting relay between nbdfuse and slabd is a helper too.
      if [ -s "$dir/relay.pid" ]; then
        BENCH_HELPER_PID="$BENCH_HELPER_PID $(cat "$dir/relay.pid")"
        BENCH_ATTACH_METHOD="nbdfuse + relay + loop"
      fi
      ;;
    /dev/nbd*) BENCH_ATTACH_METHOD="kernel nbd" ;;
    *) BENCH_ATTACH_METHOD="unknown" ;;
  esac
}

bench_slab_detach() {   # bench_slab_detach NAME: `slabctl host detach bench`
  bench_slabctl "$1" host detach bench >/dev/null
}

# bench_nbdfuse_attach DIR NAME URI: the device slabd's NbdFuseLoopAttacher would make for URI, by
# the same commands: nbdfuse -P DIR/nbdfuse.pid DIR/fuse/NAME URI (stdin /dev/null, output to
# DIR/nbdfuse.log; it stays in the foreground and writes its pid file once it serves), then
# losetup --find --show --direct-io=on DIR/fuse/NAME. Sets BENCH_DEV, BENCH_HELPER_PID.
bench_nbdfuse_attach() {
  local dir="$1" name="$2" uri="$3"
  mkdir -p "$dir/fuse"
  chmod 700 "$dir" "$dir/fuse"
  LC_ALL=C nbdfuse -P "$dir/nbdfuse.pid" "$dir/fuse/$name" "$uri" </dev/null >>"$dir/nbdfuse.log" 2>&1 &
  BENCH_HELPER_PID=$!
  for _ in $(seq 1 300); do
    [ -s "$dir/nbdfuse.pid" ] && break
    kill -0 "$BENCH_HELPER_PID" 2>/dev/null || slab_die "nbdfuse exited: $(cat "$dir/nbdfuse.log")"
    sleep 0.1
  done
  [ -s "$dir/nbdfuse.pid" ] || slab_die "nbdfuse did not serve within 30 s: $(cat "$dir/nbdfuse.log")"
  BENCH_DEV="$(losetup --find --show --direct-io=on "$dir/fuse/$name")"
}

# bench_nbdfuse_detach DIR NAME: the undo, in slabd's order: losetup -d, fusermount3 -u, then wait
# for nbdfuse to exit (killed after 10 s).
bench_nbdfuse_detach() {
  local dir="$1" name="$2" dev pid
  for dev in $(losetup -j "$dir/fuse/$name" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
  for _ in $(seq 1 100); do [ -z "$(losetup -j "$dir/fuse/$name" -O NAME -n 2>/dev/null)" ] && break; sleep 0.1; done
  if findmnt -n "$dir/fuse" >/dev/null 2>&1; then fusermount3 -u "$dir/fuse" || umount -l "$dir/fuse"; fi
  pid="$(cat "$dir/nbdfuse.pid" 2>/dev/null || true)"
  if [ -n "$pid" ]; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------- leftovers
# bench_loops_under [--fuse] DIR...: loop devices whose backing file lies under one of the
# directories; with --fuse, only those over a FUSE file (a path with /fuse/ in it).
bench_loops_under() {
  local d only=""
  [ "${1:-}" = --fuse ] && { only="/fuse/"; shift; }
  for d in "$@"; do
    losetup -l -n -O NAME,BACK-FILE 2>/dev/null |
      awk -v d="${d%/}/" -v only="$only" 'index($2, d) == 1 && (only == "" || index($2, only) > 0) {print $1}'
  done | sort -u
}

# bench_remove_leftovers KEEP_MOUNT DIR...: removes what a killed server or an interrupted run left
# under WORK and the DIRs, and nothing else, in an order that works: loop devices over FUSE files,
# nbdfuse (pid files under WORK, checked to be nbdfuse), every mount under WORK but KEEP_MOUNT
# (deepest first: FUSE and slabd's drive mounts), then loop devices over files under WORK and the
# DIRs (slabd's drives, raw-loop). Harmless when everything is already gone.
bench_remove_leftovers() {
  local keep="$1"; shift
  local dev f pid m
  for dev in $(bench_loops_under --fuse "$WORK" "$@"); do losetup -d "$dev" 2>/dev/null || true; done
  while IFS= read -r f; do
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "nbdfuse" || continue
    m="$(dirname "$f")/fuse"
    if findmnt -n "$m" >/dev/null 2>&1; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m" || true; fi
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done < <(find "$WORK" -xdev -name nbdfuse.pid 2>/dev/null)
  for m in $(awk -v w="$WORK/" -v keep="$keep" 'index($2, w) == 1 && $2 != keep {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  for dev in $(bench_loops_under "$WORK" "$@"); do losetup -d "$dev" 2>/dev/null || true; done
  return 0
}

# bench_leftovers: prints whatever of WORK survived (processes, loop devices, mounts).
bench_leftovers() {
  pgrep -fa "slabd|nbdkit|nbdfuse|qemu-nbd" | grep -F "$WORK" || true
  losetup -a | grep -F "$WORK" || true
  grep -F "$WORK" /proc/mounts || true
}
