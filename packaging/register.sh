#!/bin/bash
# Registers cocoon with the container engines of this host, or removes it:
#
#   packaging/register.sh register|unregister [docker] [containerd] [crio] [kubernetes]
#
# With no engine named: every one that is installed here (docker: dockerd
# or a daemon.json; containerd: containerd or its config.toml; crio: crio
# or /etc/crio). kubernetes is only done when named (it needs a cluster, or
# RUNTIMECLASS_OUT). Each step is idempotent and keeps the other settings
# of the file it edits; see the script of each engine for the environment
# variables that move its files.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
case $action in register | unregister) ;; *)
	echo "usage: $0 register|unregister [docker] [containerd] [crio] [kubernetes]" >&2
	exit 2
	;;
esac
shift
engines=("$@")
if [ ${#engines[@]} -eq 0 ]; then
	if command -v dockerd >/dev/null || [ -e "${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}" ]; then engines+=(docker); fi
	if command -v containerd >/dev/null || [ -e "${CONTAINERD_CONFIG:-/etc/containerd/config.toml}" ]; then engines+=(containerd); fi
	if command -v crio >/dev/null || [ -d "${CRIO_DROPIN_DIR:-/etc/crio}" ]; then engines+=(crio); fi
fi
for e in "${engines[@]}"; do
	case $e in
	docker | containerd | crio | kubernetes) bash "$here/$e/register.sh" "$action" ;;
	*)
		echo "$0: unknown engine $e (docker, containerd, crio, kubernetes)" >&2
		exit 2
		;;
	esac
done
