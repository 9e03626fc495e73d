#!/bin/bash
# ab.sh: cold `cocoon-runtime run` of a bundle, two builds alternating.
#
#   bench/ab.sh OLD NEW BUNDLE [RUNS]
#
# OLD and NEW are checkouts built with `make build image` (their bin/ and
# out/); both use NEW's kernel, and the QEMU that $QEMU names (default: the
# system's), and boot cold (templates off) unless DEFAULTS=1, which leaves
# each build its defaults. BUNDLE is an OCI bundle (e.g. busybox `true`).
# Prints min / median / max seconds of each build.
set -euo pipefail
new=$(realpath "$2") bundle=$(realpath "$3") runs=${4:-12}
declare -A dirs=([old]=$(realpath "$1") [new]=$new)
work=$(mktemp -d)
# With DEFAULTS=1 each build may keep templates and a pool, in a directory
# of the bench's own that it destroys at the end.
cleanup() {
	if [ "${DEFAULTS:-}" = 1 ]; then
		for side in old new; do
			"${dirs[$side]}/bin/cocoon-runtime" --config "$work/$side.toml" --root "$work/root" factory destroy >/dev/null 2>&1 || true
		done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
for side in old new; do
	dir=${dirs[$side]}
	templates='templates = false'
	[ "${DEFAULTS:-}" = 1 ] && templates="template_dir = \"$work/templates-$side\""
	printf '[hypervisor]\npath = "%s"\nkernel = "%s"\ninitrd = "%s"\n%s\n[runtime]\nproxy_path = "%s"\n' \
		"${QEMU:-/usr/bin/qemu-system-x86_64}" "$new/out/vmlinux" "$dir/out/initrd.img" "$templates" "$dir/bin/cocoon-proxy" >"$work/$side.toml"
done
for _ in $(seq "$runs"); do
	for side in old new; do
		dir=${dirs[$side]}
		start=$(date +%s%N)
		"$dir/bin/cocoon-runtime" --config "$work/$side.toml" --root "$work/root" run --bundle "$bundle" "ab-$side" >/dev/null
		echo "$side $(( ($(date +%s%N) - start) / 1000000 ))" >>"$work/times"
	done
done
for side in old new; do
	grep "^$side " "$work/times" | awk '{print $2 / 1000}' | sort -n |
		awk -v s="$side" '{a[NR] = $1} END {printf "%s: %.2f / %.2f / %.2f s (%d runs)\n", s, a[1], a[int((NR + 1) / 2)], a[NR], NR}'
done
