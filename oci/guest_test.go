package oci

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

func TestShareLayout(t *testing.T) {
	s := Share{HostDir: "/run/cocoon/sandboxes/sb/shared"}
	host, guest := s.Rootfs("c1")
	if host != "/run/cocoon/sandboxes/sb/shared/c1/rootfs" || guest != "/run/cocoon/shared/c1/rootfs" {
		t.Errorf("rootfs %s, %s", host, guest)
	}
	host, guest = s.Mount("c1", 3)
	if host != "/run/cocoon/sandboxes/sb/shared/c1/mounts/3" || guest != "/run/cocoon/shared/c1/mounts/3" {
		t.Errorf("mount %s, %s", host, guest)
	}
	if d := s.ContainerDir("c1"); d != "/run/cocoon/sandboxes/sb/shared/c1" {
		t.Errorf("container dir %s", d)
	}
	s.GuestDir = "/mnt/share"
	if _, guest := s.Rootfs("c1"); guest != "/mnt/share/c1/rootfs" {
		t.Errorf("rootfs with another guest dir: %s", guest)
	}
}

// hostFiles are the host paths a Docker-like spec binds: a volume
// directory and the resolv.conf/hosts/hostname files.
type hostFiles struct {
	bundle, rootfs, volume, resolv, hosts string
}

