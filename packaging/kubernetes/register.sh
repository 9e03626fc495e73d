#!/bin/bash
# Registers the RuntimeClasses "cocoon" and "cocoon-vm" with a Kubernetes
# cluster, or removes them:
#
#   packaging/kubernetes/register.sh [register|unregister]
#
# Applies packaging/kubernetes/runtimeclass.yaml (handler "cocoon"; and
# "cocoon-vm", CRI-O's shim v2 handler, for CRI-O nodes; both with the pod
# overhead of a cocoon VM) with kubectl; `kubectl apply` and
# `kubectl delete --ignore-not-found` make both idempotent. Every node that
# runs such pods needs cocoon installed and registered with its container
# runtime (packaging/containerd/register.sh or packaging/crio/register.sh).
# Environment:
#   RUNTIMECLASS_OUT  write the manifest to this file instead of applying it
#                     (unregister removes the file)
#   KUBECTL           kubectl command (default kubectl); KUBECONFIG as usual
set -euo pipefail

# shellcheck source=packaging/common.sh
. "$(dirname "$0")/../common.sh"
parse_action "${1:-}"
manifest=$(cd "$(dirname "$0")" && pwd)/runtimeclass.yaml
kubectl=${KUBECTL:-kubectl}

if [ -n "${RUNTIMECLASS_OUT:-}" ]; then
	if [ "$action" = register ]; then
		mkdir -p "$(dirname "$RUNTIMECLASS_OUT")"
		cmp -s "$manifest" "$RUNTIMECLASS_OUT" || install -m 0644 "$manifest" "$RUNTIMECLASS_OUT"
	else
		rm -f "$RUNTIMECLASS_OUT"
	fi
	echo "$action: RuntimeClasses cocoon and cocoon-vm in $RUNTIMECLASS_OUT" >&2
	exit 0
fi
if [ "$action" = register ]; then
	$kubectl apply -f "$manifest"
else
	$kubectl delete --ignore-not-found -f "$manifest"
fi
