package container

import (
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/types"
)

// Stats is runc's types.Stats: what runc events --stats prints under "data".
type Stats = types.Stats

// convertStats is runc's convertLibcontainerStats (events.go, in runc's main
// package), without Intel RDT, which containers here cannot have.
func convertStats(ls *libcontainer.Stats) *Stats {
	var s Stats
	s.Hugetlb = make(map[string]types.Hugetlb)
	s.NetworkInterfaces = ls.Interfaces
	cg := ls.CgroupStats
	if cg == nil {
		return &s
	}
	s.Pids.Current = cg.PidsStats.Current
	s.Pids.Limit = cg.PidsStats.Limit

	s.CPU.Usage.Kernel = cg.CpuStats.CpuUsage.UsageInKernelmode
	s.CPU.Usage.User = cg.CpuStats.CpuUsage.UsageInUsermode
	s.CPU.Usage.Total = cg.CpuStats.CpuUsage.TotalUsage
	s.CPU.Usage.Percpu = cg.CpuStats.CpuUsage.PercpuUsage
	s.CPU.Usage.PercpuKernel = cg.CpuStats.CpuUsage.PercpuUsageInKernelmode
	s.CPU.Usage.PercpuUser = cg.CpuStats.CpuUsage.PercpuUsageInUsermode
	s.CPU.Throttling.Periods = cg.CpuStats.ThrottlingData.Periods
	s.CPU.Throttling.ThrottledPeriods = cg.CpuStats.ThrottlingData.ThrottledPeriods
	s.CPU.Throttling.ThrottledTime = cg.CpuStats.ThrottlingData.ThrottledTime
	s.CPU.PSI = cg.CpuStats.PSI

	s.CPUSet = types.CPUSet(cg.CPUSetStats)

	s.Memory.Cache = cg.MemoryStats.Cache
	s.Memory.Kernel = convertMemoryEntry(cg.MemoryStats.KernelUsage)
	s.Memory.KernelTCP = convertMemoryEntry(cg.MemoryStats.KernelTCPUsage)
	s.Memory.Swap = convertMemoryEntry(cg.MemoryStats.SwapUsage)
	s.Memory.Usage = convertMemoryEntry(cg.MemoryStats.Usage)
	s.Memory.Raw = cg.MemoryStats.Stats
	s.Memory.PSI = cg.MemoryStats.PSI

	b := cg.BlkioStats
	s.Blkio.IoServiceBytesRecursive = convertBlkioEntry(b.IoServiceBytesRecursive)
	s.Blkio.IoServicedRecursive = convertBlkioEntry(b.IoServicedRecursive)
	s.Blkio.IoQueuedRecursive = convertBlkioEntry(b.IoQueuedRecursive)
	s.Blkio.IoServiceTimeRecursive = convertBlkioEntry(b.IoServiceTimeRecursive)
	s.Blkio.IoWaitTimeRecursive = convertBlkioEntry(b.IoWaitTimeRecursive)
	s.Blkio.IoMergedRecursive = convertBlkioEntry(b.IoMergedRecursive)
	s.Blkio.IoTimeRecursive = convertBlkioEntry(b.IoTimeRecursive)
	s.Blkio.SectorsRecursive = convertBlkioEntry(b.SectorsRecursive)
	s.Blkio.PSI = b.PSI

	for k, v := range cg.HugetlbStats {
		s.Hugetlb[k] = types.Hugetlb{Usage: v.Usage, Max: v.MaxUsage, Failcnt: v.Failcnt}
	}
	return &s
}

func convertMemoryEntry(c cgroups.MemoryData) types.MemoryEntry {
	return types.MemoryEntry{Limit: c.Limit, Usage: c.Usage, Max: c.MaxUsage, Failcnt: c.Failcnt}
}

func convertBlkioEntry(c []cgroups.BlkioStatEntry) []types.BlkioEntry {
	var out []types.BlkioEntry
	for _, e := range c {
		out = append(out, types.BlkioEntry(e))
	}
	return out
}
