//go:build integration

package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/container/containertest"
	"github.com/cocoon-containers/cocoon/api"
)

// These tests run containers in a real guest: busybox's rootfs is placed in
// a directory shared with the guest over virtio-9p (tag cocoon-share, as
// the sandbox package passes it), mounted by CreateSandbox, and run with
// libcontainer by the agent: cgroup v2, pivot_root onto a 9p directory.

const (
	shareTag   = "cocoon-share"
	guestShare = "/run/cocoon/shared"
)

// bootWithShare boots a guest with dir shared, and returns a client whose
// yamux session has the proxy's receive window (8 MiB), so that output
// throughput is what a sandbox gets.
func bootWithShare(t *testing.T, dir string) (*testGuest, *yamux.Session, api.AgentService) {
	t.Helper()
	g := bootGuest(t,
		"-fsdev", "local,id=fsdev0,path="+dir+",security_model=none,multidevs=remap",
		"-device", "virtio-9p-pci,id=fs0,fsdev=fsdev0,mount_tag="+shareTag,
	)
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	cfg.MaxStreamWindowSize = 8 << 20
	cfg.StreamCloseTimeout = 0
	sess, err := yamux.Client(g.dial(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	client := agentClient(t, sess)
	check(t, client)
	return g, sess, client
}

// guestRun creates and starts a container, attaching stdout and stderr,
// and waits for it: it returns the output and the wait response.
// guestRun runs a container to its end; each of after is called between
// its exit and its removal.
func guestRun(t *testing.T, sess *yamux.Session, client api.AgentService, id string, spec *specs.Spec, after ...func(context.Context)) (string, string, *api.WaitProcessResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, _ := json.Marshal(spec)
	if _, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: id, SpecJson: b, Stdio: &api.StdioConfig{Stdout: true, Stderr: true},
	}); err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	out := readAll(openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: id, Stdio: api.Stdout}))
	errOut := readAll(openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: id, Stdio: api.Stderr}))
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
	w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("WaitProcess %s: %v", id, err)
	}
	for _, f := range after {
		f(ctx)
	}
	if _, err := client.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer %s: %v", id, err)
	}
	return <-out, <-errOut, w
}

