#!/bin/bash
# Provisioning of the development VM (Vagrantfile): packaging/setup-host.sh
# with Docker, then proof that Docker runs containers in cocoon VMs.
#
#   provision-dev.sh SRC    (SRC: the synced source tree)
set -euo pipefail

src=${1:?usage: provision-dev.sh SRC}
cd "$src"
bash packaging/setup-host.sh --with-docker --test-deps --register=docker,containerd

# dockerd reloads daemon.json on SIGHUP (register.sh sends it); a dockerd
# that was not running yet reads it at start.
systemctl enable --now docker
echo "docker info: runtimes"
docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' | tee /dev/stderr | grep -qw cocoon

# A busybox image from Debian's busybox-static: no registry needed.
if ! docker image inspect cocoon-busybox >/dev/null 2>&1; then
	rootfs=$(mktemp -d)
	mkdir -p "$rootfs/bin"
	cp /bin/busybox "$rootfs/bin/busybox"
	for t in sh uname cat echo ls; do ln -s busybox "$rootfs/bin/$t"; done
	tar -C "$rootfs" -c . | docker import - cocoon-busybox
	rm -rf "$rootfs"
fi
echo "host kernel:      $(uname -r)"
echo "container kernel: $(docker run --rm --runtime cocoon --network none cocoon-busybox uname -r)"
