package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/qmptest"
	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// fakeQMP serves a small QMP dialect on a unix socket: the banner, the
// capabilities handshake, query-status, stop, cont and quit.
type fakeQMP struct {
	ln net.Listener
	// silent servers accept connections but never send the banner.
	silent bool

	mu      sync.Mutex
	running bool
	cmds    []string
	quit    chan struct{}
}

func newFakeQMP(t *testing.T, path string, silent bool) *fakeQMP {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{ln: ln, silent: silent, running: true, quit: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeQMP) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *fakeQMP) handle(c net.Conn) {
	defer c.Close()
	if f.silent {
		_, _ = c.Read(make([]byte, 1)) // until the client hangs up
		return
	}
	fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`)
	// Commands are JSON values, not lines: go-qemu sends no newline.
	dec := json.NewDecoder(c)
	for {
		var cmd qmp.Command
		if err := dec.Decode(&cmd); err != nil {
			return
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, cmd.Execute)
		var reply string
		switch cmd.Execute {
		case "qmp_capabilities":
			reply = `{"return": {}}`
		case "query-status":
			status := "paused"
			if f.running {
				status = "running"
			}
			reply = fmt.Sprintf(`{"return": {"status": %q, "singlestep": false, "running": %v}}`, status, f.running)
		case "stop":
			f.running = false
			reply = `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}` + "\n" + `{"return": {}}`
		case "cont":
			f.running = true
			reply = `{"return": {}}`
		case "quit":
			reply = `{"return": {}}`
			close(f.quit)
		default:
			reply = `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd.Execute + ` has not been found"}}`
		}
		f.mu.Unlock()
		fmt.Fprintln(c, reply)
	}
}