func TestIntegrationContainers(t *testing.T) {
	share := t.TempDir()
	rootfs := filepath.Join(share, "rootfs")
	if err := containertest.BuildRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	g, sess, client := bootWithShare(t, share)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := client.CreateSandbox(ctx, &api.CreateSandboxRequest{
		Hostname: "guest", SharedMountTag: shareTag, Dns: []string{"nameserver 10.0.2.3"},
	}); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	guestRootfs := filepath.Join(guestShare, "rootfs")
	spec := func(args ...string) *specs.Spec { return containertest.Spec(guestRootfs, args...) }

	t.Run("stdout stderr status", func(t *testing.T) {
		start := time.Now()
		// The container's cgroup is the guest's /cocoon/<id> (runc's
		// example spec has no cgroup namespace); its root is the 9p
		// directory, and pivot_root (not the chroot of --no-pivot) left
		// none of the guest's own mounts, such as its rootfs, in view.
		out, errOut, w := guestRun(t, sess, client, "basic", spec("sh", "-c",
			`echo out; echo err >&2; cat /proc/self/cgroup; `+
				`awk '$5 == "/" { for (i = 7; $i != "-"; i++); print $(i+1) }' /proc/self/mountinfo; `+
				`grep -c -e ' - rootfs ' -e ' /run/cocoon' /proc/self/mountinfo; exit 3`))
		if out != "out\n0::/cocoon/basic\n9p\n0\n" || errOut != "err\n" || w.ExitStatus != 3 {
			t.Errorf("stdout %q, stderr %q, wait %+v", out, errOut, w)
		}
		t.Logf("create, start, run, wait and remove: %v", time.Since(start))
	})

	t.Run("64 MiB of stdout", func(t *testing.T) {
		b, _ := json.Marshal(spec("dd", "if=/data", "bs=1M"))
		if _, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
			ContainerId: "big", SpecJson: b, Stdio: &api.StdioConfig{Stdout: true},
		}); err != nil {
			t.Fatal(err)
		}
		st := openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "big", Stdio: api.Stdout})
		type result struct {
			n   int64
			sum [32]byte
			at  time.Time
		}
		got := make(chan result, 1)
		var first time.Time
		go func() {
			h := sha256.New()
			buf := make([]byte, 1<<20)
			var r result
			for {
				n, err := st.Read(buf)
				if n > 0 && r.n == 0 {
					first = time.Now()
				}
				h.Write(buf[:n])
				r.n += int64(n)
				if err != nil {
					break
				}
			}
			r.at = time.Now()
			copy(r.sum[:], h.Sum(nil))
			got <- r
		}()
		start := time.Now()
		if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "big"}); err != nil {
			t.Fatal(err)
		}
		w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "big"})
		if err != nil || w.ExitStatus != 0 {
			t.Fatalf("WaitProcess = %+v, %v", w, err)
		}
		r := <-got
		if r.n != size || r.sum != sha256.Sum256(data) {
			t.Fatalf("got %d bytes (sum match %v), want %d", r.n, r.sum == sha256.Sum256(data), size)
		}
		t.Logf("64 MiB of stdout: %.0f MB/s from start, %.0f MB/s from the first byte",
			float64(size)/r.at.Sub(start).Seconds()/1e6, float64(size)/r.at.Sub(first).Seconds()/1e6)
		if _, err := client.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "big"}); err != nil {
			t.Error(err)
		}
	})

	t.Run("user hostname rlimit readonly", func(t *testing.T) {
		s := spec("sh", "-c", "hostname; id; ulimit -n; touch /x")
		s.Hostname = "in-vm"
		s.Root.Readonly = true
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4321, Soft: 4321}}
		out, errOut, w := guestRun(t, sess, client, "user", s)
		if out != "in-vm\nuid=1000(user) gid=1000(user) groups=2000(extra),3000(more)\n4321\n" ||
			errOut != "touch: /x: Read-only file system\n" || w.ExitStatus != 1 {
			t.Errorf("stdout %q, stderr %q, wait %+v", out, errOut, w)
		}
	})

	t.Run("bind mount", func(t *testing.T) {
		vol := filepath.Join(share, "vol")
		if err := os.MkdirAll(vol, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, "in"), []byte("from the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := spec("sh", "-c", "cat /vol/in; echo from the guest > /vol/out")
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: guestShare + "/vol", Options: []string{"rbind", "rw"}})
		out, errOut, w := guestRun(t, sess, client, "bind", s)
		if out != "from the host\n" || errOut != "" || w.ExitStatus != 0 {
			t.Errorf("stdout %q, stderr %q, wait %+v", out, errOut, w)
		}
		if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "from the guest\n" {
			t.Errorf("volume file %q, %v", b, err)
		}
	})

	t.Run("memory limit", func(t *testing.T) {
		s := spec("dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
		limit := int64(64 << 20)
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		// The count stays readable after the exit, for containerd 2.x's
		// check of the metrics of a container that ended with 137.
		_, _, w := guestRun(t, sess, client, "oom", s, func(ctx context.Context) {
			st, err := client.StatsContainer(ctx, &api.ContainerRequest{ContainerId: "oom"})
			if err != nil || st.GetOomKills() != 1 {
				t.Errorf("stats after the OOM kill: %d OOM kills, %v; want 1", st.GetOomKills(), err)
			}
		})
		if w.ExitStatus != 137 || !w.OomKilled {
			t.Errorf("wait %+v, want 137 and OOM-killed", w)
		}
	})

	t.Run("exec ps stats pause tty", func(t *testing.T) {
		b, _ := json.Marshal(spec("sleep", "1000"))
		if _, err := client.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "long", SpecJson: b}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "long"}); err != nil {
			t.Fatal(err)
		}
		proc, _ := json.Marshal(specs.Process{Args: []string{"sh", "-c", "tty; read x; stty size"}, Cwd: "/", Env: []string{"PATH=/bin"}, Terminal: true})
		if _, err := client.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "long", ExecId: "tty", ProcessJson: proc}); err != nil {
			t.Fatal(err)
		}
		term := openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "long", ExecID: "tty", Stdio: api.Terminal})
		var buf strings.Builder
		line := make([]byte, 256)
		for !strings.Contains(buf.String(), "\n") {
			n, err := term.Read(line)
			buf.Write(line[:n])
			if err != nil {
				t.Fatalf("terminal: %q, %v", buf.String(), err)
			}
		}
		if _, err := client.ResizeTty(ctx, &api.ResizeTtyRequest{ContainerId: "long", ExecId: "tty", Rows: 30, Cols: 100}); err != nil {
			t.Fatal(err)
		}
		if _, err := term.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(term)
		buf.Write(rest)
		w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "long", ExecId: "tty"})
		if got := buf.String(); got != "/dev/pts/0\r\ngo\r\n30 100\r\n" || err != nil || w.ExitStatus != 0 {
			t.Errorf("terminal %q, wait %+v, %v", got, w, err)
		}

		ps, err := client.ListProcesses(ctx, &api.ContainerRequest{ContainerId: "long"})
		if err != nil || len(ps.Processes) != 1 || ps.Processes[0].Cmdline != "sleep 1000" {
			t.Errorf("ListProcesses = %v, %v", ps, err)
		}
		st, err := client.StatsContainer(ctx, &api.ContainerRequest{ContainerId: "long"})
		var stats types.Stats
		if err == nil {
			err = json.Unmarshal(st.StatsJson, &stats)
		}
		if err != nil || stats.Memory.Usage.Usage == 0 || stats.Pids.Current != 1 {
			t.Errorf("stats %+v, %v", stats, err)
		}
		if _, err := client.PauseContainer(ctx, &api.ContainerRequest{ContainerId: "long"}); err != nil {
			t.Errorf("PauseContainer: %v", err)
		}
		if _, err := client.ResumeContainer(ctx, &api.ContainerRequest{ContainerId: "long"}); err != nil {
			t.Errorf("ResumeContainer: %v", err)
		}
		sleeper, _ := json.Marshal(specs.Process{Args: []string{"sleep", "999"}, Cwd: "/", Env: []string{"PATH=/bin"}})
		if _, err := client.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "long", ExecId: "sleeper", ProcessJson: sleeper}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "long", ExecId: "sleeper", Signal: uint32(unix.SIGTERM)}); err != nil {
			t.Fatal(err)
		}
		if w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "long", ExecId: "sleeper"}); err != nil || w.ExitStatus != 143 {
			t.Errorf("sleeper after SIGTERM: %+v, %v", w, err)
		}
		// Left running: DestroySandbox kills it.
	})

	g.destroy(t, client)
}

var _ net.Conn // the streams are net.Conns
