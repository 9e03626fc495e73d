#!/bin/bash
# Builds the cocoon guest kernel from Debian's linux-source-6.1: allnoconfig plus
# the fragments in kernel/fragments/, everything built in, no modules.
#
# The result is cached outside the source tree, keyed by a hash of the fragments,
# the kernel source version and cache_epoch (bump it when a change to this script
# changes what it builds), so a rebuild only happens when one of them changes.
# Object files are kept in one build directory per source version, so a change
# of fragments rebuilds only what it touches. Prints the directory holding
# vmlinux, bzImage, config and release.
#
# Environment: COCOON_CACHE (default /var/cache/cocoon), KERNEL_TARBALL (default
# /usr/src/linux-source-6.1.tar.xz), JOBS (default nproc), KERNEL_FRAGMENTS (a
# directory of *.conf fragments instead of kernel/fragments: make bench builds
# another revision's kernel with it, into the same cache).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${COCOON_CACHE:-/var/cache/cocoon}"
tarball="${KERNEL_TARBALL:-/usr/src/linux-source-6.1.tar.xz}"
jobs="${JOBS:-$(nproc)}"

log() { echo "kernel: $*" >&2; }
die() { echo "kernel: error: $*" >&2; exit 1; }

fragments="${KERNEL_FRAGMENTS:-$here/fragments}"
[ -d "$fragments" ] || die "fragments directory $fragments not found"
fragments="$(cd "$fragments" && pwd)"
[ -f "$tarball" ] || die "kernel source $tarball not found (apt-get install linux-source-6.1)"
srcver="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s-%Y "$tarball")"

cache_epoch=1
key="$( (cat "$fragments"/*.conf; echo "$srcver $cache_epoch") | sha256sum | cut -c1-16)"
out="$cache/kernel/$key"
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ -f "$out/release" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache/src" "$cache/kernel" "$cache/build"
# One build at a time per cache: concurrent `make test` runs share it.
exec 9>"$cache/build/.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ -f "$out/release" ]; then
	echo "$out"
	exit 0
fi
src="$cache/src/linux-source-$srcver"
if [ ! -f "$src/Makefile" ]; then
	log "extracting $tarball"
	tmp="$(mktemp -d "$cache/src/.extract.XXXXXX")"
	tar -C "$tmp" -xJf "$tarball"
	rm -rf "$src"
	mv "$tmp"/linux-source-6.1 "$src"
	rm -rf "$tmp"
fi

build="$cache/build/linux-$srcver"
mkdir -p "$build"
merged="$build/fragments.conf"
cat "$fragments"/*.conf > "$merged"

rm -f "$build/.config"
log "configuring ($key): allnoconfig + $(cd "$fragments" && echo *.conf)"
make -s -C "$src" O="$build" KCONFIG_ALLCONFIG="$merged" allnoconfig >/dev/null

# Every requested option must have survived the merge: Kconfig silently drops
# options whose dependencies are missing.
missing=0
while IFS= read -r line; do
	case "$line" in ''|'#'*) continue ;; esac
	opt="${line%%=*}"
	want="${line#*=}"
	got="$(grep -E "^${opt}=" "$build/.config" | head -n1 | cut -d= -f2- || true)"
	if [ "$got" != "$want" ]; then
		echo "kernel: error: $opt requested $want, got '${got:-unset}'" >&2
		missing=1
	fi
done < "$merged"
[ "$missing" = 0 ] || die "configuration is missing options (see above); fix $fragments"

if [ "${1:-}" = "--config-only" ]; then
	echo "$build/.config"
	exit 0
fi

log "building with $jobs jobs (about 15 minutes on 2 cores under no cache)"
start=$(date +%s)
make -s -C "$src" O="$build" -j"$jobs" vmlinux bzImage >"$build/build.log" 2>&1 ||
	{ tail -n 40 "$build/build.log" >&2; die "build failed; log in $build/build.log"; }
log "built in $(( $(date +%s) - start ))s"

tmpout="$(mktemp -d "$cache/kernel/.$key.XXXXXX")"
cp "$build/vmlinux" "$tmpout/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$tmpout/bzImage"
cp "$build/.config" "$tmpout/config"
make -s -C "$src" O="$build" kernelrelease > "$tmpout/release"
chmod 0755 "$tmpout"
rm -rf "$out"
mv "$tmpout" "$out"
echo "$out"
