#!/bin/bash
# Every node: containerd configured for kubeadm (systemd cgroups), cocoon
# built, installed and registered with containerd as the handler "cocoon"
# (packaging/setup-host.sh), kubeadm, kubelet and kubectl from pkgs.k8s.io.
#
#   common.sh SRC NODE_IP K8S_VERSION
set -euo pipefail

src=${1:?usage: common.sh SRC NODE_IP K8S_VERSION}
node_ip=${2:?}
k8s=${3:?}
export DEBIAN_FRONTEND=noninteractive

# Kernel settings kubeadm checks.
swapoff -a
sed -i '/\sswap\s/d' /etc/fstab
printf 'overlay\nbr_netfilter\n' >/etc/modules-load.d/k8s.conf
modprobe overlay
modprobe br_netfilter
printf 'net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n' >/etc/sysctl.d/k8s.conf
sysctl --system >/dev/null

# containerd with the systemd cgroup driver that kubelet uses; written once,
# so that a second provisioning keeps cocoon's handler and any later edit.
apt-get update -qq
apt-get install -y -qq containerd apt-transport-https ca-certificates curl gpg >/dev/null
if ! grep -q 'SystemdCgroup = true' /etc/containerd/config.toml 2>/dev/null; then
	containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >/etc/containerd/config.toml
	systemctl restart containerd
fi

# cocoon: packages, build, install, registration with containerd.
bash "$src/packaging/setup-host.sh" --register=containerd

# kubeadm, kubelet, kubectl.
install -d -m 0755 /etc/apt/keyrings
if [ ! -e /etc/apt/keyrings/kubernetes.gpg ]; then
	curl -fsSL "https://pkgs.k8s.io/core:/stable:/v$k8s/deb/Release.key" | gpg --dearmor -o /etc/apt/keyrings/kubernetes.gpg
fi
echo "deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v$k8s/deb/ /" >/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
apt-get install -y -qq kubelet kubeadm kubectl >/dev/null
apt-mark hold kubelet kubeadm kubectl >/dev/null
# The private network, not the NAT one, is the node's address.
echo "KUBELET_EXTRA_ARGS=--node-ip=$node_ip" >/etc/default/kubelet
systemctl enable --now kubelet