func makeHostFiles(t *testing.T) hostFiles {
	t.Helper()
	d := t.TempDir()
	h := hostFiles{
		bundle: filepath.Join(d, "bundle"),
		rootfs: filepath.Join(d, "bundle", "rootfs"),
		volume: filepath.Join(d, "volume"),
		resolv: filepath.Join(d, "resolv.conf"),
		hosts:  filepath.Join(d, "bundle", "hosts"),
	}
	for _, dir := range []string{h.rootfs, h.volume} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{h.resolv, h.hosts} {
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func TestForGuest(t *testing.T) {
	h := makeHostFiles(t)
	share := Share{HostDir: "/sb/shared"}
	base := func() *specs.Spec {
		return &specs.Spec{
			Version: "1.0.2",
			Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
			Root:    &specs.Root{Path: "rootfs"},
			Linux:   &specs.Linux{CgroupsPath: "system.slice:docker:c1"},
		}
	}
	rootBind := Bind{Source: h.rootfs, Target: "/sb/shared/c1/rootfs", Guest: "/run/cocoon/shared/c1/rootfs"}

	tests := map[string]struct {
		edit      func(*specs.Spec)
		wantSpec  func(*specs.Spec) // applied to base() after the common rewrites
		wantBinds []Bind
		wantNetNS string
		wantHooks bool
	}{
		"rootfs only": {
			edit:      func(*specs.Spec) {},
			wantSpec:  func(*specs.Spec) {},
			wantBinds: []Bind{rootBind},
		},
		"read-only rootfs stays read-only in the guest, and is sealed read-only on the host after create": {
			edit:      func(s *specs.Spec) { s.Root.Readonly = true },
			wantSpec:  func(s *specs.Spec) { s.Root.Readonly = true },
			wantBinds: []Bind{func() Bind { b := rootBind; b.SealReadOnly = true; return b }()},
		},
		"docker mounts": {
			edit: func(s *specs.Spec) {
				s.Mounts = []specs.Mount{
					{Destination: "/proc", Type: "proc", Source: "proc"},
					{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
					{Destination: "/data", Type: "bind", Source: h.volume, Options: []string{"rbind", "rprivate"}},
					{Destination: "/etc/resolv.conf", Source: h.resolv, Options: []string{"rbind", "ro"}},
					{Destination: "/etc/hosts", Type: "none", Source: "hosts", Options: []string{"bind"}},
				}
			},
			wantSpec: func(s *specs.Spec) {
				s.Mounts = []specs.Mount{
					{Destination: "/proc", Type: "proc", Source: "proc"},
					{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
					{Destination: "/data", Type: "bind", Source: "/run/cocoon/shared/c1/mounts/2", Options: []string{"rbind", "rprivate"}},
					{Destination: "/etc/resolv.conf", Source: "/run/cocoon/shared/c1/mounts/3", Options: []string{"rbind", "ro"}},
					{Destination: "/etc/hosts", Type: "none", Source: "/run/cocoon/shared/c1/mounts/4", Options: []string{"bind"}},
				}
			},
			wantBinds: []Bind{
				rootBind,
				{Source: h.volume, Target: "/sb/shared/c1/mounts/2", Guest: "/run/cocoon/shared/c1/mounts/2"},
				{Source: h.resolv, Target: "/sb/shared/c1/mounts/3", Guest: "/run/cocoon/shared/c1/mounts/3", ReadOnly: true, File: true, FromHost: true},
				{Source: h.hosts, Target: "/sb/shared/c1/mounts/4", Guest: "/run/cocoon/shared/c1/mounts/4", File: true, FromHost: true},
			},
		},
		"mounts keep the listed order: tmpfs, then binds with propagation and file system options": {
			edit: func(s *specs.Spec) {
				s.Mounts = []specs.Mount{
					{Destination: "/t1", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}},
					{Destination: "/t2", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}},
					{Destination: "/b1", Type: "bind", Source: h.volume, Options: []string{"bind", "shared", "mode=755", "size=1k"}},
					{Destination: "/b2", Type: "bind", Source: h.volume, Options: []string{"rbind", "runbindable"}},
					{Destination: "/t1/in", Type: "bind", Source: h.volume, Options: []string{"rbind", "rslave"}},
				}
			},
			wantSpec: func(s *specs.Spec) {
				s.Mounts = []specs.Mount{
					{Destination: "/t1", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}},
					{Destination: "/t2", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}},
					{Destination: "/b1", Type: "bind", Source: "/run/cocoon/shared/c1/mounts/2", Options: []string{"bind", "shared", "mode=755", "size=1k"}},
					{Destination: "/b2", Type: "bind", Source: "/run/cocoon/shared/c1/mounts/3", Options: []string{"rbind", "runbindable"}},
					{Destination: "/t1/in", Type: "bind", Source: "/run/cocoon/shared/c1/mounts/4", Options: []string{"rbind", "rslave"}},
				}
			},
			wantBinds: []Bind{
				rootBind,
				{Source: h.volume, Target: "/sb/shared/c1/mounts/2", Guest: "/run/cocoon/shared/c1/mounts/2", FromHost: true},
				{Source: h.volume, Target: "/sb/shared/c1/mounts/3", Guest: "/run/cocoon/shared/c1/mounts/3"},
				{Source: h.volume, Target: "/sb/shared/c1/mounts/4", Guest: "/run/cocoon/shared/c1/mounts/4", FromHost: true},
			},
		},
		"network namespace path dropped, new namespaces kept": {
			edit: func(s *specs.Spec) {
				s.Linux.Namespaces = []specs.LinuxNamespace{
					{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}, {Type: specs.MountNamespace},
				}
			},
			wantSpec: func(s *specs.Spec) {
				s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
			},
			wantBinds: []Bind{rootBind},
			wantNetNS: "/var/run/netns/cni-1",
		},
		"new network namespace dropped: the guest's is the container's": {
			edit: func(s *specs.Spec) {
				s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace}, {Type: specs.PIDNamespace}}
			},
			wantSpec: func(s *specs.Spec) {
				s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}}
			},
			wantBinds: []Bind{rootBind},
		},
		"start hooks stay in the guest": {
			edit: func(s *specs.Spec) {
				s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/announce"}}}
			},
			wantSpec: func(s *specs.Spec) {
				s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/announce"}}}
			},
			wantBinds: []Bind{rootBind},
		},
		"hooks and host labels stripped": {
			edit: func(s *specs.Spec) {
				s.Hooks = &specs.Hooks{
					Prestart:        []specs.Hook{{Path: "/usr/bin/docker-proxy"}},
					CreateContainer: []specs.Hook{{Path: "/usr/bin/nvidia-hook"}},
					Poststop:        []specs.Hook{{Path: "/bin/true"}},
				}
				s.Process.ApparmorProfile = "docker-default"
				s.Process.SelinuxLabel = "system_u:system_r:container_t:s0"
				s.Linux.MountLabel = "system_u:object_r:container_file_t:s0"
				s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"}
				s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {Name: "eth1"}}
			},
			wantSpec:  func(s *specs.Spec) {},
			wantBinds: []Bind{rootBind},
			wantHooks: true,
		},
		"no linux section": {
			edit:      func(s *specs.Spec) { s.Linux = nil },
			wantSpec:  func(s *specs.Spec) { s.Linux = nil },
			wantBinds: []Bind{rootBind},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := base()
			tc.edit(spec)
			before, _ := json.Marshal(spec)
			b := &Bundle{Dir: h.bundle, Spec: spec, Rootfs: h.rootfs}
			g, err := ForGuest(b, "c1", share)
			if err != nil {
				t.Fatal(err)
			}
			after, _ := json.Marshal(spec)
			if string(before) != string(after) {
				t.Errorf("ForGuest modified the bundle's spec")
			}

			want := base()
			want.Root.Path = "/run/cocoon/shared/c1/rootfs"
			if want.Linux != nil {
				want.Linux.CgroupsPath = "/cocoon/c1"
			}
			tc.wantSpec(want)
			gotJSON, _ := json.MarshalIndent(g.Spec, "", " ")
			wantJSON, _ := json.MarshalIndent(want, "", " ")
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("guest spec\n%s\nwant\n%s", gotJSON, wantJSON)
			}
			if !reflect.DeepEqual(g.Binds, tc.wantBinds) {
				t.Errorf("binds\n%+v\nwant\n%+v", g.Binds, tc.wantBinds)
			}
			if g.NetNSPath != tc.wantNetNS {
				t.Errorf("netns %q, want %q", g.NetNSPath, tc.wantNetNS)
			}
			if (g.Hooks != nil) != tc.wantHooks {
				t.Errorf("hooks %+v", g.Hooks)
			}
			if spec.Linux != nil && g.HostCgroupsPath != "system.slice:docker:c1" {
				t.Errorf("host cgroups path %q", g.HostCgroupsPath)
			}
		})
	}
}

