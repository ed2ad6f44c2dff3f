# Shared by bench/cluster/run and tests/fault-loop/run: a local cluster of slabd processes
# (scripts/cluster) kept under a temporary work directory, driven through slabctl, and torn down
# completely whatever state its nodes were left in. Sourced (after scripts/lib.sh), not run.
#
# The sourcing script sets, before it starts the cluster:
#   WORK              a fresh directory (mktemp -d) that holds everything, SLAB_CLUSTER_DIR under it
#   NODES             how many nodes scripts/cluster up starts (node i is 127.0.10.i)
#   VOLUME            the volume attach_on/detach_from attach and detach
#   CLUSTER_STARTED   0, then 1 once scripts/cluster up ran
# and keeps ATTACHED_AT (the node $VOLUME is attached on, or empty) through attach_on/detach_from.

ATTACHED_AT="${ATTACHED_AT:-}"

slabctl_at() { local i="$1"; shift; timeout 300 dotnet "$SLABCTL_DLL" --endpoint "127.0.10.$i:9501" "$@"; }
node_pid() { cat "$SLAB_CLUSTER_DIR/node-$1/slabd.pid" 2>/dev/null || true; }

# Loop devices whose backing file lies under $WORK; with "attach", only those over nbdfuse's files.
work_loops() {
  losetup -l -n -O NAME,BACK-FILE 2>/dev/null |
    awk -v w="$WORK/" -v only="${1:-}" 'index($2, w) == 1 && (only == "" || index($2, "/run/attach/") > 0) {print $1}'
}

attach_on() {   # attach_on NODE: attaches $VOLUME there; sets DEV and ATTACHED_AT
  ATTACHED_AT="$1"   # before the call: an attach that fails half-way is detached by the teardown
  DEV="$(slabctl_at "$1" host attach "$VOLUME")" || slab_die "attach of $VOLUME on node-$1 failed"
  [ -b "$DEV" ] || slab_die "attach on node-$1 printed '$DEV', which is not a block device"
}

detach_from() {
  slabctl_at "$1" host detach "$VOLUME" >/dev/null || slab_die "detach of $VOLUME from node-$1 failed"
  ATTACHED_AT=""
}

# Detaches $VOLUME, stops every node (SIGKILL for any that does not stop), and removes what a
# killed slabd leaves behind: attach loops, nbdfuse, FUSE and drive mounts, drive loops.
local_cluster_teardown() {
  if [ "$CLUSTER_STARTED" = 1 ]; then
    if [ -n "$ATTACHED_AT" ]; then
      slab_say "cleanup: detaching $VOLUME from node-$ATTACHED_AT"
      slabctl_at "$ATTACHED_AT" host detach "$VOLUME" >/dev/null || echo "warning: detach failed; removing the device by hand" >&2
    fi
    "$SLAB_ROOT/scripts/cluster" down || echo "warning: scripts/cluster down failed" >&2
    local i pid
    for i in $(seq 1 "$NODES"); do
      pid="$(node_pid "$i")"
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "warning: node-$i ($pid) still runs; killing it" >&2
        kill -KILL "$pid"
      fi
    done
  fi
  local dev m f
  for dev in $(work_loops attach); do losetup -d "$dev"; done
  for f in "$SLAB_CLUSTER_DIR"/node-*/run/attach/*/nbdfuse.pid; do
    [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
  done
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^$WORK/" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for dev in $(work_loops); do losetup -d "$dev"; done
}

# Removes $WORK and says so if anything of ours survived.
local_cluster_remove_work() {
  rm -rf "$WORK"
  local left
  left="$(pgrep -fa slabd | grep -F "$WORK/" ; losetup -a | grep -F "$WORK/" ; grep -F "$WORK" /proc/mounts)"
  [ -z "$left" ] || printf 'warning: left behind:\n%s\n' "$left" >&2
}

# Fixed addresses: a cluster already on 127.0.10.x (scripts/cluster up elsewhere) would take ours.
local_cluster_require_free_addresses() {
  if ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qE '^127\.0\.10\.[0-9]+:(9501|9503|9504|9505)$'; then
    slab_die "something already listens on 127.0.10.x (another local cluster? SLAB_CLUSTER_DIR=... scripts/cluster status); stop it first"
  fi
}