func (f *fakeQMP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

// fakeQEMU starts a process whose command line looks like a QEMU's for dir
// (it names dir's pid file) but which only sleeps, and returns its pid. The
// test reaps it.
func fakeQEMU(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 60; :", "sh", "-pidfile", filepath.Join(dir, PIDFileName))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Start returns once the exec is past its point of no return, a moment
	// before the kernel sets the new command line: until then the process
	// is not recognizably this QEMU, as a real one always is by the time
	// another process attaches to it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		args, err := procCmdline(cmd.Process.Pid)
		if err == nil && isQEMUFor(args, dir) {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake QEMU's command line is %q (%v)", args, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func testLogger() *logrus.Entry {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	return logrus.NewEntry(l)
}

func TestExecuteWithFakeQMP(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, QMPSocketName)
	f := newFakeQMP(t, sock, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var info statusInfo
	if err := execute(ctx, socketDialer(sock), "query-status", &info); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if !info.Running || info.Status != "running" {
		t.Errorf("query-status = %+v", info)
	}
	if err := execute(ctx, socketDialer(sock), "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	err := execute(ctx, socketDialer(sock), "bogus", nil)
	if err == nil || !strings.Contains(err.Error(), "qmp bogus: The command bogus has not been found") {
		t.Errorf("bogus command error = %v", err)
	}
	want := []string{"qmp_capabilities", "query-status", "qmp_capabilities", "stop", "qmp_capabilities", "bogus"}
	if got := f.commands(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

func TestExecuteHonoursDeadline(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, QMPSocketName)
	newFakeQMP(t, sock, true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := execute(ctx, socketDialer(sock), "query-status", &statusInfo{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("execute against a silent monitor = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("execute took %v after its deadline", d)
	}
}

func TestExecuteNoSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := execute(ctx, socketDialer(filepath.Join(t.TempDir(), "none.sock")), "query-status", nil)
	if err == nil || !strings.Contains(err.Error(), "qmp query-status: connecting") {
		t.Errorf("execute without a socket = %v", err)
	}
}

func TestVMWithQMPTest(t *testing.T) {
	dir := t.TempDir()
	cmd := fakeQEMU(t, dir)
	p, err := findProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	status := "running"
	vm := &VM{
		dir:  dir,
		proc: p,
		log:  testLogger(),
		dial: func(context.Context) (qmp.Monitor, error) {
			return qmptest.NewMonitor(func(cmd qmp.Command) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, cmd.Execute)
				switch cmd.Execute {
				case "query-status":
					return map[string]any{"return": statusInfo{Status: status, Running: status == "running"}}, nil
				case "stop":
					status = "paused"
				case "cont":
					status = "running"
				}
				return map[string]any{"return": struct{}{}}, nil
			}), nil
		},
	}
	ctx := context.Background()
	check := func(want hypervisor.Status) {
		t.Helper()
		if s, err := vm.Status(ctx); err != nil || s != want {
			t.Fatalf("Status = %q, %v; want %q", s, err, want)
		}
	}
	check(hypervisor.Running)
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	check(hypervisor.Paused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	check(hypervisor.Running)
	mu.Lock()
	status = "shutdown"
	mu.Unlock()
	check(hypervisor.Stopped)
	if want := "query-status stop query-status cont query-status query-status"; strings.Join(got, " ") != want {
		t.Errorf("commands = %q, want %q", got, want)
	}
	if st := vm.State(); st != (hypervisor.State{Hypervisor: Name, PID: cmd.Process.Pid, Dir: dir}) {
		t.Errorf("State = %+v", st)
	}
}

func TestAttachStopKillsAndCleans(t *testing.T) {
	dir := t.TempDir()
	cmd := fakeQEMU(t, dir)
	// Files a killed QEMU would leave behind; the silent monitor makes quit
	// time out, so Stop has to kill.
	sock := filepath.Join(dir, QMPSocketName)
	newFakeQMP(t, sock, true)
	pidfile := filepath.Join(dir, PIDFileName)
	if err := os.WriteFile(pidfile, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	h := New(WithLogger(testLogger()))
	ctx := context.Background()
	v, err := h.Attach(ctx, hypervisor.State{Hypervisor: Name, PID: cmd.Process.Pid, Dir: dir})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	// The fake's command line names only the pid file.
	if got := v.(*VM).files; len(got) != 1 || got[0] != pidfile {
		t.Errorf("files = %q", got)
	}
	v.(*VM).files = append(v.(*VM).files, sock)

	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := v.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a live process = %v", err)
	}

	reaped := make(chan struct{})
	go func() {
		// The test is the fake's parent: reap it as soon as it dies, so
		// that the pidfd path and /proc agree.
		_ = cmd.Wait()
		close(reaped)
	}()
	sctx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if err := v.Stop(sctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	<-reaped
	for _, f := range []string{sock, pidfile} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", f, err)
		}
	}
	if err := v.Wait(ctx); err != nil {
		t.Errorf("Wait after Stop: %v", err)
	}
	if s, err := v.Status(ctx); err != nil || s != hypervisor.Stopped {
		t.Errorf("Status after Stop = %q, %v", s, err)
	}
	if err := v.Pause(ctx); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Pause after Stop = %v, want ErrNotRunning", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := h.Attach(ctx, v.State()); !errors.Is(err, hypervisor.ErrNotRunning) {
		t.Errorf("Attach to a dead VM = %v, want ErrNotRunning", err)
	}
}

func TestAttachRejectsOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := fakeQEMU(t, dir)
	h := New(WithLogger(testLogger()))
	ctx := context.Background()
	tests := map[string]struct {
		st   hypervisor.State
		want error
	}{
		"other dir":        {hypervisor.State{Hypervisor: Name, PID: cmd.Process.Pid, Dir: t.TempDir()}, hypervisor.ErrNotRunning},
		"not qemu":         {hypervisor.State{Hypervisor: Name, PID: os.Getpid(), Dir: dir}, hypervisor.ErrNotRunning},
		"no such process":  {hypervisor.State{Hypervisor: Name, PID: 1 << 30, Dir: dir}, hypervisor.ErrNotRunning},
		"other hypervisor": {hypervisor.State{Hypervisor: "firecracker", PID: cmd.Process.Pid, Dir: dir}, nil},
		"no pid":           {hypervisor.State{Hypervisor: Name, Dir: dir}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := h.Attach(ctx, tc.st)
			if err == nil {
				t.Fatal("Attach succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Attach = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	h := New(WithLogger(testLogger()))
	dir := t.TempDir()
	cfg := hypervisor.VMConfig{
		ID:          "x",
		Dir:         dir,
		Accelerator: hypervisor.TCG,
		Kernel:      filepath.Join(dir, "missing-vmlinux"),
		AgentSocket: filepath.Join(dir, "agent.sock"),
	}
	_, err := h.Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Fatalf("Start with a missing kernel = %v", err)
	}
	cfg.Dir = "relative"
	if _, err := h.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("Start with a relative dir = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("Start of a bad config left files: %v", entries)
	}
}

func TestStartReportsQEMUErrors(t *testing.T) {
	// A "QEMU" that complains and exits: Start must quote its log.
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu-system-fake")
	script := "#!/bin/sh\ncase \"$1\" in -help) echo '-sandbox on'; exit 0;; --version) echo 'QEMU emulator version 7.2.0'; exit 0;; esac\necho 'qemu-system-fake: -foo: invalid option' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("\x7fELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	vmdir := filepath.Join(dir, "vm")
	if err := os.Mkdir(vmdir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := New(WithLogger(testLogger()), WithTSCkHz(1000000))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Start(ctx, hypervisor.VMConfig{
		ID:          "x",
		Dir:         vmdir,
		Binary:      bin,
		Accelerator: hypervisor.TCG,
		Kernel:      kernel,
		AgentSocket: filepath.Join(vmdir, "agent.sock"),
	})
	if err == nil {
		t.Fatal("Start succeeded")
	}
	for _, want := range []string{"qemu exited during start", "exit status 1", "-foo: invalid option"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error %q lacks %q", err, want)
		}
	}
}
