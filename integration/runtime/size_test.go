//go:build integration

package runtime_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCpusetSizesTheSandbox runs a container whose cpuset is "0-1" under
// runc and cocoon-runtime: both run it on two CPUs (the guest gets the
// vCPUs its cpuset names), where the guest used to have one and refuse
// the cpuset.
func TestCpusetSizesTheSandbox(t *testing.T) {
	s := baseSpec(t, "sh", "-c", "nproc; cat /proc/self/status | grep Cpus_allowed_list")
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.CPU = &specs.LinuxCPU{Cpus: "0-1"}
	bundle := writeBundle(t, s)
	var outs []string
	for i, r := range runtimes(t) {
		res := run(t, cmdOpts{}, r.bin, r.args("run", "--bundle", bundle, fmt.Sprintf("cpuset%d-%s", i, r.name))...)
		if res.code != 0 {
			t.Fatalf("%s: %v", r.name, res)
		}
		outs = append(outs, res.stdout)
	}
	if outs[0] != outs[1] || !strings.HasPrefix(outs[1], "2\n") {
		t.Errorf("runc printed %q, cocoon %q; want the same, on 2 CPUs", outs[0], outs[1])
	}
}

// TestMemoryLimitSizesTheSandbox: a 2 GiB memory limit gives the guest at
// least that much memory (the default guest has 1 GiB).
func TestMemoryLimitSizesTheSandbox(t *testing.T) {
	s := baseSpec(t, "sh", "-c", "grep MemTotal /proc/meminfo")
	limit := int64(2 << 30)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	r := mustRT(t, "run", "--bundle", writeBundle(t, s), "memsize")
	f := strings.Fields(r.stdout)
	if len(f) < 2 {
		t.Fatalf("output %q", r.stdout)
	}
	kib, _ := strconv.ParseInt(f[1], 10, 64)
	if kib*1024 < limit {
		t.Errorf("guest MemTotal %d KiB, want at least the limit, %d bytes", kib, limit)
	}
}
