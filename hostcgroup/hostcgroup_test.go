package hostcgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }

func TestResourcesAccounting(t *testing.T) {
	const guest = 2048
	over := int64(MemoryOverheadMiB+guest/64) << 20
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(10)},
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000), Cpus: "0"},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rw"},
		},
	}
	res := Resources(r, guest)
	if want := int64(64<<20) + over; res.Memory != want {
		t.Errorf("memory %d, want %d", res.Memory, want)
	}
	if want := res.Memory + 64<<20; res.MemorySwap != want {
		t.Errorf("memory+swap %d, want %d (the container's swap allowance kept)", res.MemorySwap, want)
	}
	if res.PidsLimit == nil || *res.PidsLimit != 10+PidsOverhead {
		t.Errorf("pids %v, want %d", res.PidsLimit, 10+PidsOverhead)
	}
	if res.CpuShares != 512 || res.CpuPeriod != 100000 || res.CpuQuota != 50000+25000 || res.CpusetCpus != "0" {
		t.Errorf("cpu shares %d period %d quota %d cpus %q", res.CpuShares, res.CpuPeriod, res.CpuQuota, res.CpusetCpus)
	}
	if res.SkipDevices || len(res.Devices) != 2+len(vmmDevices) {
		t.Fatalf("devices: skip %v, %d rules", res.SkipDevices, len(res.Devices))
	}
	if d := res.Devices[0]; d.Allow || d.Type != 'a' {
		t.Errorf("first rule %s allow %v, want the container's deny-all", d.CgroupString(), d.Allow)
	}
	if d := res.Devices[len(res.Devices)-1]; !d.Allow || d.CgroupString() != "c 10:241 rwm" {
		t.Errorf("last rule %s allow %v, want the VMM's vhost-vsock", d.CgroupString(), d.Allow)
	}

	// A limit above the guest's memory is the guest's memory.
	res = Resources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(8 << 30), Swap: i64(-1)}}, guest)
	if want := int64(guest<<20) + over; res.Memory != want || res.MemorySwap != -1 {
		t.Errorf("memory %d swap %d, want %d and -1", res.Memory, res.MemorySwap, want)
	}
	// No limits, no host limits.
	res = Resources(&specs.LinuxResources{}, guest)
	if res.Memory != 0 || res.PidsLimit != nil || res.CpuQuota != 0 || !res.SkipDevices {
		t.Errorf("limits without any in the spec: %+v", res)
	}
	if res := Resources(nil, guest); !res.SkipDevices || res.Memory != 0 {
		t.Errorf("nil resources: %+v", res)
	}
}

func TestConfigPaths(t *testing.T) {
	for _, tc := range []struct {
		path    string
		systemd bool
		dir     string
		bad     bool
	}{
		{path: "/docker/abc", dir: "/docker/abc"},
		{path: "/a/../b/", dir: "/b"},
		{path: "rel/x", dir: "rel/x"},
		{path: "/", bad: true},
		{path: "system.slice:docker:abc", dir: "/system.slice/docker-abc.scope"},
		{path: "kubepods-besteffort-pod1.slice:cri-containerd:abc", dir: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{path: ":cocoon:abc", dir: "/system.slice/cocoon-abc.scope"},
		{path: "machine.slice::abc", dir: "/machine.slice/abc.scope"},
		{path: "user.slice:x:pod.slice", dir: "/user.slice/pod.slice"},
		{path: "noslice:x:abc", bad: true},
		{path: "system.slice:x:", bad: true},
		{path: "/docker/abc", systemd: true, bad: true},
	} {
		cfg, dir, err := config(tc.path, tc.systemd)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %q, want an error", tc.path, dir)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.path, err)
			continue
		}
		if dir != tc.dir {
			t.Errorf("%q: dir %q, want %q", tc.path, dir, tc.dir)
		}
		if !cfg.Systemd && cfg.Path != dir {
			t.Errorf("%q: cgroupfs path %q, want %q", tc.path, cfg.Path, dir)
		}
	}
}

