# Shared by scripts/quickstart and scripts/test. Sourced, not run.
# Installs what a fresh Debian machine lacks (apt-get update once), checks the .NET SDK.

SLAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLAB_PACKAGES=(xfsprogs e2fsprogs util-linux libnbd-bin fuse3 fio qemu-utils nbdkit iproute2 nodejs npm)
# How to tell each package is installed: a command it provides, or a probe command line (one with a
# space: run, installed when it exits 0), e.g. for a Python module.
declare -A SLAB_PACKAGE_PROBE=(
  [xfsprogs]=mkfs.xfs [e2fsprogs]=mkfs.ext4 [util-linux]=losetup [libnbd-bin]=nbdfuse
  [fuse3]=fusermount3 [fio]=fio [qemu-utils]=qemu-img [nbdkit]=nbdkit
  [iproute2]=ip  # network namespaces of the partition tests (tests/Slab.Tests/Infrastructure/NetworkLab.cs)
  [nodejs]=node [npm]=npm  # packaging/kubernetes/validate checks the Kubernetes manifests
)

# The Docker plugin tests start private dockerds (tests/Slab.Tests/Infrastructure/Dockerd.cs) and
# import an image made of busybox-static's /bin/busybox.
SLAB_PACKAGES+=(docker.io busybox-static)
SLAB_PACKAGE_PROBE+=([docker.io]=dockerd [busybox-static]=busybox)

# The metrics tests read /metrics with Prometheus' reference parser (tests/Slab.Tests/Metrics/
# parse_prometheus.py), Debian's module for Debian's interpreter (the python3 on PATH may be another).
SLAB_PACKAGES+=(python3-prometheus-client)
SLAB_PACKAGE_PROBE+=([python3-prometheus-client]="/usr/bin/python3 -c 'import prometheus_client.parser'")

slab_say() { printf '==> %s\n' "$*"; }
slab_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

slab_require_root() {
  [ "$(id -u)" -eq 0 ] || slab_die "Slab formats and mounts drives and attaches block devices: run this as root (sudo $0)"
}

# True when the probe of a package (see SLAB_PACKAGE_PROBE) finds it installed.
slab_probe() {
  case "$1" in
    *' '*) bash -c "$1" >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

slab_install_packages() {
  local missing=()
  for package in "${SLAB_PACKAGES[@]}"; do
    slab_probe "${SLAB_PACKAGE_PROBE[$package]}" || missing+=("$package")
  done
  # Hosts with the kernel nbd module attach through it (nbd-client, netlink); others use nbdfuse.
  if { [ -e /sys/module/nbd ] || modprobe -q nbd 2>/dev/null; } && ! command -v nbd-client >/dev/null 2>&1; then
    missing+=(nbd-client)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    slab_say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # FUSE needs its device node; loop devices need the control node.
  [ -e /dev/fuse ] || slab_die "/dev/fuse is missing: this kernel has no FUSE"
  [ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true
}

slab_require_dotnet() {
  command -v dotnet >/dev/null 2>&1 || slab_die "the .NET 10 SDK is not installed (dotnet not on PATH); install it, then run this again"
  local major
  major="$(dotnet --version 2>/dev/null | cut -d. -f1)"
  [ "${major:-0}" -ge 10 ] || slab_die "the .NET SDK is $(dotnet --version); Slab needs .NET 10 or newer"
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}

slab_build() {
  slab_say "building (Release)"
  dotnet build "$SLAB_ROOT/Storage.sln" -c Release -nologo -v quiet -clp:ErrorsOnly
}

SLABD_DLL="$SLAB_ROOT/src/StorageNode/bin/Release/net10.0/slabd.dll"
SLABCTL_DLL="$SLAB_ROOT/src/Cli/bin/Release/net10.0/slabctl.dll"
