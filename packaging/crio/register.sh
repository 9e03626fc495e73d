#!/bin/bash
# Registers cocoon with CRI-O, or removes it:
#
#   packaging/crio/register.sh [register|unregister]
#
# Installs the drop-in packaging/crio/50-cocoon.conf (runtime handlers
# "cocoon": cocoon-runtime under conmon, and "cocoon-vm": the containerd
# shim v2) into CRI-O's drop-in directory, with the paths of this install;
# CRI-O's own crio.conf and other drop-ins are not touched. Running it twice
# changes nothing. A running CRI-O is restarted (systemd) when the drop-in
# changed. Environment:
#   CRIO_DROPIN_DIR  the drop-in directory (default /etc/crio/crio.conf.d)
#   COCOON_BINDIR    where cocoon's binaries are installed (default /usr/local/bin)
#   COCOON_CONFIG    the configuration of both handlers (default /etc/cocoon/configuration.toml)
#   COCOON_RUNTIME_ROOT  the cocoon handler's runtime root (default /run/cocoon;
#                    the cocoon-vm handler's is the same with -vm appended)
#   CONMON           conmon (default: `command -v conmon`, else /usr/bin/conmon)
#   CRIO_RESTART     auto (default: restart crio.service if active), yes, or no
set -euo pipefail

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/../common.sh"
parse_action "${1:-}"
here=$(cd "$(dirname "$0")" && pwd)
dir=${CRIO_DROPIN_DIR:-/etc/crio/crio.conf.d}
bindir=${COCOON_BINDIR:-/usr/local/bin}
config=${COCOON_CONFIG:-/etc/cocoon/configuration.toml}
root=${COCOON_RUNTIME_ROOT:-/run/cocoon}
conmon=${CONMON:-$(command -v conmon || echo /usr/bin/conmon)}
restart=${CRIO_RESTART:-auto}
file=$dir/50-cocoon.conf

changed=no
if [ "$action" = register ]; then
	mkdir -p "$dir"
	new=$(sed -e "s|/usr/local/bin/|$bindir/|g" \
		-e "s|/etc/cocoon/configuration.toml|$config|g" \
		-e "s|\"/run/cocoon\"|\"$root\"|" -e "s|\"/run/cocoon-vm\"|\"$root-vm\"|" \
		-e "s|/usr/bin/conmon|$conmon|g" \
		-e "s|/etc/crio/crio.conf.d/50-cocoon.conf|$file|g" "$here/50-cocoon.conf")
	if [ "$(cat "$file" 2>/dev/null || true)" != "$new" ]; then
		printf '%s\n' "$new" >"$file.tmp.$$"
		chmod 0644 "$file.tmp.$$"
		mv -f "$file.tmp.$$" "$file"
		changed=yes
	fi
elif [ -e "$file" ]; then
	rm -f "$file"
	changed=yes
fi
echo "$action: cocoon and cocoon-vm handlers in $file" >&2

[ "$changed" = yes ] || exit 0
restart_service crio "$restart"