// TestExact: the caller's cgroup gets the spec's values as runc writes
// them, nothing added.
func TestExact(t *testing.T) {
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Reservation: i64(32 << 20), Swap: i64(128 << 20), Swappiness: u64(10)},
		Pids:   &specs.LinuxPids{Limit: i64(10)},
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(200000), Cpus: "0", Mems: "0"},
	}
	res := Exact(r)
	if res.Memory != 64<<20 || res.MemoryReservation != 32<<20 || res.MemorySwap != 128<<20 || res.MemorySwappiness == nil || *res.MemorySwappiness != 10 {
		t.Errorf("memory %d reservation %d swap %d swappiness %v", res.Memory, res.MemoryReservation, res.MemorySwap, res.MemorySwappiness)
	}
	if res.PidsLimit == nil || *res.PidsLimit != 10 {
		t.Errorf("pids %v, want 10", res.PidsLimit)
	}
	if res.CpuShares != 512 || res.CpuPeriod != 200000 || res.CpuQuota != 50000 || res.CpusetCpus != "0" || res.CpusetMems != "0" {
		t.Errorf("cpu shares %d period %d quota %d cpus %q mems %q", res.CpuShares, res.CpuPeriod, res.CpuQuota, res.CpusetCpus, res.CpusetMems)
	}
	if !res.SkipDevices {
		t.Error("devices written without rules in the spec")
	}
	// A quota without a period leaves the period as it is, as runc does.
	if res := Exact(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(30000)}}); res.CpuQuota != 30000 || res.CpuPeriod != 0 {
		t.Errorf("quota alone: quota %d period %d", res.CpuQuota, res.CpuPeriod)
	}
	if res := Exact(nil); res.Memory != 0 || res.PidsLimit != nil || !res.SkipDevices {
		t.Errorf("nil resources: %+v", res)
	}
}

// TestVMMPath: the overhead cgroup is a sibling of the caller's, never a
// child (systemd nests a slice whose name has a dash in it).
func TestVMMPath(t *testing.T) {
	for _, tc := range []struct {
		path    string
		systemd bool
		want    string
		dir     string
	}{
		{path: "/docker/abc", want: "/docker/abc.vmm", dir: "/docker/abc.vmm"},
		{path: "/a/../b/", want: "/b.vmm", dir: "/b.vmm"},
		{path: "rel/x", want: "rel/x.vmm", dir: "rel/x.vmm"},
		{path: "/machine.slice/x.scope", want: "/machine.slice/x.vmm.scope", dir: "/machine.slice/x.vmm.scope"},
		{path: "system.slice:docker:abc", want: "system.slice:docker:abc.vmm", dir: "/system.slice/docker-abc.vmm.scope"},
		{path: "kubepods-besteffort-pod1.slice:cri-containerd:abc", want: "kubepods-besteffort-pod1.slice:cri-containerd:abc.vmm",
			dir: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.vmm.scope"},
		{path: "user.slice:x:pod-1.slice", want: "user.slice:x:pod-1.vmm.slice", dir: "/user.slice/pod-1.vmm.slice"},
		{path: "/", want: ""},
		{path: "system.slice:x:", want: ""},
	} {
		got, err := VMMPath(tc.path, tc.systemd)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: got %q, want an error", tc.path, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q (%v), want %q", tc.path, got, err, tc.want)
			continue
		}
		_, dir, err := config(got, tc.systemd)
		if err != nil || dir != tc.dir {
			t.Errorf("%q: directory %q (%v), want %q", got, dir, err, tc.dir)
		}
		if _, caller, _ := config(tc.path, tc.systemd); filepath.Dir(caller) != filepath.Dir(dir) {
			t.Errorf("%q: %s is not beside %s", tc.path, dir, caller)
		}
	}
}

// readFile reads a cgroup file of controller ctrl of c.
func readFile(t *testing.T, c *Cgroup, ctrl, file string) string {
	t.Helper()
	return readIn(t, c.Paths(), ctrl, file)
}

