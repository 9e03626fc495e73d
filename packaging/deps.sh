#!/bin/bash
# Installs the Debian packages that building and testing cocoon need
# (make deps; packaging/setup-host.sh --deps-only --test-deps), or the
# packages named as arguments (packaging/setup-host.sh's own lists).
# Idempotent and quiet when everything is already present.
#
# QEMU is 10.0 or later: Debian 13's own, on Debian 12 the one of its
# official backports (bookworm-backports, added to apt's sources here).
# For the tests (no arguments) it also unpacks Debian 12's QEMU 7.2 under
# $COCOON_CACHE/qemu-7.2, beside the system's (the suites cover it too;
# its package also brings the C virtiofsd that Debian 12 has no package of
# since QEMU 8 dropped it), and Debian's dynamically linked busybox under
# $COCOON_CACHE/busybox (it conflicts with busybox-static): the CRI
# validation suite's busybox image needs a shell that runs commands from
# PATH, where busybox-static's runs its own applets first.
set -euo pipefail

cache=${COCOON_CACHE:-/var/cache/cocoon}
# The oldest QEMU cocoon runs on by default; the one the tests also cover.
min_qemu=10.0
qemu72=7.2

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

test_deps=no
[ $# -eq 0 ] && test_deps=yes

export DEBIAN_FRONTEND=noninteractive
# shellcheck source=/dev/null # the host's
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
updated=no
# update refreshes the package lists: on a fresh machine (none yet), after a
# source was added, or once a day.
update() {
	if [ "$updated" = no ] && { [ "${1:-}" = now ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; }; then
		apt-get update -qq >/dev/null
		updated=yes
	fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed 's/^[0-9]*://'; }
older() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ] && [ "$1" != "$2" ]; }

qemu_wanted=no
missing=()
for p in "${pkgs[@]}"; do
	case $p in qemu-system-x86 | qemu-system-data)
		qemu_wanted=yes
		continue
		;;
	esac
	if ! installed "$p"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	update
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# QEMU 10: on Debian 12 from bookworm-backports (pinned to nothing else).
if [ "$qemu_wanted" = yes ]; then
	have=$(version_of qemu-system-x86)
	if ! installed qemu-system-x86 || older "$have" "$min_qemu"; then
		target=()
		if [ "$codename" = bookworm ]; then
			src=/etc/apt/sources.list.d/cocoon-bookworm-backports.sources
			if [ ! -e "$src" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
				printf '%s\n' '# Added by cocoon (packaging/deps.sh): QEMU 10 for Debian 12.' \
					'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
					'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$src"
				update now
			fi
			update
			target=(-t bookworm-backports)
		else
			update
		fi
		echo "deps: installing QEMU $min_qemu or later${target:+ from ${target[1]}}" >&2
		apt-get install -y -qq --no-install-recommends "${target[@]}" qemu-system-x86 qemu-system-data >/dev/null
		have=$(version_of qemu-system-x86)
		if older "$have" "$min_qemu"; then
			echo "deps: QEMU $have is older than $min_qemu; cocoon runs on it cold (no VM templates)" >&2
		fi
	fi
fi

# Debian's dynamically linked busybox, unpacked, for the tests.
if [ "$test_deps" = yes ] && [ ! -x "$cache/busybox/bin/busybox" ]; then
	update
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download -qq busybox 2>"$tmp/err"); then
		cat "$tmp/err" >&2
		exit 1
	fi
	echo "deps: unpacking Debian's busybox (dynamically linked) into $cache/busybox" >&2
	rm -rf "$cache/busybox.new"
	mkdir -p "$cache/busybox.new"
	dpkg-deb -x "$tmp"/busybox_*.deb "$cache/busybox.new"
	rm -rf "$tmp" "$cache/busybox"
	mv "$cache/busybox.new" "$cache/busybox"
fi

# QEMU 7.2 beside it, for the tests: Debian 12's packages, unpacked (each at
# its own 7.2 version: qemu-system-x86's carries binary rebuilds' suffixes).
if [ "$test_deps" = yes ] && [ ! -x "$cache/qemu-$qemu72/usr/bin/qemu-system-x86_64" ]; then
	update
	tmp=$(mktemp -d)
	for p in qemu-system-x86 qemu-system-common qemu-system-data; do
		v=$(apt-cache madison "$p" | awk -v want="1:$qemu72" 'index($3, want) == 1 {print $3; exit}')
		if [ -z "$v" ]; then
			echo "deps: no $p $qemu72 package to unpack (apt-cache madison $p)" >&2
			exit 1
		fi
		# apt warns that it downloads as root: shown only on failure.
		if ! (cd "$tmp" && apt-get download -qq "$p=$v" 2>"$tmp/err"); then
			cat "$tmp/err" >&2
			exit 1
		fi
	done
	echo "deps: unpacking QEMU $qemu72 into $cache/qemu-$qemu72" >&2
	rm -rf "$cache/qemu-$qemu72.new"
	mkdir -p "$cache/qemu-$qemu72.new"
	for d in "$tmp"/*.deb; do
		dpkg-deb -x "$d" "$cache/qemu-$qemu72.new"
	done
	rm -rf "$tmp" "$cache/qemu-$qemu72"
	mv "$cache/qemu-$qemu72.new" "$cache/qemu-$qemu72"
fi
