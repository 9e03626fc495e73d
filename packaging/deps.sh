#!/bin/bash
# Installs the Debian packages that building and testing cocoon need
# (make deps; packaging/setup-host.sh --deps-only --test-deps), or the
# packages named as arguments (packaging/setup-host.sh's own lists).
# Idempotent and quiet when everything is already present.
set -euo pipefail

pkgs=(
	qemu-system-x86 qemu-system-data   # the VMM and its firmware (qboot)
	linux-source-6.1                   # guest kernel source
	build-essential flex bison bc libelf-dev libssl-dev xz-utils   # kernel build
	libseccomp-dev                     # static libseccomp for the agent
	busybox-static                     # test container root file systems
	protobuf-compiler                  # make proto
	iproute2                           # tests: namespaces, veth, tc
	runc                               # tests: cocoon-runtime beside runc
	docker.io                          # tests: a private dockerd with cocoon as a runtime (brings containerd)
	shellcheck                         # tests: every shell script
	vagrant vagrant-libvirt            # tests: vagrant validate of the Vagrantfiles (libvirt is their default provider)
	conmon                             # tests: cocoon-runtime under CRI-O's container monitor
	podman                             # tests: podman (4.3) with cocoon-runtime as its OCI runtime (integration/podman)
	iperf3                             # bench: TCP throughput between a namespace and a container
	containernetworking-plugins        # tests: CNI bridge + host-local for CRI pod networks
	iptables nftables bridge-utils ipset ipvsadm   # tests: the distribution's network tools in a test image (testutil.NetToolsRootfs)
)
if [ $# -gt 0 ]; then
	pkgs=("$@")
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them at most once a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
	apt-get update -qq >/dev/null
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
