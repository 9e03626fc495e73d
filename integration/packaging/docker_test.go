//go:build integration

package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDockerRegisterReloadsRunningDaemon registers cocoon into the
// daemon.json of a running private dockerd (own data root, exec root,
// socket and pid file) that already has settings and another runtime:
// register.sh merges the file and sends SIGHUP, and dockerd lists cocoon
// beside the other runtime without a restart; unregister takes it away the
// same way. dockerd is stopped by its PID, and nothing of it is left.
func TestDockerRegisterReloadsRunningDaemon(t *testing.T) {
	src := top(t)
	run(t, src, nil, "make", "--no-print-directory", "build")
	dockerCLI := "/usr/bin/docker" // Debian's client, which speaks to 20.10
	tmp, err := os.MkdirTemp("", "cocoon-pkg-docker")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	socket := filepath.Join(tmp, "docker.sock")
	pidFile := filepath.Join(tmp, "docker.pid")
	daemonJSON := filepath.Join(tmp, "daemon.json")
	const before = `{"log-level": "warn", "max-concurrent-downloads": 2, "runtimes": {"other": {"path": "/usr/bin/runc"}}}`
	write(t, daemonJSON, before)

	logFile, err := os.Create(filepath.Join(tmp, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	d := exec.Command("dockerd", "--config-file", daemonJSON, "--data-root", filepath.Join(tmp, "data"),
		"--exec-root", filepath.Join(tmp, "exec"), "-H", "unix://"+socket, "--pidfile", pidFile,
		"--iptables=false", "--bridge=none")
	d.Stdout, d.Stderr = logFile, logFile
	d.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = d.Wait(); close(exited) }()
	defer func() {
		_ = unix.Kill(d.Process.Pid, unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = unix.Kill(d.Process.Pid, unix.SIGKILL)
			<-exited
		}
		unmountUnder(tmp)
		if pids := processesMentioning(tmp); len(pids) > 0 {
			t.Errorf("processes left: %v", pids)
		}
	}()

	runtimes := func() map[string]any {
		out, err := exec.Command(dockerCLI, "-H", "unix://"+socket, "info", "--format", "{{json .Runtimes}}").Output()
		if err != nil {
			return nil
		}
		m := map[string]any{}
		_ = json.Unmarshal(out, &m)
		return m
	}
	waitFor := func(what string, ok func(map[string]any) bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				t.Fatalf("dockerd exited:\n%s", read(t, logFile.Name()))
			default:
			}
			if rts := runtimes(); rts != nil && ok(rts) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: runtimes %v\n%s", what, runtimes(), read(t, logFile.Name()))
	}
	waitFor("dockerd up with the other runtime", func(r map[string]any) bool { return r["other"] != nil && r["cocoon"] == nil })

	env := []string{"DOCKER_DAEMON_JSON=" + daemonJSON, "DOCKER_PIDFILE=" + pidFile, "COCOON_RUNTIME=" + filepath.Join(src, "bin", "cocoon-runtime")}
	out := run(t, src, env, "bash", "packaging/docker/register.sh", "register")
	if !strings.Contains(out, "reloaded") {
		t.Fatalf("register did not signal dockerd: %s", out)
	}
	waitFor("cocoon after the reload", func(r map[string]any) bool { return r["other"] != nil && r["cocoon"] != nil })
	var cfg map[string]any
	if err := json.Unmarshal([]byte(read(t, daemonJSON)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["log-level"] != "warn" || cfg["max-concurrent-downloads"] != 2.0 {
		t.Fatalf("other keys lost: %v", cfg)
	}

	run(t, src, env, "bash", "packaging/docker/register.sh", "unregister")
	waitFor("cocoon gone after unregister", func(r map[string]any) bool { return r["other"] != nil && r["cocoon"] == nil })
	var after, orig map[string]any
	_ = json.Unmarshal([]byte(read(t, daemonJSON)), &after)
	_ = json.Unmarshal([]byte(before), &orig)
	if mustJSON(after) != mustJSON(orig) {
		t.Fatalf("daemon.json after unregister: %s, was %s", mustJSON(after), mustJSON(orig))
	}
}

// unmountUnder unmounts what dockerd left mounted under dir, deepest first.
func unmountUnder(dir string) {
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			under = append(under, f[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		_ = unix.Unmount(under[i], unix.MNT_DETACH)
	}
}

// processesMentioning lists the processes whose command line names s.
func processesMentioning(s string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cl, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && strings.Contains(string(cl), s) {
			pids = append(pids, filepath.Base(d)+": "+strings.ReplaceAll(string(cl), "\x00", " "))
		}
	}
	return pids
}
