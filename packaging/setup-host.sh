#!/bin/bash
# Sets up a Debian 12 (or Ubuntu) host for cocoon: installs the packages it
# needs, builds cocoon (binaries, guest kernel, initrd), installs it and
# registers it with the container engines found here. CI runs this same
# script (make deps: --deps-only --test-deps; integration/packaging: the
# whole of it into a DESTDIR), and so does the Vagrant development VM.
#
#   packaging/setup-host.sh [options]
#     --deps-only        install packages, then stop (no build, install, registration)
#     --test-deps        also the packages the tests need (packaging/deps.sh's list)
#     --with-docker      also install Docker (docker.io, which brings containerd)
#     --with-containerd  also install containerd
#     --with-vagrant     also install Vagrant with its libvirt provider (the
#                        plugin and libvirtd) for the development VMs
#                        (Vagrantfile, packaging/vagrant/k8s)
#     --register=LIST    engines to register with, comma separated (docker,
#                        containerd, crio, kubernetes), "auto" (default: every
#                        one installed here) or "none"
#     --uninstall        unregister (from the engines of --register) and uninstall
#
# Environment: PREFIX (/usr/local), DESTDIR (empty), SHAREDIR
# (/usr/share/cocoon) and CONFDIR (/etc/cocoon) as for `make install`; the
# variables of packaging/*/register.sh (DOCKER_DAEMON_JSON,
# CONTAINERD_CONFIG, CRIO_DROPIN_DIR, RUNTIMECLASS_OUT, ...) to move the
# files they edit; GO_VERSION / GO_URL for the Go toolchain when the host
# has none new enough. Every step is idempotent: running it again changes
# nothing that is already in place.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps_only=no test_deps=no uninstall=no register=auto
extra=()
for arg in "$@"; do
	case $arg in
	--deps-only) deps_only=yes ;;
	--test-deps) test_deps=yes ;;
	--with-docker) extra+=(docker.io) ;;
	--with-containerd) extra+=(containerd) ;;
	--with-vagrant) extra+=(vagrant vagrant-libvirt libvirt-daemon-system) ;;
	--register=*) register=${arg#--register=} ;;
	--uninstall) uninstall=yes ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "setup-host: unknown option $arg (--help lists them)" >&2
		exit 2
		;;
	esac
done

log() { echo "setup-host: $*" >&2; }

export PREFIX=${PREFIX:-/usr/local}
export DESTDIR=${DESTDIR:-}
export SHAREDIR=${SHAREDIR:-/usr/share/cocoon}
export CONFDIR=${CONFDIR:-/etc/cocoon}
# Registrations name the installed paths, without DESTDIR.
export COCOON_BINDIR=${COCOON_BINDIR:-$PREFIX/bin}
# The runtime reads /etc/cocoon/configuration.toml by itself; another
# CONFDIR is passed to it (docker: runtimeArgs --config; crio: both handlers).
if [ "$CONFDIR" != /etc/cocoon ]; then
	export COCOON_CONFIG=$CONFDIR/configuration.toml
else
	unset COCOON_CONFIG
fi

engines() {
	case $register in
	none) ;;
	auto) ;; # packaging/register.sh picks the installed ones
	*) tr ',' ' ' <<<"$register" ;;
	esac
}

if [ "$uninstall" = yes ]; then
	if [ "$register" != none ]; then
		# shellcheck disable=SC2046 # one word per engine
		bash "$top/packaging/register.sh" unregister $(engines)
	fi
	make -C "$top" --no-print-directory uninstall
	log "cocoon uninstalled"
	exit 0
fi

# 1. Packages. The host needs QEMU; building needs Go, the kernel source and
# its build tools, and libseccomp for the static agent.
host_pkgs=(
	qemu-system-x86 qemu-system-data # the VMM and its firmware (qboot)
	iproute2                         # tap devices and tc for container networks
	"${KERNEL_SOURCE_PKG:-linux-source-6.1}" # guest kernel source (Debian 12; elsewhere set it and KERNEL_TARBALL)
	build-essential flex bison bc libelf-dev libssl-dev xz-utils
	libseccomp-dev   # static libseccomp for the agent
	git ca-certificates curl
)
bash "$top/packaging/deps.sh" "${host_pkgs[@]}" ${extra[@]+"${extra[@]}"}
if [ "$test_deps" = yes ]; then
	bash "$top/packaging/deps.sh"
fi

# Go: the version go.mod asks for, from go.dev when the host has none new
# enough (Debian 12's golang-go is 1.19).
want_go=${GO_VERSION:-$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$top/go.mod")}
have_go=$(PATH=$PATH:/usr/local/go/bin go env GOVERSION 2>/dev/null | sed 's/^go//' || true)
if [ -z "$have_go" ] || [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -n1)" != "$want_go" ]; then
	url=${GO_URL:-https://go.dev/dl/go$want_go.linux-amd64.tar.gz}
	log "installing Go $want_go from $url"
	rm -rf /usr/local/go.new && mkdir -p /usr/local/go.new
	curl -fsSL "$url" | tar -xz -C /usr/local/go.new --strip-components=1
	rm -rf /usr/local/go && mv /usr/local/go.new /usr/local/go
	ln -sf /usr/local/go/bin/go /usr/local/bin/go
fi
export PATH=$PATH:/usr/local/go/bin
[ "$deps_only" = yes ] && exit 0

# 2. Build: binaries, guest kernel (cached), initrd. 3. Install.
make -C "$top" --no-print-directory build kernel image
make -C "$top" --no-print-directory install

# 4. Register with the engines.
if [ "$register" != none ]; then
	# shellcheck disable=SC2046 # one word per engine
	bash "$top/packaging/register.sh" register $(engines)
fi

# 5. Check the host, where the install is live (not into a DESTDIR).
if [ -z "$DESTDIR" ]; then
	"$PREFIX/bin/cocoon-runtime" check
fi
log "cocoon installed: $DESTDIR$PREFIX/bin/cocoon-runtime"
