package hostcgroup

import (
	"path/filepath"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/cgroups/fscommon"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The overhead cgroup holds the VM, so its limits are the container's plus
// what the VM costs beyond the container (Kata users who set the host limit
// to the container's limit saw QEMU OOM-killed):
const (
	// MemoryOverheadMiB covers QEMU itself (TCG's code cache, device
	// state), the guest kernel and agent, cocoon-proxy, the cocoon-relays
	// and virtiofsd. Measured: an idle QEMU is ~150 MiB PSS with 2 GiB
	// guests, of which ~70 MiB is touched guest RAM (a third of it the
	// guest kernel's page array, which grows with the guest's size: see
	// memoryOverhead).
	MemoryOverheadMiB = 256
	// PidsOverhead is the host tasks that are not the container's: QEMU's
	// vCPU, I/O and worker threads (its thread pool alone grows to 64), and
	// the threads of the Go helpers (proxy, one relay per process).
	PidsOverhead = 1024
	// CPUOverheadMilli is the CPU time QEMU's device emulation and the
	// helpers get beyond the container's quota, in thousandths of a CPU
	// (Kata documents 250m of pod overhead).
	CPUOverheadMilli = 250
)

// memoryOverhead is the memory the sandbox's host processes need beyond the
// container's own, for a guest of guestMiB: MemoryOverheadMiB plus the guest
// kernel's page array (64 bytes per 4 KiB page: 1/64 of its memory).
func memoryOverhead(guestMiB int) int64 {
	return (int64(MemoryOverheadMiB) + int64(guestMiB)/64) << 20
}

// vmmDevices are the devices the host processes open: QEMU (/dev/kvm,
// /dev/net/tun, vhost), the relays' terminals, and the usual character
// devices. They are allowed whatever the container's own rules say (which
// apply inside the guest too).
var vmmDevices = []devices.Rule{
	{Type: devices.CharDevice, Major: 1, Minor: 3},                  // null
	{Type: devices.CharDevice, Major: 1, Minor: 5},                  // zero
	{Type: devices.CharDevice, Major: 1, Minor: 7},                  // full
	{Type: devices.CharDevice, Major: 1, Minor: 8},                  // random
	{Type: devices.CharDevice, Major: 1, Minor: 9},                  // urandom
	{Type: devices.CharDevice, Major: 5, Minor: 0},                  // tty
	{Type: devices.CharDevice, Major: 5, Minor: 2},                  // ptmx
	{Type: devices.CharDevice, Major: 136, Minor: devices.Wildcard}, // pts
	{Type: devices.CharDevice, Major: 10, Minor: 200},               // net/tun
	{Type: devices.CharDevice, Major: 10, Minor: 229},               // fuse
	{Type: devices.CharDevice, Major: 10, Minor: 232},               // kvm
	{Type: devices.CharDevice, Major: 10, Minor: 238},               // vhost-net
	{Type: devices.CharDevice, Major: 10, Minor: 241},               // vhost-vsock
}

// Resources is the accounting rule of the overhead cgroup: the host limits
// of the VM of a container with limits r in a guest of guestMiB.
//
//   - memory: min(limit, guest memory) + memoryOverhead(guest memory); the
//     swap limit keeps the container's swap allowance on top of that
//     (unlimited stays unlimited); nothing when the container has no limit.
//   - pids: limit + PidsOverhead.
//   - cpu: shares as given; quota + CPUOverheadMilli of the period; cpuset
//     as given.
//   - devices: the container's rules plus vmmDevices; none when it has none.
//
// Everything else (block I/O, hugepages, network priorities) applies inside
// the guest only.
func Resources(r *specs.LinuxResources, guestMiB int) *cgroups.Resources {
	res := &cgroups.Resources{SkipDevices: true}
	if r == nil {
		return res
	}
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		limit := *m.Limit
		if g := int64(guestMiB) << 20; guestMiB > 0 && limit > g {
			limit = g
		}
		res.Memory = limit + memoryOverhead(guestMiB)
		if m.Swap != nil {
			switch {
			case *m.Swap < 0:
				res.MemorySwap = -1
			case *m.Swap >= *m.Limit:
				res.MemorySwap = res.Memory + (*m.Swap - *m.Limit)
			}
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		limit := *p.Limit + PidsOverhead
		res.PidsLimit = &limit
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			res.CpuShares = *c.Shares
		}
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			res.CpuPeriod = period
			res.CpuQuota = *c.Quota + int64(period*CPUOverheadMilli/1000)
		}
		res.CpusetCpus = c.Cpus
		res.CpusetMems = c.Mems
	}
	setDevices(res, r.Devices)
	return res
}

