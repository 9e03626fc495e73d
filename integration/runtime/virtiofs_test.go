//go:build integration

package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// virtioFSConfig writes a configuration like the suite's, with
// hypervisor.shared_fs = "virtio-fs" and extra lines for [hypervisor].
func virtioFSConfig(t *testing.T, extra ...string) string {
	t.Helper()
	base, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Join(extra, "\n")
	virtiofsd, qemu, err := testutil.Virtiofsd()
	if qemu == "" {
		qemu = base.Hypervisor.Path
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lines, "virtiofsd =") {
		lines += fmt.Sprintf("\nvirtiofsd = %q", virtiofsd)
	}
	if qemu != "" && !strings.Contains(lines, "path =") && !strings.Contains(lines, "\npath =") {
		lines += fmt.Sprintf("\npath = %q", qemu)
	}
	text := fmt.Sprintf("[hypervisor]\nshared_fs = \"virtio-fs\"\ntemplates = false\nkernel = %q\ninitrd = %q\n%s\n[runtime]\nproxy_path = %q\n",
		base.Hypervisor.Kernel, base.Hypervisor.Initrd, lines,
		filepath.Join(filepath.Dir(e.runtime), "cocoon-proxy"))
	p := filepath.Join(t.TempDir(), "virtiofs.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// markedRootfs makes a busybox root file system with /marker holding text.
func markedRootfs(t *testing.T, text string) string {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "marker"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// sandboxState is what the test reads of a sandbox's state.json.
type sandboxState struct {
	SharedFS     string `json:"sharedFs"`
	VirtiofsdPID int    `json:"virtiofsdPid"`
}

// TestVirtioFS runs a container whose sandbox shares its directory with
// virtio-fs: one virtiofsd per sandbox, its PID in the sandbox's state; the
// root file system (bind-mounted under the share after the daemon started)
// is readable, a volume written in the guest is seen on the host and the
// host's file in the guest, exec works, and delete leaves no virtiofsd,
// QEMU or socket.
func TestVirtioFS(t *testing.T) {
	cfg := virtioFSConfig(t)
	vrt := func(t *testing.T, args ...string) result {
		t.Helper()
		return run(t, cmdOpts{}, e.runtime, append([]string{"--config", cfg, "--root", e.root}, args...)...)
	}

	rootfs := markedRootfs(t, "from the image\n")
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "from-host"), []byte("host wrote this\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	id := "virtiofs"
	s := baseSpec(t, "sh", "-c", "while :; do sleep 1; done")
	s.Root.Path = rootfs
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	bundle := writeBundle(t, s)
	if r := vrt(t, "run", "--detach", "--bundle", bundle, id); r.code != 0 {
		t.Fatalf("run --detach: %v", r)
	}
	deleted := false
	defer func() {
		if !deleted {
			vrt(t, "delete", "--force", id)
		}
	}()

	dir := filepath.Join(sandboxRoot(), id)
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st sandboxState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "virtiofsd.sock")
	if st.SharedFS != "virtio-fs" || st.VirtiofsdPID <= 0 {
		t.Fatalf("sandbox state %s", data)
	}
	if cl := cmdline(st.VirtiofsdPID); !strings.Contains(cl, "virtiofsd") || !strings.Contains(cl, "--socket-path="+socket) {
		t.Fatalf("virtiofsd pid %d is %q", st.VirtiofsdPID, cl)
	}
	qemu := ""
	for _, p := range processesOf(dir) {
		if strings.Contains(p, "qemu-system") {
			qemu = p
		}
	}
	if !strings.Contains(qemu, "vhost-user-fs-device") || strings.Contains(qemu, "virtio-9p") || !strings.Contains(qemu, "share=on") {
		t.Fatalf("qemu command line: %q", qemu)
	}

	if r := vrt(t, "exec", id, "cat", "/marker"); r.code != 0 || r.stdout != "from the image\n" {
		t.Errorf("reading the rootfs: %v", r)
	}
	if r := vrt(t, "exec", id, "sh", "-c", "cat /data/from-host && echo guest wrote this > /data/from-guest"); r.code != 0 || r.stdout != "host wrote this\n" {
		t.Errorf("the volume in the guest: %v", r)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "from-guest")); err != nil || string(b) != "guest wrote this\n" {
		t.Errorf("the guest's file on the host: %q, %v", b, err)
	}
	if r := vrt(t, "exec", id, "ls", "/bin/busybox", "/marker"); r.code != 0 {
		t.Errorf("ls: %v", r)
	}

	if r := vrt(t, "delete", "--force", id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	deleted = true
	if cl := cmdline(st.VirtiofsdPID); strings.Contains(cl, "virtiofsd") {
		t.Errorf("virtiofsd %d still runs: %q", st.VirtiofsdPID, cl)
	}
	if ps := processesOf(dir); len(ps) > 0 {
		t.Errorf("processes left: %v", ps)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory (and virtiofsd.sock) left: %v", err)
	}
}

// TestVirtioFSFailedCreate: a virtiofsd that never listens, and a QEMU that
// fails after virtiofsd started, both fail create with an error naming the
// cause and leave no daemon, sandbox directory or state behind.
func TestVirtioFSFailedCreate(t *testing.T) {
	for name, tc := range map[string]struct {
		extra []string
		want  string
	}{
		"virtiofsd exits": {[]string{`virtiofsd = "/bin/false"`}, "virtiofsd exited before listening"},
		"qemu fails":      {[]string{`path = "/bin/false"`}, "starting vm"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := virtioFSConfig(t, tc.extra...)
			id := "virtiofs-fail"
			bundle := writeBundle(t, baseSpec(t, "true"))
			r := run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "create", "--bundle", bundle, id)
			if r.code == 0 {
				run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "delete", "--force", id)
				t.Fatalf("create succeeded: %v", r)
			}
			if !strings.Contains(strings.ToLower(r.stderr), tc.want) {
				t.Errorf("create error %q does not name %q", r.stderr, tc.want)
			}
			dir := filepath.Join(sandboxRoot(), id)
			if ps := processesOf(dir); len(ps) > 0 {
				t.Errorf("processes left: %v", ps)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("sandbox directory left: %v", err)
			}
			if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
				t.Errorf("container state left: %v", err)
			}
		})
	}
}

