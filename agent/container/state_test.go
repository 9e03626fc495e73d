package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestStateErrors(t *testing.T) {
	m := newManager(t)
	ctx := ctxT(t, 20*time.Second)
	c, err := m.Create(ctx, "states", testSpec("sleep", "1000"), StdioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "states", testSpec("true"), StdioConfig{}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate Create: %v, want ErrAlreadyExists", err)
	}
	if _, err := c.Exec(ctx, "e", process("true"), StdioConfig{}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("exec into a created container: %v, want ErrFailedPrecondition", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("second Start: %v, want ErrFailedPrecondition", err)
	}
	if err := m.Remove(ctx, "states", false); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("Remove of a running container without force: %v, want ErrFailedPrecondition", err)
	}
	if _, err := m.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown container: %v, want ErrNotFound", err)
	}
	if err := m.Remove(ctx, "nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of an unknown container: %v, want ErrNotFound", err)
	}
	if err := c.Init().Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Init().Wait(ctx); err != nil || st.Code != 137 {
		t.Fatalf("Wait after SIGKILL: %+v, %v", st, err)
	}
	if err := c.Start(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("Start of a stopped container: %v, want ErrFailedPrecondition", err)
	}
	if err := c.Pause(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("Pause of a stopped container: %v, want ErrFailedPrecondition", err)
	}
	if err := c.Init().Signal(unix.SIGTERM); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("signalling a stopped container: %v, want ErrFailedPrecondition", err)
	}
	// A stopped container goes without force.
	if err := m.Remove(ctx, "states", false); err != nil {
		t.Fatalf("Remove of a stopped container: %v", err)
	}
	if _, err := m.Get("states"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
}

func TestRemoveCreatedAndReleases(t *testing.T) {
	// A created container goes without force (as with runc delete); its
	// init is killed, and its cgroup and state directory are gone.
	m := newManager(t)
	ctx := ctxT(t, 20*time.Second)
	c, err := m.Create(ctx, "release", testSpec("sleep", "1000"), StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	cgroupDir := c.cgm.Path("memory")
	if cgroupDir == "" {
		cgroupDir = c.cgm.Path("")
	}
	if _, err := os.Stat(cgroupDir); err != nil {
		t.Fatalf("cgroup: %v", err)
	}
	if err := m.Remove(ctx, "release", false); err != nil {
		t.Fatal(err)
	}
	if st, done := c.Init().Exited(); !done || st.Code != 137 {
		t.Errorf("init after Remove: %+v, exited %v", st, done)
	}
	for _, p := range []string{cgroupDir, filepath.Join(m.cfg.Root, "release")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", p, err)
		}
	}
}

func TestForceRemovePaused(t *testing.T) {
	m := newManager(t)
	ctx := ctxT(t, 20*time.Second)
	c := startContainer(t, m, "pausedrm", testSpec("sleep", "1000"))
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "pausedrm", true); err != nil {
		t.Fatal(err)
	}
	if st, done := c.Init().Exited(); !done || st.Code != 137 {
		t.Errorf("init after Remove: %+v, exited %v", st, done)
	}
}

func TestSignalAll(t *testing.T) {
	// Without a PID namespace of its own, killing init leaves the other
	// processes; SignalAll reaches them all.
	m := newManager(t)
	spec := testSpec("sh", "-c", "sleep 1000 & sleep 1000 & wait")
	spec.Linux.Namespaces = removeNamespace(spec.Linux.Namespaces, specs.PIDNamespace)
	c := startContainer(t, m, "killall", spec)
	ctx := ctxT(t, 10*time.Second)
	poll(t, 10*time.Second, "three processes", func() bool {
		ps, err := c.Processes(ctx)
		return err == nil && len(ps) == 3
	})
	if err := c.SignalAll(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Init().Wait(ctx); err != nil || st.Code != 143 {
		t.Fatalf("init after SIGTERM to all: %+v, %v", st, err)
	}
	poll(t, 10*time.Second, "every process to die", func() bool {
		ps, err := c.Processes(ctx)
		return err == nil && len(ps) == 0
	})
}

func removeNamespace(nss []specs.LinuxNamespace, typ specs.LinuxNamespaceType) []specs.LinuxNamespace {
	var out []specs.LinuxNamespace
	for _, ns := range nss {
		if ns.Type != typ {
			out = append(out, ns)
		}
	}
	return out
}

func TestNetworkNamespacePathIgnored(t *testing.T) {
	// A network namespace path names a host namespace: the container
	// shares the guest's network instead.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec("readlink", "/proc/self/ns/net")
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = "/var/run/netns/does-not-exist"
		}
	}
	stdout, stderr, st := run(t, newManager(t), "netns", spec)
	if stdout != self+"\n" || st.Code != 0 {
		t.Errorf("netns %q (stderr %q, status %d), want the guest's %q", stdout, stderr, st.Code, self)
	}
	// Without a path, the container gets a network namespace of its own.
	stdout, _, _ = run(t, newManager(t), "netns-new", testSpec("readlink", "/proc/self/ns/net"))
	if stdout == self+"\n" || !strings.HasPrefix(stdout, "net:[") {
		t.Errorf("new netns %q, guest's %q", stdout, self)
	}
}

