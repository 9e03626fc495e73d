//go:build integration

package runtime_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLifecycle goes through create, start, kill and delete as containerd
// and CRI-O do, checking state at each step, the pid file, the exit status
// the caller (the subreaper) reads from the container PID, and that no
// descriptor the caller leaked (Docker's fd 3) stays held.
func TestLifecycle(t *testing.T) {
	id := "lifecycle"
	s := baseSpec(t, "sh", "-c", `trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done`)
	s.Annotations = map[string]string{"org.example.test": "yes"}
	bundle := writeBundle(t, s)
	pidFile := filepath.Join(t.TempDir(), "init.pid")

	// A descriptor leaked into create as fd 3: the caller must see it
	// closed once create returns.
	leakR, leakW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer leakR.Close()
	cmd, res := command(t, cmdOpts{extra: []*os.File{leakW}}, e.runtime, rtArgs("create", "--bundle", bundle, "--pid-file", pidFile, id)...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leakW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("create: %v (%v)", err, res())
	}
	t.Logf("create took %.2fs", time.Since(start).Seconds())
	defer forceDelete(t, id)
	leaked := make(chan error, 1)
	go func() { _, err := io.ReadAll(leakR); leaked <- err }()
	select {
	case <-leaked:
	case <-time.After(5 * time.Second):
		t.Error("fd 3 of create is still held open by a process create started")
	}

	st := stateOf(t, id)
	pid := readPid(t, pidFile)
	if st.Status != "created" || st.Pid != pid || st.Bundle != bundle || st.Annotations["org.example.test"] != "yes" {
		t.Fatalf("state after create %+v, pid file %d", st, pid)
	}
	if cl := cmdline(pid); !strings.Contains(cl, "cocoon-relay") {
		t.Fatalf("container pid %d is %q, want the shim", pid, cl)
	}
	// The spec asks for a network namespace: the shim holds the
	// container's host-side one, where Docker's prestart hook finds it.
	shimNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	ownNS, _ := os.Readlink("/proc/self/ns/net")
	if shimNS == "" || shimNS == ownNS {
		t.Errorf("shim's network namespace %q, host's %q", shimNS, ownNS)
	}
	if r := rt(t, "start", id); r.code != 0 {
		t.Fatalf("start: %v", r)
	}
	if st := stateOf(t, id); st.Status != "running" || st.Pid != pid {
		t.Fatalf("state after start %+v", st)
	}
	if r := rt(t, "start", id); r.code != 1 || !strings.Contains(r.stderr, "cannot start an already running container") {
		t.Errorf("second start: %v", r)
	}
	// list sees it.
	r := mustRT(t, "list", "--format", "json")
	var list []containerState
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != id || list[0].Status != "running" {
		t.Errorf("list: %v %v", list, err)
	}
	if r := mustRT(t, "list", "-q"); strings.TrimSpace(r.stdout) != id {
		t.Errorf("list -q: %q", r.stdout)
	}
	time.Sleep(500 * time.Millisecond) // let the trap be set
	mustRT(t, "kill", id, "TERM")
	if status := reap(t, pid); status != 7 {
		t.Errorf("container exit status %d, want 7", status)
	}
	if st := waitStatus(t, id, "stopped"); st.Pid != 0 {
		t.Errorf("stopped state %+v", st)
	}
	out := res().stdout
	if !strings.Contains(out, "ready") || !strings.Contains(out, "got TERM") {
		t.Errorf("container output %q", out)
	}
	if r := rt(t, "kill", id, "KILL"); r.code != 1 || !strings.Contains(r.stderr, "container not running") {
		t.Errorf("kill of a stopped container: %v", r)
	}
	mustRT(t, "delete", id)
	if r := rt(t, "state", id); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("state after delete: %v", r)
	}
}

