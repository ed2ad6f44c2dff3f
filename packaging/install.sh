#!/usr/bin/env bash
# Installs slabd and slabctl on this host from a built checkout: publishes both to /opt/slab,
# links /usr/local/bin/slabctl, installs the systemd unit. Run as root from the repository root.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
slab_require_root
slab_install_packages
slab_require_dotnet
dotnet publish "$SLAB_ROOT/src/StorageNode" -c Release -o /opt/slab/slabd -nologo -v quiet
dotnet publish "$SLAB_ROOT/src/Cli" -c Release -o /opt/slab/slabctl -nologo -v quiet
cat >/usr/local/bin/slabctl <<'SH'
#!/bin/sh
exec /usr/bin/dotnet /opt/slab/slabctl/slabctl.dll "$@"
SH
chmod 755 /usr/local/bin/slabctl
install -D -m 644 "$SLAB_ROOT/packaging/systemd/slabd.service" /etc/systemd/system/slabd.service
install -D -m 644 "$SLAB_ROOT/docs/architecture.md" /usr/share/doc/slab/architecture.md
[ -f /etc/slab/slabd.env ] || install -D -m 644 /dev/null /etc/slab/slabd.env
echo "installed; list drives in /etc/slab/slabd.env (SLABD_ARGS=\"--drive /dev/sdX\"), then: systemctl enable --now slabd"
