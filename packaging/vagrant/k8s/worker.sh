#!/bin/bash
# A worker: joins the cluster with the bootstrap token of the settings.
#
#   worker.sh MASTER_IP TOKEN
set -euo pipefail

master=${1:?usage: worker.sh MASTER_IP TOKEN}
token=${2:?}
if [ ! -e /etc/kubernetes/kubelet.conf ]; then
	kubeadm join "$master:6443" --token "$token" --discovery-token-unsafe-skip-ca-verification \
		--cri-socket unix:///run/containerd/containerd.sock
fi