// TestDetachedAndForce covers run --detach, delete of a running container
// (refused, then --force), exec, ps, pause and resume, events --stats and
// update, in one VM.
func TestDetachedAndForce(t *testing.T) {
	id := "detached"
	bundle := writeBundle(t, baseSpec(t, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"))
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd, res := command(t, cmdOpts{}, e.runtime, rtArgs("run", "--detach", "--bundle", bundle, "--pid-file", pidFile, id)...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("run --detach: %v (%v)", err, res())
	}
	defer forceDelete(t, id)
	// The container's stdout: the counter it prints grows while it runs.
	output := cmd.Stdout.(*os.File).Name()
	count := func() int64 {
		fi, err := os.Stat(output)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	pid := readPid(t, pidFile)
	if st := stateOf(t, id); st.Status != "running" || st.Pid != pid {
		t.Fatalf("state after run -d: %+v", st)
	}

	t.Run("ExecDetachPidFile", func(t *testing.T) {
		epid := filepath.Join(t.TempDir(), "exec.pid")
		mustRT(t, "exec", "--detach", "--pid-file", epid, id, "sh", "-c", "sleep 1; exit 4")
		if status := reap(t, readPid(t, epid)); status != 4 {
			t.Errorf("exec'd process status %d, want 4", status)
		}
	})
	t.Run("ExecForeground", func(t *testing.T) {
		r := rt(t, "exec", "--env", "X=42", "--cwd", "/etc", "--user", "1000:1000", id, "sh", "-c", "echo $X $(pwd) $(id -u):$(id -g); exit 9")
		if r.code != 9 || r.stdout != "42 /etc 1000:1000\n" {
			t.Errorf("exec: %v", r)
		}
	})
	t.Run("ExecTTYForeground", func(t *testing.T) {
		// CRI-O's streaming exec: the runtime relays the terminal itself.
		r := run(t, cmdOpts{stdin: "\n"}, e.runtime, rtArgs("exec", "--tty", id, "sh", "-c", "tty; exit 2")...)
		if r.code != 2 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Errorf("exec --tty: %v", r)
		}
	})
	t.Run("ProcessJSON", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "process.json")
		os.WriteFile(p, []byte(`{"args":["sh","-c","echo from-json"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}`), 0o644)
		if r := rt(t, "exec", "--process", p, id); r.code != 0 || r.stdout != "from-json\n" {
			t.Errorf("exec --process: %v", r)
		}
	})
	t.Run("PsJSON", func(t *testing.T) {
		r := mustRT(t, "ps", "--format", "json", id)
		var pids []int
		if err := json.Unmarshal([]byte(r.stdout), &pids); err != nil || len(pids) == 0 {
			t.Errorf("ps: %q %v", r.stdout, err)
		}
	})
	t.Run("PauseResume", func(t *testing.T) {
		mustRT(t, "pause", id)
		if st := stateOf(t, id); st.Status != "paused" {
			t.Fatalf("after pause: %+v", st)
		}
		if r := rt(t, "pause", id); r.code != 1 || !strings.Contains(r.stderr, "container not running") {
			t.Errorf("second pause: %v", r)
		}
		if r := rt(t, "exec", id, "true"); r.code != 1 || !strings.Contains(r.stderr, "paused") {
			t.Errorf("exec in a paused container: %v", r)
		}
		time.Sleep(500 * time.Millisecond) // what was in flight
		a := count()
		time.Sleep(time.Second)
		b := count()
		if a != b {
			t.Errorf("counter moved while paused: %d, %d bytes", a, b)
		}
		mustRT(t, "resume", id)
		if st := stateOf(t, id); st.Status != "running" {
			t.Fatalf("after resume: %+v", st)
		}
		time.Sleep(time.Second)
		if c := count(); c == b {
			t.Errorf("counter stuck after resume at %d bytes", c)
		}
	})
	t.Run("EventsStatsAndUpdate", func(t *testing.T) {
		limit := func() uint64 {
			r := mustRT(t, "events", "--stats", id)
			var ev struct {
				Type string `json:"type"`
				ID   string `json:"id"`
				Data struct {
					CPU struct {
						Usage struct {
							Total uint64 `json:"total"`
						} `json:"usage"`
					} `json:"cpu"`
					Memory struct {
						Usage struct {
							Usage uint64 `json:"usage"`
							Limit uint64 `json:"limit"`
						} `json:"usage"`
					} `json:"memory"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
				t.Fatalf("events: %v in %q", err, r.stdout)
			}
			if ev.Type != "stats" || ev.ID != id || ev.Data.CPU.Usage.Total == 0 || ev.Data.Memory.Usage.Usage == 0 {
				t.Errorf("events --stats without cpu or memory: %s", r.stdout)
			}
			return ev.Data.Memory.Usage.Limit
		}
		before := limit()
		mustRT(t, "update", "--memory", "96m", id)
		if after := limit(); after != 96<<20 {
			t.Errorf("memory limit %d after update --memory 96m (before %d)", after, before)
		}
		// And through --resources on stdin, as containerd calls it.
		r := run(t, cmdOpts{stdin: `{"memory":{"limit":83886080}}`}, e.runtime, rtArgs("update", "--resources", "-", id)...)
		if r.code != 0 {
			t.Fatalf("update -r -: %v", r)
		}
		if after := limit(); after != 80<<20 {
			t.Errorf("memory limit %d after update -r -", after)
		}
	})
	t.Run("DuplicateID", func(t *testing.T) {
		r := rt(t, "create", "--bundle", bundle, id)
		if r.code != 1 || !strings.Contains(r.stderr, "container with id exists: "+id) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("duplicate create: %v", r)
		}
		if st := stateOf(t, id); st.Status != "running" {
			t.Errorf("the first container suffered: %+v", st)
		}
	})
	r := rt(t, "delete", id)
	if r.code != 1 || !strings.Contains(r.stderr, "that is not stopped") {
		t.Errorf("delete of a running container: %v", r)
	}
	mustRT(t, "delete", "--force", id)
	if status := reap(t, pid); status != 137 {
		t.Errorf("status after delete --force %d, want 137", status)
	}
	if r := rt(t, "state", id); r.code != 1 {
		t.Errorf("state after delete --force: %v", r)
	}
}
