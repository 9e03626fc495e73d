package shimv2

import (
	"encoding/json"
	"fmt"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runc/types"
	"google.golang.org/protobuf/types/known/anypb"
)

// metricsFromJSON converts the agent's runc types.Stats (none: empty data)
// and the memory cgroup's OOM kill count to the cgroups Metrics that
// containerd expects of a shim: v1 when the guest's memory statistics are
// cgroup v1's, else v2 (the guest's own hierarchy).
func metricsFromJSON(data []byte, oomKills uint64) (*anypb.Any, error) {
	var st types.Stats
	if len(data) > 0 {
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("decoding stats: %w", err)
		}
	}
	raw := st.Memory.Raw
	if _, v1Keys := raw["total_inactive_file"]; v1Keys {
		m := metricsV1(&st)
		m.MemoryOomControl = &v1.MemoryOomControl{OomKill: oomKills}
		return typeurl.MarshalAnyToProto(m)
	}
	m := metricsV2(&st)
	m.MemoryEvents = &v2.MemoryEvents{OomKill: oomKills}
	return typeurl.MarshalAnyToProto(m)
}

func metricsV1(st *types.Stats) *v1.Metrics {
	raw := st.Memory.Raw
	m := &v1.Metrics{
		Pids: &v1.PidsStat{Current: st.Pids.Current, Limit: st.Pids.Limit},
		CPU: &v1.CPUStat{
			Usage: &v1.CPUUsage{
				Total:  st.CPU.Usage.Total,
				Kernel: st.CPU.Usage.Kernel,
				User:   st.CPU.Usage.User,
				PerCPU: st.CPU.Usage.Percpu,
			},
			Throttling: &v1.Throttle{
				Periods:          st.CPU.Throttling.Periods,
				ThrottledPeriods: st.CPU.Throttling.ThrottledPeriods,
				ThrottledTime:    st.CPU.Throttling.ThrottledTime,
			},
		},
		Memory: &v1.MemoryStat{
			Cache:                   raw["cache"],
			RSS:                     raw["rss"],
			RSSHuge:                 raw["rss_huge"],
			MappedFile:              raw["mapped_file"],
			Dirty:                   raw["dirty"],
			Writeback:               raw["writeback"],
			PgFault:                 raw["pgfault"],
			PgMajFault:              raw["pgmajfault"],
			InactiveAnon:            raw["inactive_anon"],
			ActiveAnon:              raw["active_anon"],
			InactiveFile:            raw["inactive_file"],
			ActiveFile:              raw["active_file"],
			Unevictable:             raw["unevictable"],
			HierarchicalMemoryLimit: raw["hierarchical_memory_limit"],
			TotalCache:              raw["total_cache"],
			TotalRSS:                raw["total_rss"],
			TotalInactiveFile:       raw["total_inactive_file"],
			TotalActiveFile:         raw["total_active_file"],
			TotalInactiveAnon:       raw["total_inactive_anon"],
			TotalActiveAnon:         raw["total_active_anon"],
			Usage:                   memoryEntryV1(st.Memory.Usage),
			Swap:                    memoryEntryV1(st.Memory.Swap),
			Kernel:                  memoryEntryV1(st.Memory.Kernel),
			KernelTCP:               memoryEntryV1(st.Memory.KernelTCP),
		},
	}
	return m
}

func memoryEntryV1(e types.MemoryEntry) *v1.MemoryEntry {
	return &v1.MemoryEntry{Limit: e.Limit, Usage: e.Usage, Max: e.Max, Failcnt: e.Failcnt}
}

func metricsV2(st *types.Stats) *v2.Metrics {
	raw := st.Memory.Raw
	return &v2.Metrics{
		Pids: &v2.PidsStat{Current: st.Pids.Current, Limit: st.Pids.Limit},
		CPU: &v2.CPUStat{
			UsageUsec:     st.CPU.Usage.Total / 1000,
			UserUsec:      st.CPU.Usage.User / 1000,
			SystemUsec:    st.CPU.Usage.Kernel / 1000,
			NrPeriods:     st.CPU.Throttling.Periods,
			NrThrottled:   st.CPU.Throttling.ThrottledPeriods,
			ThrottledUsec: st.CPU.Throttling.ThrottledTime / 1000,
		},
		Memory: &v2.MemoryStat{
			Anon:          raw["anon"],
			File:          raw["file"],
			KernelStack:   raw["kernel_stack"],
			Slab:          raw["slab"],
			Sock:          raw["sock"],
			Shmem:         raw["shmem"],
			FileMapped:    raw["file_mapped"],
			FileDirty:     raw["file_dirty"],
			FileWriteback: raw["file_writeback"],
			InactiveAnon:  raw["inactive_anon"],
			ActiveAnon:    raw["active_anon"],
			InactiveFile:  raw["inactive_file"],
			ActiveFile:    raw["active_file"],
			Unevictable:   raw["unevictable"],
			Pgfault:       raw["pgfault"],
			Pgmajfault:    raw["pgmajfault"],
			Usage:         st.Memory.Usage.Usage,
			UsageLimit:    st.Memory.Usage.Limit,
			SwapUsage:     st.Memory.Swap.Usage,
			SwapLimit:     st.Memory.Swap.Limit,
		},
	}
}