// TestVirtioFSPod: in a pod, the second container's root file system and
// volume are bind-mounted under the share long after virtiofsd entered its
// mount namespace; they must reach the guest through mount propagation,
// and deleting the first container must unmount its root file system in
// the daemon's namespace too.
func TestVirtioFSPod(t *testing.T) {
	cfg := virtioFSConfig(t)
	vrt := func(t *testing.T, args ...string) result {
		t.Helper()
		r := run(t, cmdOpts{}, e.runtime, append([]string{"--config", cfg, "--root", e.root}, args...)...)
		if r.code != 0 {
			t.Fatalf("cocoon-runtime %v: %v", args, r)
		}
		return r
	}
	infra := baseSpec(t, "sleep", "600")
	infra.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "sandbox",
		"io.kubernetes.cri-o.SandboxID":     "vfspod",
	}
	rootfs := markedRootfs(t, "app image\n")
	vol := t.TempDir()
	app := baseSpec(t, "sh", "-c", "cat /marker > /data/seen; sleep 600")
	app.Root.Path = rootfs
	app.Mounts = append(app.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	app.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "container",
		"io.kubernetes.cri-o.SandboxID":     "vfspod",
	}
	vrt(t, "create", "--bundle", writeBundle(t, infra), "vfspod")
	defer run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "delete", "--force", "vfspod")
	vrt(t, "start", "vfspod")
	dir := filepath.Join(sandboxRoot(), "vfspod")
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st sandboxState
	if err := json.Unmarshal(data, &st); err != nil || st.VirtiofsdPID <= 0 {
		t.Fatalf("sandbox state %s: %v", data, err)
	}
	vrt(t, "create", "--bundle", writeBundle(t, app), "vfsapp")
	defer run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "delete", "--force", "vfsapp")
	vrt(t, "start", "vfsapp")
	if r := vrt(t, "exec", "vfsapp", "cat", "/marker"); r.stdout != "app image\n" {
		t.Errorf("second container's rootfs: %v", r)
	}
	deadline := time.Now().Add(commandTimeout)
	for {
		b, err := os.ReadFile(filepath.Join(vol, "seen"))
		if err == nil && string(b) == "app image\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app's volume on the host: %q, %v", b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The daemon's namespace holds the app's binds now, and drops the
	// first container's once it is deleted.
	mounts := func() string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", st.VirtiofsdPID))
		return string(b)
	}
	if m := mounts(); !strings.Contains(m, " /vfspod/") || !strings.Contains(m, " /vfsapp/") {
		t.Errorf("virtiofsd's mounts lack a container's:\n%s", m)
	}
	vrt(t, "delete", "--force", "vfspod")
	if m := mounts(); strings.Contains(m, " /vfspod/") {
		t.Errorf("virtiofsd still holds the deleted container's mounts:\n%s", m)
	}
	vrt(t, "exec", "vfsapp", "true")
	vrt(t, "delete", "--force", "vfsapp")
	if ps := processesOf(dir); len(ps) > 0 {
		t.Errorf("processes left: %v", ps)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left: %v", err)
	}
}

// TestVirtioFSSubmounts: read-only binds of a tree with a submount behave
// with virtio-fs as with 9p and runc (TestConformance): "rro" makes the
// submount read-only too, "ro" leaves it writable.
func TestVirtioFSSubmounts(t *testing.T) {
	cfg := virtioFSConfig(t)
	for _, tc := range []struct{ ro, want string }{
		{"rro", "in sub\ntop read-only\nsub read-only\n"},
		{"ro", "in sub\ntop read-only\nsub writable\n"},
	} {
		t.Run(tc.ro, func(t *testing.T) {
			bundle := writeBundle(t, submountSpec(tc.ro)(t, privateRootfs(t)))
			got := run(t, cmdOpts{}, e.runtime, "--config", cfg, "--root", e.root, "run", "--bundle", bundle, "virtiofs-sub-"+tc.ro)
			if got.code != 0 || got.stdout != tc.want {
				t.Errorf("%v; want exit 0, stdout %q", got, tc.want)
			}
		})
	}
}
