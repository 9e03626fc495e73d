package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cocoon-containers/cocoon/agent/container/containertest"
	"github.com/cocoon-containers/cocoon/api"
)

type fakeGuest struct {
	mounts    [][]string
	readahead []string
	hostname  string
	clock     time.Time
	entropy   []byte
}

func (f *fakeGuest) ops() GuestOps {
	return GuestOps{
		Mount: func(source, target, fstype string, flags uintptr, data string) error {
			f.mounts = append(f.mounts, []string{source, target, fstype, data})
			return nil
		},
		Sethostname: func(name string) error { f.hostname = name; return nil },
		SetClock:    func(t time.Time) error { f.clock = t; return nil },
		Reseed:      func(b []byte) error { f.entropy = append([]byte(nil), b...); return nil },
		SetReadahead: func(path string, kb int) error {
			f.readahead = append(f.readahead, fmt.Sprintf("%s=%d", path, kb))
			return nil
		},
	}
}

func sandboxService(t *testing.T) (api.AgentService, *fakeGuest, string, string) {
	t.Helper()
	dir := t.TempDir()
	etc, procSys := filepath.Join(dir, "etc"), filepath.Join(dir, "proc", "sys")
	if err := os.MkdirAll(filepath.Join(procSys, "net", "ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procSys, "net", "ipv4", "ip_forward"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fg := &fakeGuest{}
	svc := NewService(ServiceConfig{Log: testLog(t), EtcDir: etc, ProcSysDir: procSys, Guest: fg.ops()})
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{Service: svc})
	return agentClient(t, hostSession(t, host)), fg, etc, procSys
}

func TestCreateSandbox(t *testing.T) {
	client, fg, etc, procSys := sandboxService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	share := filepath.Join(t.TempDir(), "shared")
	_, err := client.CreateSandbox(ctx, &api.CreateSandboxRequest{
		Hostname:        "pod-1",
		SharedMountTag:  "cocoon-share",
		SharedMountPath: share,
		Dns:             []string{"nameserver 10.0.0.1", "search example.com"},
		Sysctls:         map[string]string{"net.ipv4.ip_forward": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cocoon-share", share, "9p", "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"}
	if len(fg.mounts) != 1 || !equalStrings(fg.mounts[0], want) {
		t.Errorf("mounts %q, want %q", fg.mounts, want)
	}
	if fg.hostname != "pod-1" {
		t.Errorf("hostname %q", fg.hostname)
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "resolv.conf")); string(b) != "nameserver 10.0.0.1\nsearch example.com\n" {
		t.Errorf("resolv.conf %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(procSys, "net", "ipv4", "ip_forward")); string(b) != "1" {
		t.Errorf("ip_forward %q", b)
	}

	for name, req := range map[string]*api.CreateSandboxRequest{
		"bad hostname":       {Hostname: "a b"},
		"relative share":     {SharedMountTag: "t", SharedMountPath: "run/shared"},
		"unknown share type": {SharedMountTag: "t", SharedMountPath: share + "2", SharedMountType: "nfs"},
		"dns line break":     {Dns: []string{"nameserver 1.1.1.1\nnameserver 2.2.2.2"}},
		"sysctl escape":      {Sysctls: map[string]string{"../../etc/passwd": "x"}},
		"sysctl not in kern": {Sysctls: map[string]string{"kernel.nope": "1"}},
	} {
		_, err := client.CreateSandbox(ctx, req)
		wantCode(t, name, err, codes.InvalidArgument)
	}
}

func TestCreateSandboxVirtioFS(t *testing.T) {
	client, fg, _, _ := sandboxService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	share := filepath.Join(t.TempDir(), "shared")
	if _, err := client.CreateSandbox(ctx, &api.CreateSandboxRequest{
		SharedMountTag: "cocoon-share", SharedMountPath: share, SharedMountType: api.SharedMountVirtioFS,
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"cocoon-share", share, "virtiofs", ""}
	if len(fg.mounts) != 1 || !equalStrings(fg.mounts[0], want) {
		t.Errorf("mounts %q, want %q", fg.mounts, want)
	}
	if want := []string{share + "=1024"}; !equalStrings(fg.readahead, want) {
		t.Errorf("read-ahead %q, want %q", fg.readahead, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSetGuestTime(t *testing.T) {
	client, fg, _, _ := sandboxService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if _, err := client.SetGuestTime(ctx, &api.SetGuestTimeRequest{UnixNanos: at.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if !fg.clock.Equal(at) {
		t.Errorf("clock set to %v, want %v", fg.clock, at)
	}
	_, err := client.SetGuestTime(ctx, &api.SetGuestTimeRequest{})
	wantCode(t, "SetGuestTime(0)", err, codes.InvalidArgument)
}

func TestContainerCallsWithoutManager(t *testing.T) {
	client, _, _, _ := sandboxService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "x"})
	wantCode(t, "StartContainer", err, codes.FailedPrecondition)
}

func TestDestroySandboxKillsContainers(t *testing.T) {
	_, client, rootfs := containerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "doomed", SpecJson: specJSON(t, containertest.Spec(rootfs, "sleep", "1000")),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "doomed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "doomed"})
	wantCode(t, "WaitProcess after DestroySandbox", err, codes.NotFound)
	if errors.Is(err, nil) {
		t.Error("the container survived DestroySandbox")
	}
}

// TestRestored: a restored guest's CRNG is reseeded with the host's bytes
// and its clock set; too little entropy or no time is refused, and
// changes nothing.
func TestRestored(t *testing.T) {
	client, fg, _, _ := sandboxService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Restored(ctx, &api.RestoredRequest{UnixNanos: 7, Entropy: make([]byte, 31)}); err == nil {
		t.Error("31 bytes of entropy accepted")
	}
	if _, err := client.Restored(ctx, &api.RestoredRequest{Entropy: make([]byte, 64)}); err == nil {
		t.Error("no time accepted")
	}
	if fg.entropy != nil || !fg.clock.IsZero() {
		t.Fatalf("a refused call changed the guest: entropy %x, clock %v", fg.entropy, fg.clock)
	}
	entropy := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if _, err := client.Restored(ctx, &api.RestoredRequest{UnixNanos: 1_700_000_000_000_000_000, Entropy: entropy}); err != nil {
		t.Fatal(err)
	}
	if string(fg.entropy) != string(entropy) {
		t.Errorf("entropy %q, want %q", fg.entropy, entropy)
	}
	if got := fg.clock.UnixNano(); got != 1_700_000_000_000_000_000 {
		t.Errorf("clock %d", got)
	}
}