func TestForGuestErrors(t *testing.T) {
	h := makeHostFiles(t)
	tests := map[string]struct {
		id       string
		edit     func(*specs.Spec)
		want     string
		sentinel error
	}{
		"missing bind source": {
			id: "c1",
			edit: func(s *specs.Spec) {
				s.Mounts = []specs.Mount{{Destination: "/v", Type: "bind", Source: "/nonexistent/volume"}}
			},
			want:     "translating spec: mounts[0] (/v): source /nonexistent/volume does not exist",
			sentinel: ErrInvalidBundle,
		},
		"joining a host pid namespace": {
			id: "c1",
			edit: func(s *specs.Spec) {
				s.Linux = &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}}}
			},
			want:     "translating spec: joining the pid namespace at /proc/42/ns/pid: not supported in a vm",
			sentinel: ErrUnsupported,
		},
		"translated spec over the agent's message limit": {
			id: "c1",
			edit: func(s *specs.Spec) {
				s.Annotations = map[string]string{"pad": strings.Repeat("x", maxGuestSpecSize)}
			},
			want:     "translating spec: the translated spec is too large: " + strconv.Itoa(maxGuestSpecSize+150) + " bytes, the guest agent accepts at most " + strconv.Itoa(maxGuestSpecSize),
			sentinel: ErrInvalidBundle,
		},
		"id with a slash": {id: "../x", edit: func(*specs.Spec) {}, want: `translating spec: container id "../x" cannot name a directory`},
		"dot-dot id":      {id: "..", edit: func(*specs.Spec) {}, want: `translating spec: container id ".." cannot name a directory`},
		"empty id":        {id: "", edit: func(*specs.Spec) {}, want: `translating spec: container id "" cannot name a directory`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}, Root: &specs.Root{Path: "rootfs"}}
			tc.edit(spec)
			_, err := ForGuest(&Bundle{Dir: h.bundle, Spec: spec, Rootfs: h.rootfs}, tc.id, Share{HostDir: "/sb/shared"})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error does not wrap %v", tc.sentinel)
			}
		})
	}
}

func TestGuestProcess(t *testing.T) {
	p := &specs.Process{Args: []string{"sh"}, Cwd: "/", ApparmorProfile: "docker-default", SelinuxLabel: "l", Env: []string{"A=1"}}
	g, err := GuestProcess(p)
	if err != nil {
		t.Fatal(err)
	}
	if g.ApparmorProfile != "" || g.SelinuxLabel != "" || strings.Join(g.Env, ",") != "A=1" {
		t.Errorf("guest process %+v", g)
	}
	if p.ApparmorProfile != "docker-default" {
		t.Error("GuestProcess modified its argument")
	}
}

