#!/bin/bash
# Registers cocoon with containerd's CRI plugin as the runtime handler
# "cocoon" (runtime_type io.containerd.cocoon.v2), or removes it:
#
#   packaging/containerd/register.sh [register|unregister]
#
# The handler (packaging/containerd/cocoon.toml) is added to config.toml as
# one marked block; every other setting and comment is kept, and running it
# twice changes nothing. containerd reads its configuration at start, so a
# running containerd is restarted (systemd) when the file changed.
# Environment:
#   CONTAINERD_CONFIG   the file (default /etc/containerd/config.toml)
#   CONTAINERD_RESTART  auto (default: restart containerd.service if it is
#                       active and the file changed), yes, or no
#   CONTAINERDCONFIG    the merge tool (default bin/containerdconfig of this tree, make build)
set -euo pipefail

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/../common.sh"
parse_action "${1:-}"
top=$(cd "$(dirname "$0")/../.." && pwd)
tool=${CONTAINERDCONFIG:-$top/bin/containerdconfig}
file=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
restart=${CONTAINERD_RESTART:-auto}

before=$(cat "$file" 2>/dev/null || true)
"$tool" -file "$file" -name cocoon -type io.containerd.cocoon.v2 "$action"
after=$(cat "$file" 2>/dev/null || true)
echo "$action: runtime handler cocoon in $file" >&2

[ "$before" != "$after" ] || exit 0
restart_service containerd "$restart"
