package shimv2

import (
	"encoding/json"
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runc/types"
)

func TestMetrics(t *testing.T) {
	stats := func(raw map[string]uint64) []byte {
		st := types.Stats{
			CPU:    types.Cpu{Usage: types.CpuUsage{Total: 5_000_000, User: 3_000_000, Kernel: 2_000_000}},
			Memory: types.Memory{Usage: types.MemoryEntry{Usage: 1 << 20, Limit: 256 << 20}, Raw: raw},
			Pids:   types.Pids{Current: 3, Limit: 100},
		}
		data, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	t.Run("v2", func(t *testing.T) {
		a, err := metricsFromJSON(stats(map[string]uint64{"anon": 4096, "inactive_file": 8192}), 2)
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := v.(*v2.Metrics)
		if !ok {
			t.Fatalf("%T, want v2 metrics", v)
		}
		if m.CPU.UsageUsec != 5000 || m.Memory.Usage != 1<<20 || m.Memory.UsageLimit != 256<<20 || m.Memory.InactiveFile != 8192 || m.Pids.Current != 3 || m.MemoryEvents.GetOomKill() != 2 {
			t.Errorf("metrics %+v", m)
		}
	})
	t.Run("v1", func(t *testing.T) {
		a, err := metricsFromJSON(stats(map[string]uint64{"total_inactive_file": 8192, "rss": 4096}), 1)
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := v.(*v1.Metrics)
		if !ok {
			t.Fatalf("%T, want v1 metrics", v)
		}
		if m.CPU.Usage.Total != 5_000_000 || m.Memory.Usage.Usage != 1<<20 || m.Memory.TotalInactiveFile != 8192 || m.Memory.RSS != 4096 || m.MemoryOomControl.GetOomKill() != 1 {
			t.Errorf("metrics %+v", m)
		}
	})
	t.Run("exited", func(t *testing.T) {
		// No statistics from the guest: the OOM kills alone, as containerd
		// 2.x reads them after an exit with 137.
		a, err := metricsFromJSON(nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := v.(*v2.Metrics); !ok || m.MemoryEvents.GetOomKill() != 1 {
			t.Errorf("%T %+v, want v2 metrics with one OOM kill", v, v)
		}
	})
	if _, err := metricsFromJSON([]byte("{"), 0); err == nil {
		t.Error("bad JSON: no error")
	}
}