func TestForGuestNamespacesMapped(t *testing.T) {
	h := makeHostFiles(t)
	spec := &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
			{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
			{Type: specs.MountNamespace},
		}},
	}
	b := &Bundle{Dir: h.bundle, Spec: spec, Rootfs: h.rootfs, GuestNamespaces: map[string]string{
		"/proc/42/ns/pid": "/proc/7/ns/pid",
		"/proc/42/ns/ipc": "/proc/7/ns/ipc",
	}}
	g, err := ForGuest(b, "c1", Share{HostDir: "/sb/shared"})
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"},
		{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		{Type: specs.MountNamespace},
	}
	if !reflect.DeepEqual(g.Spec.Linux.Namespaces, want) {
		t.Errorf("namespaces %+v, want %+v", g.Spec.Linux.Namespaces, want)
	}
	if spec.Linux.Namespaces[0].Path != "/proc/42/ns/pid" {
		t.Error("the bundle's spec was modified")
	}
}

// TestForGuestReadOnlySubmounts: a read-only bind of a directory holding a
// mount point reaches the guest without "ro" (the host's side is made
// read-only at its top, leaving the submount writable, as runc does); one
// without submounts, or with "rro", keeps its options.
func TestForGuestReadOnlySubmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
	h := makeHostFiles(t)
	withSub, plain := t.TempDir(), t.TempDir()
	testutil.TmpfsSubmount(t, withSub, "sub")
	spec := &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/a", Type: "bind", Source: withSub, Options: []string{"rbind", "ro", "nosuid"}},
			{Destination: "/b", Type: "bind", Source: plain, Options: []string{"rbind", "ro"}},
			{Destination: "/c", Type: "bind", Source: withSub, Options: []string{"rbind", "rro"}},
		},
	}
	g, err := ForGuest(&Bundle{Dir: h.bundle, Spec: spec, Rootfs: h.rootfs}, "c1", Share{HostDir: "/sb/shared"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]string{{"rbind", "nosuid"}, {"rbind", "ro"}, {"rbind", "rro"}} {
		if got := g.Spec.Mounts[i].Options; !reflect.DeepEqual(got, want) {
			t.Errorf("mount %s: options %v, want %v", spec.Mounts[i].Destination, got, want)
		}
	}
	for i, want := range []struct{ ro, rec bool }{{true, false}, {true, false}, {true, true}} {
		if b := g.Binds[i+1]; b.ReadOnly != want.ro || b.Recursive != want.rec {
			t.Errorf("bind %d: read-only %v, recursive %v; want %v, %v", i, b.ReadOnly, b.Recursive, want.ro, want.rec)
		}
	}
	if !slices.Contains(spec.Mounts[0].Options, "ro") {
		t.Error("the bundle's spec was modified")
	}
}

// TestHostPropagation: which binds receive the host's later mounts under
// their source, as runc decides it (see HostPropagation).
func TestHostPropagation(t *testing.T) {
	for name, tc := range map[string]struct {
		rootfs  string
		options []string
		want    bool
	}{
		"no option: runc's rslave root":       {"", []string{"rbind"}, true},
		"rslave":                              {"", []string{"rbind", "rslave"}, true},
		"rshared":                             {"", []string{"rbind", "rshared"}, true},
		"slave":                               {"", []string{"bind", "slave"}, true},
		"rprivate":                            {"", []string{"rbind", "rprivate"}, false},
		"private":                             {"", []string{"bind", "private"}, false},
		"runbindable":                         {"", []string{"rbind", "runbindable"}, false},
		"the last option wins":                {"", []string{"rprivate", "rslave"}, true},
		"the last option wins, private":       {"", []string{"rshared", "private"}, false},
		"rprivate root":                       {"rprivate", []string{"rbind", "rslave"}, false},
		"runbindable root":                    {"runbindable", []string{"rbind"}, false},
		"private root changes only /":         {"private", []string{"rbind", "rslave"}, true},
		"rslave root":                         {"rslave", []string{"rbind"}, true},
		"rshared root, rprivate mount":        {"rshared", []string{"rbind", "rprivate"}, false},
		"file system options are no decision": {"", []string{"rbind", "nosuid", "ro"}, true},
	} {
		if got := HostPropagation(tc.rootfs, tc.options); got != tc.want {
			t.Errorf("%s: HostPropagation(%q, %q) = %v, want %v", name, tc.rootfs, tc.options, got, tc.want)
		}
	}
}
