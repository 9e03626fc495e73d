#!/bin/bash
# The control plane: kubeadm init, flannel, the RuntimeClass "cocoon"
# (packaging/kubernetes/register.sh), then a pod in a cocoon VM.
#
#   master.sh SRC MASTER_IP POD_CIDR TOKEN
set -euo pipefail

src=${1:?usage: master.sh SRC MASTER_IP POD_CIDR TOKEN}
ip=${2:?}
pod_cidr=${3:?}
token=${4:?}
export KUBECONFIG=/etc/kubernetes/admin.conf

if [ ! -e "$KUBECONFIG" ]; then
	kubeadm init --apiserver-advertise-address "$ip" --pod-network-cidr "$pod_cidr" \
		--token "$token" --token-ttl 0 --cri-socket unix:///run/containerd/containerd.sock
fi
install -d -o vagrant -g vagrant /home/vagrant/.kube
install -m 0600 -o vagrant -g vagrant "$KUBECONFIG" /home/vagrant/.kube/config

# flannel, with the pod CIDR of the settings.
curl -fsSL https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml |
	sed "s|10.244.0.0/16|$pod_cidr|" | kubectl apply -f -

bash "$src/packaging/kubernetes/register.sh" register
kubectl get runtimeclass cocoon

kubectl wait --for=condition=Ready node --all --timeout=10m
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: cocoon-hello
spec:
  runtimeClassName: cocoon
  restartPolicy: Never
  containers:
  - name: hello
    image: busybox:1.36
    command: ["uname", "-r"]
YAML
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/cocoon-hello --timeout=10m
echo "pod cocoon-hello ran on guest kernel $(kubectl logs cocoon-hello)"
kubectl delete pod cocoon-hello --wait=false
