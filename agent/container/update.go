package container

import (
	"context"
	"fmt"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update changes the container's cgroup limits as runc update -r does: the
// CPU, memory, pids, block I/O weight and unified (cgroup v2) settings that
// r sets; CPU quota and period left out keep their values.
func (c *Container) Update(ctx context.Context, r *specs.LinuxResources) error {
	if err := checkResources(r); err != nil {
		return fmt.Errorf("updating container %s: %w", c.id, err)
	}
	if len(r.Devices) > 0 {
		return invalidf("updating container %s: device rules cannot be updated", c.id)
	}
	config := c.lc.Config()
	// Config shares the cgroup configuration with the container: copy what
	// changes, so that a failed update leaves the old values to restore.
	cg := *config.Cgroups
	res := *cg.Resources
	cg.Resources = &res
	config.Cgroups = &cg
	applyResources(&res, r)
	if err := c.lc.Set(config); err != nil {
		return fmt.Errorf("updating container %s: %w", c.id, stateError(err))
	}
	return nil
}

// applyResources is the core of runc's update command.
func applyResources(res *cgroups.Resources, r *specs.LinuxResources) {
	memory, cpu, pids := r.Memory, r.CPU, r.Pids
	if memory == nil {
		memory = &specs.LinuxMemory{}
	}
	if cpu == nil {
		cpu = &specs.LinuxCPU{}
	}
	if pids == nil {
		pids = &specs.LinuxPids{}
	}
	if memory.Limit != nil && *memory.Limit == -1 && memory.Swap == nil {
		// "unable to set swap limit without memory limit" otherwise.
		zero := int64(0)
		memory.Swap = &zero
	}
	if cpu.Idle != nil && cpu.Shares == nil {
		zero := uint64(0)
		cpu.Shares = &zero
	}
	if b := r.BlockIO; b != nil {
		if b.Weight != nil {
			res.BlkioWeight = *b.Weight
		}
		if b.LeafWeight != nil {
			res.BlkioLeafWeight = *b.LeafWeight
		}
	}
	var (
		period uint64
		quota  int64
	)
	if cpu.Period != nil {
		period = *cpu.Period
	}
	if cpu.Quota != nil {
		quota = *cpu.Quota
	}
	switch {
	case (period == 0) == (quota == 0):
		res.CpuPeriod, res.CpuQuota = period, quota
	case period != 0:
		res.CpuPeriod = period
	default:
		res.CpuQuota = quota
	}
	res.CpuBurst = cpu.Burst
	if cpu.Shares != nil {
		res.CpuShares = *cpu.Shares
		res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*cpu.Shares)
	}
	if cpu.RealtimePeriod != nil {
		res.CpuRtPeriod = *cpu.RealtimePeriod
	}
	if cpu.RealtimeRuntime != nil {
		res.CpuRtRuntime = *cpu.RealtimeRuntime
	}
	res.CpusetCpus = cpu.Cpus
	res.CpusetMems = cpu.Mems
	res.CPUIdle = cpu.Idle
	if memory.Limit != nil {
		res.Memory = *memory.Limit
	}
	if memory.Reservation != nil {
		res.MemoryReservation = *memory.Reservation
	}
	if memory.Swap != nil {
		res.MemorySwap = *memory.Swap
	}
	if memory.CheckBeforeUpdate != nil {
		res.MemoryCheckBeforeUpdate = *memory.CheckBeforeUpdate
	}
	res.PidsLimit = pids.Limit
	res.Unified = r.Unified
}