// capCPUQuota holds the overhead cgroup's CPU quota to its ancestors'
// on cgroup v1, where the kernel refuses (EINVAL) a quota above an
// ancestor's: a Kubernetes pod's cgroup carries the sum of its containers'
// limits and the RuntimeClass's CPU overhead, which can be less than
// CPUOverheadMilli (CRI-O's conmon handler sizes the VM by a pod's first
// container, whose own quota is in res). On cgroup v2 a child's cpu.max
// may exceed its parent's, which still binds.
func (g *group) capCPUQuota(res *cgroups.Resources) {
	dir, ok := g.st.Paths["cpu"]
	if !g.overhead || !ok || res.CpuQuota <= 0 || res.CpuPeriod == 0 {
		return
	}
	if ceiling := ancestorsCPUQuota(dir, res.CpuPeriod); ceiling > 0 && ceiling < res.CpuQuota {
		res.CpuQuota = ceiling
	}
}

// ancestorsCPUQuota is the smallest CPU bandwidth of the ancestors of the
// cgroup v1 directory dir, as a quota of period; 0 when none has a quota.
// It reads up to the hierarchy's root (the first directory without
// cpu.cfs_quota_us).
func ancestorsCPUQuota(dir string, period uint64) int64 {
	var least int64
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		quota, err := fscommon.GetCgroupParamInt(d, "cpu.cfs_quota_us")
		if err != nil {
			break
		}
		p, err := fscommon.GetCgroupParamInt(d, "cpu.cfs_period_us")
		if err != nil || quota <= 0 || p <= 0 {
			continue
		}
		if q := quota * int64(period) / p; least == 0 || q < least {
			least = q
		}
	}
	return least
}

// Exact is the limits of the caller's cgroup: the container's, as runc
// writes them (libcontainer/specconv): memory limit, reservation, swap and
// swappiness; CPU shares (a weight on cgroup v2), quota, period, realtime
// runtime and period, idle, burst and cpuset; the pids limit. The
// difference is devices: the container's rules plus vmmDevices, for the
// relays' terminals. Block I/O, hugepages, network priorities and the OOM
// killer's switch apply in the guest only, as for the overhead cgroup:
// the caller's cgroup holds the relays, not the container's processes.
func Exact(r *specs.LinuxResources) *cgroups.Resources {
	res := &cgroups.Resources{SkipDevices: true}
	if r == nil {
		return res
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			res.Memory = *m.Limit
		}
		if m.Reservation != nil {
			res.MemoryReservation = *m.Reservation
		}
		if m.Swap != nil {
			res.MemorySwap = *m.Swap
		}
		res.MemorySwappiness = m.Swappiness
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			res.CpuShares = *c.Shares
		}
		if c.Quota != nil {
			res.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			res.CpuPeriod = *c.Period
		}
		if c.RealtimeRuntime != nil {
			res.CpuRtRuntime = *c.RealtimeRuntime
		}
		if c.RealtimePeriod != nil {
			res.CpuRtPeriod = *c.RealtimePeriod
		}
		res.CPUIdle = c.Idle
		res.CpuBurst = c.Burst
		res.CpusetCpus = c.Cpus
		res.CpusetMems = c.Mems
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		limit := *p.Limit
		res.PidsLimit = &limit
	}
	setDevices(res, r.Devices)
	return res
}

// setDevices gives res the container's device rules plus vmmDevices; none
// (no devices cgroup written) when the container has none.
func setDevices(res *cgroups.Resources, rules []specs.LinuxDeviceCgroup) {
	if len(rules) == 0 {
		return
	}
	res.SkipDevices = false
	for _, d := range rules {
		rule := &devices.Rule{
			Type:        devices.WildcardDevice,
			Major:       devices.Wildcard,
			Minor:       devices.Wildcard,
			Permissions: devices.Permissions(d.Access),
			Allow:       d.Allow,
		}
		if d.Type != "" {
			rule.Type = devices.Type(d.Type[0])
		}
		if d.Major != nil {
			rule.Major = *d.Major
		}
		if d.Minor != nil {
			rule.Minor = *d.Minor
		}
		if rule.Permissions == "" {
			rule.Permissions = "rwm"
		}
		res.Devices = append(res.Devices, rule)
	}
	for _, d := range vmmDevices {
		rule := d
		rule.Permissions, rule.Allow = "rwm", true
		res.Devices = append(res.Devices, &rule)
	}
}