// readIn reads a cgroup file of controller ctrl of the directories paths.
func readIn(t *testing.T, paths map[string]string, ctrl, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(paths[ctrl], file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCreateOnHost creates a real cgroup on this host (both drivers'
// syntax; systemd's falls back to cgroupfs where systemd does not run),
// checks its limits (the spec's in the caller's cgroup, with the VM's
// overhead in the overhead cgroup beside it), that Create leaves this
// process where it was, that a child placed by Add before it runs
// (proc.StartPlaced) runs in the overhead cgroup from its start, that Load
// finds both from the State, that AddRelay puts a process in the caller's,
// and that Destroy waits for their processes and leaves nothing.
func TestCreateOnHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	id := fmt.Sprintf("cocoon-hostcgroup-test-%d", os.Getpid())
	for _, tc := range []struct {
		name, path, parent string
	}{
		{"cgroupfs", "/" + id + "/ctr", "/" + id},
		{"systemd", "cocoontest.slice:cocoon:" + id, "/cocoontest.slice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCreate(t, tc.path, tc.parent)
		})
	}
}

func testCreate(t *testing.T, path, parent string) {
	before, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	const guest = 512
	c, err := Create(Spec{Path: path, GuestMemoryMiB: guest, Resources: &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(20)},
		CPU:    &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000), Shares: u64(512)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	paths, vmmPaths := map[string]string{}, c.VMMPaths()
	for k, v := range c.Paths() {
		paths[k] = v
	}
	vmmDir := c.State().VMM.Dir
	if want, _ := VMMPath(path, false); !strings.HasSuffix(vmmDir, ".vmm.scope") && vmmDir != want {
		t.Errorf("overhead cgroup %s, want %s", vmmDir, want)
	}
	t.Cleanup(func() {
		_ = c.Destroy(context.Background())
		for _, dir := range vmmPaths {
			_ = os.Remove(dir)
		}
		for _, dir := range paths {
			if root, ok := strings.CutSuffix(dir, c.State().Dir); ok {
				_ = os.Remove(filepath.Join(root, parent))
			}
		}
	})
	if len(paths) == 0 {
		t.Fatal("no cgroup directories")
	}
	for ctrl, dir := range paths {
		if !strings.HasSuffix(dir, c.State().Dir) {
			t.Errorf("%s: %s is not under %s", ctrl, dir, c.State().Dir)
		}
	}
	if cgroups.IsCgroup2HybridMode() {
		if _, ok := paths[""]; !ok {
			t.Errorf("hybrid host: no cgroup in the v2 hierarchy: %v", paths)
		}
	}
	for ctrl, dir := range vmmPaths {
		if want := strings.TrimSuffix(paths[ctrl], c.State().Dir) + vmmDir; dir != want {
			t.Errorf("%s: overhead cgroup %s, want %s", ctrl, dir, want)
		}
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		for _, f := range []struct{ ctrl, file, caller, vmm string }{
			{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20), strconv.Itoa(64<<20 + (MemoryOverheadMiB+guest/64)<<20)},
			{"pids", "pids.max", "20", strconv.Itoa(20 + PidsOverhead)},
			{"cpu", "cpu.cfs_quota_us", "50000", "75000"},
			{"cpu", "cpu.cfs_period_us", "100000", "100000"},
			{"cpu", "cpu.shares", "512", "512"},
		} {
			if got := readFile(t, c, f.ctrl, f.file); got != f.caller {
				t.Errorf("caller's %s %s, want %s (the spec's)", f.file, got, f.caller)
			}
			if got := readIn(t, vmmPaths, f.ctrl, f.file); got != f.vmm {
				t.Errorf("overhead %s %s, want %s", f.file, got, f.vmm)
			}
		}
		devs := readFile(t, c, "devices", "devices.list")
		for _, want := range []string{"c 1:3 rwm", "c 10:232 rwm", "c 136:* rwm"} {
			if !strings.Contains(devs, want) {
				t.Errorf("devices.list lacks %q:\n%s", want, devs)
			}
		}
		if strings.Contains(devs, "a *:* rwm") {
			t.Errorf("devices.list allows everything:\n%s", devs)
		}
	}
	pids, err := c.Pids()
	if err != nil || len(pids) != 0 {
		t.Fatalf("after Create: processes %v (%v), want none", pids, err)
	}
	after, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("after Create: this process's %q cgroup is %q, was %q", k, after[k], v)
		}
	}

	// A child placed before it runs: its first look at /proc/self/cgroup
	// (its first command's) already shows the cgroup.
	seen := filepath.Join(t.TempDir(), "cgroup")
	child := exec.Command("/bin/sh", "-c", `cat /proc/self/cgroup > "$0"; exec sleep 60`, seen)
	runtime.LockOSThread()
	err = proc.StartPlaced(child, c.Add)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	// Reaped once, by whoever kills it first (a second Wait races).
	var reapChild sync.Once
	reap := func(c *exec.Cmd, once *sync.Once) { once.Do(func() { _ = c.Process.Kill(); _ = c.Wait() }) }
	defer reap(child, &reapChild)
	deadline := time.Now().Add(5 * time.Second)
	var first []byte
	for len(first) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		first, _ = os.ReadFile(seen)
	}
	if !strings.Contains(string(first), vmmDir+"\n") {
		t.Errorf("the child started outside the overhead cgroup %s:\n%s", vmmDir, first)
	}
	// Once its cat is gone, the child alone.
	pids, _ = c.Pids()
	for len(pids) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids, _ = c.Pids()
	}
	if len(pids) != 1 || pids[0] != child.Process.Pid {
		t.Errorf("after Add: processes %v, want the child %d", pids, child.Process.Pid)
	}

	// Another process finds it from its state.
	l, err := Load(c.State())
	if err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	var reapOther sync.Once
	defer reap(other, &reapOther)
	if err := l.AddRelay(other.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, _ := l.Pids(); len(pids) != 2 {
		t.Errorf("after AddRelay: processes %v, want 2", pids)
	}
	in, err := cgroups.ParseCgroupFile(fmt.Sprintf("/proc/%d/cgroup", other.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for ctrl, dir := range in {
		want := c.State().Dir
		if ctrl == "pids" {
			// A relay's threads do not take the container's pids.
			want = vmmDir
		}
		if _, ok := paths[ctrl]; ok && dir != want {
			t.Errorf("after AddRelay: %s %s, want %s", ctrl, dir, want)
		}
	}

	// Destroy waits for the processes, and fails naming them.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = l.Destroy(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(child.Process.Pid)) {
		t.Errorf("Destroy with processes inside: %v, want an error naming %d", err, child.Process.Pid)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		reap(child, &reapChild)
		reap(other, &reapOther)
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for ctrl, dir := range vmmPaths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s left behind (%v)", ctrl, dir, err)
		}
	}
	for ctrl, dir := range paths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s left behind (%v)", ctrl, dir, err)
		}
		// The parent that Create made goes too.
		if root, ok := strings.CutSuffix(dir, c.State().Dir); ok {
			if _, err := os.Stat(filepath.Join(root, parent)); !os.IsNotExist(err) {
				t.Errorf("%s: parent %s left behind (%v)", ctrl, filepath.Join(root, parent), err)
			}
		}
	}
}