func TestUpdate(t *testing.T) {
	m := newManager(t)
	c := startContainer(t, m, "update", testSpec("sleep", "1000"))
	ctx := ctxT(t, 10*time.Second)
	limit := int64(42)
	mem := int64(64 << 20)
	if err := c.Update(ctx, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}, Memory: &specs.LinuxMemory{Limit: &mem}}); err != nil {
		t.Fatal(err)
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pids.Limit != 42 || stats.Memory.Usage.Limit != uint64(mem) {
		t.Errorf("after update: pids limit %d, memory limit %d", stats.Pids.Limit, stats.Memory.Usage.Limit)
	}
	// Exec still works after an update.
	p, err := c.Exec(ctx, "after", process("true"), StdioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
		t.Errorf("exec after update: %+v, %v", st, err)
	}
	if err := c.Update(ctx, &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("hugepage update: %v, want ErrInvalidArgument", err)
	}
	if err := c.Update(ctx, &specs.LinuxResources{HugepageLimits: zeroHugepages}); err != nil {
		t.Errorf("update with hugepage limits of 0: %v", err)
	}
}

// zeroHugepages are the limits the kubelet sets on every container of a
// host with 2 MiB and 1 GiB pages that asks for none.
var zeroHugepages = []specs.LinuxHugepageLimit{{Pagesize: "2MB"}, {Pagesize: "1GB"}}

// TestZeroHugepageLimits: hugepage limits of 0 are met (the guest has no
// huge pages), not refused, whether or not a hugetlb controller is there.
func TestZeroHugepageLimits(t *testing.T) {
	spec := testSpec("true")
	spec.Linux.Resources = &specs.LinuxResources{HugepageLimits: zeroHugepages}
	if _, stderr, st := run(t, newManager(t), "hugepages-zero", spec); st.Code != 0 {
		t.Errorf("a container with hugepage limits of 0: status %d, stderr %q", st.Code, stderr)
	}
}

func TestSeccomp(t *testing.T) {
	spec := testSpec("mkdir", "/tmp/seccomp-denied")
	spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{
			Names:    []string{"mkdir", "mkdirat"},
			Action:   specs.ActErrno,
			ErrnoRet: func() *uint { e := uint(unix.EPERM); return &e }(),
		}},
	}
	m := newManager(t)
	if !seccomp.Enabled {
		_, err := m.Create(ctxT(t, 10*time.Second), "seccomp", spec, StdioConfig{})
		if !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("seccomp without seccomp support: %v, want ErrInvalidArgument", err)
		}
		return
	}
	_, stderr, st := run(t, m, "seccomp", spec)
	if stderr != "mkdir: can't create directory '/tmp/seccomp-denied': Operation not permitted\n" || st.Code != 1 {
		t.Errorf("stderr %q, status %d", stderr, st.Code)
	}
}

