#!/bin/bash
# Registers cocoon-runtime with Docker as the runtime "cocoon", or removes it:
#
#   packaging/docker/register.sh [register|unregister]     (make docker-register / docker-unregister)
#
# It merges {"runtimes": {"cocoon": {"path": ..., "runtimeArgs": [...]}}} into
# Docker's daemon.json (other keys and runtimes are kept; running it twice
# changes nothing), then asks a running dockerd to reload it (SIGHUP):
# `docker info` lists cocoon under Runtimes, and
#   docker run --rm --runtime cocoon --network none busybox uname -r
# prints the guest's kernel. Environment:
#   DOCKER_DAEMON_JSON  the file (default /etc/docker/daemon.json)
#   DOCKER_PIDFILE      dockerd's pid file (default /var/run/docker.pid)
#   COCOON_RUNTIME      the runtime binary (default $COCOON_BINDIR/cocoon-runtime,
#                       COCOON_BINDIR defaulting to /usr/local/bin: make install)
#   COCOON_CONFIG       a configuration file passed as --config (default: none, the
#                       runtime reads /etc/cocoon/configuration.toml)
#   DOCKERCONFIG        the merge tool (default bin/dockerconfig of this tree, make build)
set -euo pipefail

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/../common.sh"
parse_action "${1:-}"
top=$(cd "$(dirname "$0")/../.." && pwd)
tool=${DOCKERCONFIG:-$top/bin/dockerconfig}
file=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
runtime=${COCOON_RUNTIME:-${COCOON_BINDIR:-/usr/local/bin}/cocoon-runtime}
pidfile=${DOCKER_PIDFILE:-/var/run/docker.pid}

args=(-file "$file" -name cocoon -path "$runtime")
if [ -n "${COCOON_CONFIG:-}" ]; then
	args+=(-arg --config -arg "$COCOON_CONFIG")
fi
if [ "$action" = register ] && [ ! -x "$runtime" ]; then
	echo "warning: $runtime is not installed yet (make install)" >&2
fi
"$tool" "${args[@]}" "$action"
echo "$action: cocoon in $file" >&2

if pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
	kill -HUP "$pid"
	echo "dockerd ($pid) reloaded its configuration" >&2
fi