// TestOverheadQuotaUnderParent: under a parent whose CPU quota is below
// the container's plus CPUOverheadMilli (a Kubernetes pod's cgroup: its
// limits plus the RuntimeClass's overhead), the overhead cgroup gets the
// parent's quota, at Create and at an Update through Load, where cgroup v1
// would refuse more; the caller's cgroup keeps the container's.
func TestOverheadQuotaUnderParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	if cgroups.IsCgroup2UnifiedMode() {
		t.Skip("cgroup v1: on v2 a child's cpu.max may exceed its parent's")
	}
	parent := fmt.Sprintf("/cocoon-hostcgroup-quota-%d", os.Getpid())
	root, err := cgroups.FindCgroupMountpoint("", "cpu")
	if err != nil {
		t.Skip("no cpu hierarchy:", err)
	}
	pod := filepath.Join(root, parent)
	if err := os.Mkdir(pod, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(pod) })
	for f, v := range map[string]string{"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "160000"} {
		if err := os.WriteFile(filepath.Join(pod, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cpu := func(quota int64) *specs.LinuxResources {
		return &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(quota), Period: u64(100000)}}
	}
	c, err := Create(Spec{Path: parent + "/ctr", Resources: cpu(150000), GuestMemoryMiB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy(context.Background()) })
	if got := readFile(t, c, "cpu", "cpu.cfs_quota_us"); got != "150000" {
		t.Errorf("caller's quota %s, want the container's 150000", got)
	}
	if got := readIn(t, c.VMMPaths(), "cpu", "cpu.cfs_quota_us"); got != "160000" {
		t.Errorf("overhead quota %s, want the parent's 160000", got)
	}
	// Within the parent's, the overhead is added as usual.
	l, err := Load(c.State())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(cpu(100000), 1024); err != nil {
		t.Fatal(err)
	}
	if got := readIn(t, c.VMMPaths(), "cpu", "cpu.cfs_quota_us"); got != "125000" {
		t.Errorf("overhead quota after an update to 100000: %s, want 125000", got)
	}
	if err := l.Update(cpu(150000), 1024); err != nil {
		t.Fatal(err)
	}
	if got := readIn(t, c.VMMPaths(), "cpu", "cpu.cfs_quota_us"); got != "160000" {
		t.Errorf("overhead quota after an update to 150000: %s, want the parent's 160000", got)
	}
}
