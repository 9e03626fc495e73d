//go:build integration

package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/hostcgroup"
)

// cgroupFiles are the limits read back from the cgroup at
// linux.cgroupsPath, by controller (v1) or in the one v2 directory.
func cgroupFiles() [][2]string {
	if cgroups.IsCgroup2UnifiedMode() {
		return [][2]string{
			{"", "memory.max"}, {"", "memory.low"}, {"", "memory.swap.max"},
			{"", "cpu.max"}, {"", "cpu.weight"}, {"", "pids.max"},
			{"", "cpuset.cpus"}, {"", "cpuset.mems"},
		}
	}
	files := [][2]string{
		{"memory", "memory.limit_in_bytes"}, {"memory", "memory.soft_limit_in_bytes"},
		{"cpu", "cpu.cfs_quota_us"}, {"cpu", "cpu.cfs_period_us"}, {"cpu", "cpu.shares"},
		{"pids", "pids.max"}, {"cpuset", "cpuset.cpus"}, {"cpuset", "cpuset.mems"},
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		files = append(files, [2]string{"memory", "memory.memsw.limit_in_bytes"})
	}
	return files
}

// cgroupDir is the directory of the cgroup path in controller ctrl's
// hierarchy ("" for v2).
func cgroupDir(ctrl, path string) string {
	if ctrl == "" {
		return filepath.Join("/sys/fs/cgroup", path)
	}
	return filepath.Join("/sys/fs/cgroup", ctrl, path)
}

// readCgroup reads the files of cgroupFiles at path: "ctrl/file=value"
// lines, a missing file as "missing".
func readCgroup(path string) string {
	var lines []string
	for _, f := range cgroupFiles() {
		v := "missing"
		if b, err := os.ReadFile(filepath.Join(cgroupDir(f[0], path), f[1])); err == nil {
			v = strings.TrimSpace(string(b))
		}
		lines = append(lines, f[1]+"="+v)
	}
	return strings.Join(lines, "\n")
}

// TestCgroupSameAsRunc runs the same bundle, with a cgroups path and
// limits, under runc and then cocoon-runtime: the cgroup at the path holds
// the same values (memory, CPU quota, period and shares, pids, cpuset),
// before and after the same update, and the container's PID is in it, as
// what reads a container's cgroup by PID (docker stats through the runc
// shim) expects. The VM is accounted beside it, in the overhead cgroup with
// the VM's costs added; delete leaves neither.
func TestCgroupSameAsRunc(t *testing.T) {
	rts := runtimes(t)
	parent := fmt.Sprintf("/cocoon-cgcmp-%d", os.Getpid())
	path := parent + "/ctr"
	s := baseSpec(t, "sleep", "600")
	s.Linux.CgroupsPath = path
	mem, reservation, quota, period, shares, pids := int64(64<<20), int64(32<<20), int64(50000), uint64(200000), uint64(512), int64(100)
	s.Linux.Resources = &specs.LinuxResources{
		Devices: s.Linux.Resources.Devices,
		Memory:  &specs.LinuxMemory{Limit: &mem, Reservation: &reservation},
		CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares, Cpus: "0", Mems: "0"},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	bundle := writeBundle(t, s)
	update := []string{"update", "--memory", "96m", "--cpu-quota", "30000", "--cpu-period", "100000", "--cpu-share", "256", "--pids-limit", "50"}
	vmmPath, err := hostcgroup.VMMPath(path, false)
	if err != nil {
		t.Fatal(err)
	}
	// runc leaves the parent it made (cocoon removes those it makes, but
	// here runc made it first): the cleanup removes it.
	left := func() []string {
		var dirs []string
		for _, p := range []string{path, vmmPath} {
			d, _ := filepath.Glob("/sys/fs/cgroup/*" + p)
			dirs = append(dirs, d...)
		}
		return dirs
	}
	t.Cleanup(func() {
		for _, d := range left() {
			_ = os.Remove(d)
		}
		d, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
		for _, d := range d {
			_ = os.Remove(d)
		}
	})

	var created, updated []string
	for _, r := range rts {
		id := "cgcmp-" + r.name
		t.Cleanup(func() { run(t, cmdOpts{}, r.bin, r.args("delete", "--force", id)...) })
		if res := run(t, cmdOpts{}, r.bin, r.args("run", "--detach", "--bundle", bundle, id)...); res.code != 0 {
			t.Fatalf("%s run: %v", r.name, res)
		}
		created = append(created, readCgroup(path))
		var st containerState
		if err := json.Unmarshal([]byte(r.state(t, id)), &st); err != nil || st.Pid == 0 {
			t.Fatalf("%s state: %v", r.name, err)
		}
		in, err := cgroups.ParseCgroupFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, ctrl := range []string{"memory", "cpu", "cpuset", ""} {
			if got, ok := in[ctrl]; ok && got != path && !(ctrl == "" && !cgroups.IsCgroup2UnifiedMode()) {
				t.Errorf("%s: the container's PID %d is in %s cgroup %q, want %s", r.name, st.Pid, ctrl, got, path)
			}
		}
		if r.name == "cocoon" {
			// The VM runs beside it, with its overhead on top.
			if cgroups.IsCgroup2UnifiedMode() {
				if got := readCgroup(vmmPath); !strings.Contains(got, "cpu.max=80000 200000") {
					t.Errorf("overhead cgroup %s:\n%s\nwant the quota plus 250m", vmmPath, got)
				}
			} else {
				want := hostcgroup.Resources(s.Linux.Resources, guestMiBIn(t, vmmPath)).Memory
				if got := readCgroup(vmmPath); !strings.Contains(got, fmt.Sprintf("memory.limit_in_bytes=%d\n", want)) || !strings.Contains(got, "cpu.cfs_quota_us=100000\n") {
					t.Errorf("overhead cgroup %s:\n%s\nwant memory %d and the quota plus 250m", vmmPath, got, want)
				}
			}
		}
		if res := run(t, cmdOpts{}, r.bin, r.args(append(update, id)...)...); res.code != 0 {
			t.Errorf("%s %v: %v", r.name, update, res)
		}
		updated = append(updated, readCgroup(path))
		if res := run(t, cmdOpts{}, r.bin, r.args("delete", "--force", id)...); res.code != 0 {
			t.Fatalf("%s delete: %v", r.name, res)
		}
		if dirs := left(); len(dirs) > 0 {
			t.Errorf("%s: cgroups left after delete: %v", r.name, dirs)
		}
	}
	t.Logf("runc's cgroup:\n%s\nafter %v:\n%s", created[0], update, updated[0])
	if created[0] != created[1] {
		t.Errorf("created: runc's cgroup\n%s\ncocoon's\n%s", created[0], created[1])
	}
	if updated[0] != updated[1] {
		t.Errorf("updated: runc's cgroup\n%s\ncocoon's\n%s", updated[0], updated[1])
	}
	if !strings.Contains(created[1], "=67108864") {
		t.Errorf("no 64 MiB limit read back:\n%s", created[1])
	}
}

// guestMiBIn is the guest memory (-m) of the QEMU in the cgroup at path.
func guestMiBIn(t *testing.T, path string) int {
	t.Helper()
	procs, err := os.ReadFile(filepath.Join(cgroupDir("memory", path), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(procs)) {
		pid, _ := strconv.Atoi(p)
		args := strings.Split(cmdline(pid), " ")
		for i, a := range args {
			if a == "-m" && i+1 < len(args) {
				var mib int
				fmt.Sscanf(args[i+1], "%d", &mib)
				return mib
			}
		}
	}
	t.Fatalf("no QEMU with -m in %s: %s", path, procs)
	return 0
}