func TestSpecRejected(t *testing.T) {
	tests := map[string]func(s *specs.Spec){
		"no process":          func(s *specs.Spec) { s.Process = nil },
		"relative root":       func(s *specs.Spec) { s.Root.Path = "rootfs" },
		"missing root":        func(s *specs.Spec) { s.Root.Path = "/does/not/exist" },
		"empty args":          func(s *specs.Spec) { s.Process.Args = nil },
		"relative cwd":        func(s *specs.Spec) { s.Process.Cwd = "tmp" },
		"apparmor":            func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" },
		"selinux label":       func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0" },
		"windows user":        func(s *specs.Spec) { s.Process.User.Username = "ContainerUser" },
		"bad rlimit":          func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} },
		"windows":             func(s *specs.Spec) { s.Windows = &specs.Windows{} },
		"prestart hook":       func(s *specs.Spec) { s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/dockerd"}}} }, //nolint:staticcheck
		"poststop hook":       func(s *specs.Spec) { s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}} },
		"missing bind source": func(s *specs.Spec) { s.Mounts = append(s.Mounts, bindMount("/does/not/exist", "/x")) },
		"relative bind source": func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, bindMount("vol", "/x"))
		},
		"relative destination": func(s *specs.Spec) { s.Mounts = append(s.Mounts, bindMount("/tmp", "x")) },
		"id-mapped mount": func(s *specs.Spec) {
			m := bindMount("/tmp", "/x")
			m.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
			s.Mounts = append(s.Mounts, m)
		},
		"no linux":    func(s *specs.Spec) { s.Linux = nil },
		"intel rdt":   func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} },
		"mount label": func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" },
		"net devices": func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}} },
		"hugepages": func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2 << 20}}}
		},
		"net_cls": func(s *specs.Spec) { s.Linux.Resources = &specs.LinuxResources{Network: &specs.LinuxNetwork{}} },
		"blkio device": func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{WeightDevice: []specs.LinuxWeightDevice{{}}}}
		},
		"ipc ns path": func(s *specs.Spec) { setNamespacePath(s, specs.IPCNamespace, "/proc/999999999/ns/ipc") },
		"unknown ns": func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		},
		"bad rootfs prop": func(s *specs.Spec) { s.Linux.RootfsPropagation = "sideways" },
	}
	m := newManager(t)
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			spec := testSpec("true")
			edit(spec)
			id := strings.ReplaceAll(name, " ", "-")
			_, err := m.Create(ctxT(t, 10*time.Second), id, spec, StdioConfig{})
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Create = %v, want ErrInvalidArgument", err)
			}
			t.Log(err)
			if _, err := m.Get(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("a rejected container exists: %v", err)
			}
		})
	}
}

func bindMount(src, dst string) specs.Mount {
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind"}}
}

func setNamespacePath(s *specs.Spec, typ specs.LinuxNamespaceType, path string) {
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == typ {
			s.Linux.Namespaces[i].Path = path
		}
	}
}

func TestParseStrict(t *testing.T) {
	if _, err := ParseSpec([]byte(`{"ociVersion":"1.2.0","process":{"args":["true"],"cwd":"/","frobnicate":1}}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown process field: %v, want ErrInvalidArgument", err)
	}
	if _, err := ParseSpec([]byte(`{"ociVersion":"1.2.0"} {}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("trailing data: %v, want ErrInvalidArgument", err)
	}
	if _, err := ParseProcess([]byte(`{"args":["sh"],"cwd":"/","user":{"uid":"x"}}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("wrong type: %v, want ErrInvalidArgument", err)
	}
	if r, err := ParseResources([]byte(`{"pids":{"limit":5}}`)); err != nil || *r.Pids.Limit != 5 {
		t.Errorf("resources: %+v, %v", r, err)
	}
	if _, err := ParseResources([]byte(`{"pids":{"max":5}}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown resource field: %v, want ErrInvalidArgument", err)
	}
}

func TestBadContainerIDs(t *testing.T) {
	m := newManager(t)
	for _, id := range []string{"", ".", "..", "../x", "a/b", "a b", strings.Repeat("x", 1025)} {
		if _, err := m.Create(ctxT(t, 5*time.Second), id, testSpec("true"), StdioConfig{}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Create(%q) = %v, want ErrInvalidArgument", id, err)
		}
	}
}

func TestNoZombies(t *testing.T) {
	// After containers and exec'd processes have come and gone, nothing
	// is left for the test process (a subreaper, like the agent) to reap.
	m := newManager(t)
	spec := testSpec("sh", "-c", "sleep 0.1 & exit 0")
	spec.Linux.Namespaces = removeNamespace(spec.Linux.Namespaces, specs.PIDNamespace)
	run(t, m, "orphans", spec)
	poll(t, 10*time.Second, "no zombie children", func() bool { return len(zombieChildren(t)) == 0 })
}

// zombieChildren lists the test process's children that are zombies.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		info, ok := parseStat(b, 1)
		if !ok {
			continue
		}
		if strconv.Itoa(info.Ppid) == self && info.State == "Z" {
			out = append(out, info.Pid)
		}
	}
	return out
}

func TestCreateDeadlineUndone(t *testing.T) {
	// The host's deadline passes while the container is being created:
	// Create returns at once, and what was created is removed afterwards.
	m := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	_, err := m.Create(ctx, "late", testSpec("sleep", "1000"), StdioConfig{Stdout: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create = %v, want DeadlineExceeded", err)
	}
	poll(t, 20*time.Second, "the abandoned container to be undone", func() bool {
		c, err := m.Create(ctxT(t, 20*time.Second), "late", testSpec("true"), StdioConfig{})
		if err == nil {
			return c.ID() == "late"
		}
		if !errors.Is(err, ErrAlreadyExists) {
			t.Fatalf("Create after the undo: %v", err)
		}
		return false
	})
}
