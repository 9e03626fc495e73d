//go:build integration

package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
)

// testInit is the guest's /init: it mounts /dev and /sys, writes a file to
// the 9p share tagged "share", says "ready" on the console and on the agent
// port, then echoes what the port receives.
const testInit = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	_ = os.MkdirAll("/dev", 0o755)
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = os.MkdirAll("/sys", 0o755)
	_ = syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	_ = os.MkdirAll("/mnt", 0o755)
	if err := syscall.Mount("share", "/mnt", "9p", 0, "trans=virtio,version=9p2000.L"); err != nil {
		fmt.Fprintln(con, "cocoon-test-init: mounting the share:", err)
	} else if err := os.WriteFile("/mnt/hello", []byte("hello from the guest\n"), 0o644); err != nil {
		fmt.Fprintln(con, "cocoon-test-init: writing to the share:", err)
	}
	fmt.Fprintln(con, "cocoon-test-init: ready")
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		b, _ := os.ReadFile(n)
		if strings.TrimSpace(string(b)) != PORT {
			continue
		}
		port, err := os.OpenFile("/dev/"+filepath.Base(filepath.Dir(n)), os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(con, "cocoon-test-init:", err)
			break
		}
		fmt.Fprintln(port, "ready")
		buf := make([]byte, 4096)
		for {
			k, err := port.Read(buf)
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			port.Write(buf[:k])
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}
`

// testKernel returns the guest kernel to boot: $COCOON_TEST_KERNEL, or the
// newest vmlinux of the kernel cache.
func testKernel(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("COCOON_TEST_KERNEL"); k != "" {
		return k
	}
	matches, _ := filepath.Glob("/var/cache/cocoon/kernel/*/vmlinux")
	var newest string
	var newestTime time.Time
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = m, fi.ModTime()
		}
	}
	if newest == "" {
		t.Fatal("no guest kernel: build one into /var/cache/cocoon/kernel/<hash>/vmlinux (kernel/build.sh) or set COCOON_TEST_KERNEL")
	}
	return newest
}

// testInitrd builds the test /init statically and packs it into a newc
// cpio archive.
func testInitrd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	code := strings.Replace(testInit, "PORT", `"`+api.AgentPortName+`"`, 1)
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building test init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, d := range []string{"dev", "sys"} {
		if err := w.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteHeader(&cpio.Header{Name: "init", Mode: cpio.TypeReg | 0o755, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return initrd
}

func TestIntegrationLifecycle(t *testing.T) {
	kernel := testKernel(t)
	initrd := testInitrd(t)
	acc, why := DetectAccelerator()
	t.Logf("accelerator %s: %s", acc, why)

	for _, machine := range []string{MachineMicroVM, MachineQ35} {
		t.Run(machine, func(t *testing.T) {
			// Short: sun_path has room for 107 bytes.
			dir, err := os.MkdirTemp("", "cocoon-qemu-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			shared := filepath.Join(dir, "shared")
			if err := os.Mkdir(shared, 0o700); err != nil {
				t.Fatal(err)
			}
			cfg := hypervisor.VMConfig{
				SharedDirs:  []hypervisor.SharedDir{{Tag: "share", HostPath: shared}},
				ID:          "it-" + machine,
				Dir:         dir,
				Machine:     machine,
				Accelerator: acc,
				VCPUs:       1,
				MemoryMiB:   256,
				Kernel:      kernel,
				Initrd:      initrd,
				ConsoleLog:  filepath.Join(dir, "console.log"),
				AgentSocket: filepath.Join(dir, "agent.sock"),
			}
			boot := 6 * acc.TimeoutScale() * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), boot)
			defer cancel()

			h := New(WithLogger(testLogger()))
			start := time.Now()
			vm, err := h.Start(ctx, cfg)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			stopped := false
			defer func() {
				if !stopped {
					_ = vm.Stop(context.Background())
				}
			}()
			t.Logf("qmp answered after %v", time.Since(start))

			// The guest's init says "ready" on the agent port, then echoes.
			conn, err := net.Dial("unix", cfg.AgentSocket)
			if err != nil {
				t.Fatalf("connecting to the agent socket: %v", err)
			}
			defer conn.Close()
			dl, _ := ctx.Deadline()
			_ = conn.SetDeadline(dl)
			r := bufio.NewReader(conn)
			line, err := r.ReadString('\n')
			if err != nil || line != "ready\n" {
				console, _ := os.ReadFile(cfg.ConsoleLog)
				t.Fatalf("agent port: %q, %v; console:\n%s", line, err, console)
			}
			t.Logf("guest ready on the agent port after %v", time.Since(start))
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
				t.Fatalf("echo: %q, %v", line, err)
			}
			if console, _ := os.ReadFile(cfg.ConsoleLog); !bytes.Contains(console, []byte("cocoon-test-init: ready")) {
				t.Errorf("console log lacks the init's line:\n%s", console)
			}

			if b, err := os.ReadFile(filepath.Join(shared, "hello")); err != nil || string(b) != "hello from the guest\n" {
				console, _ := os.ReadFile(cfg.ConsoleLog)
				t.Errorf("file written through 9p: %q, %v; console:\n%s", b, err, console)
			}

			// A second VM may not take the directory over.
			if _, err := h.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "in use by pid") {
				t.Errorf("second Start in the same directory = %v", err)
			}
			for _, f := range []string{QMPSocketName, PIDFileName, "agent.sock"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("after the refused Start: %v", err)
				}
			}

			// Another process would find the VM from its state.
			st := vm.State()
			vm2, err := h.Attach(ctx, st)
			if err != nil {
				t.Fatalf("Attach(%+v): %v", st, err)
			}
			status := func(v hypervisor.VM, want hypervisor.Status) {
				t.Helper()
				if s, err := v.Status(ctx); err != nil || s != want {
					t.Fatalf("Status = %q, %v; want %q", s, err, want)
				}
			}
			status(vm, hypervisor.Running)
			if err := vm2.Pause(ctx); err != nil {
				t.Fatalf("Pause: %v", err)
			}
			status(vm, hypervisor.Paused)
			if err := vm.Resume(ctx); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			status(vm2, hypervisor.Running)

			wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			if err := vm2.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Wait on a running VM = %v", err)
			}
			wcancel()
			waited := make(chan error, 1)
			go func() { waited <- vm2.Wait(ctx) }()

			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			defer scancel()
			if err := vm.Stop(sctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			stopped = true
			if err := <-waited; err != nil {
				t.Errorf("Wait of the attached VM: %v", err)
			}
			if procAlive(st.PID) {
				t.Errorf("qemu pid %d still alive after Stop", st.PID)
			}
			for _, f := range []string{QMPSocketName, PIDFileName, "agent.sock"} {
				if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind after Stop: %v", f, err)
				}
			}
			status(vm2, hypervisor.Stopped)
			if err := vm2.Stop(ctx); err != nil {
				t.Errorf("Stop of a stopped VM: %v", err)
			}
			if _, err := h.Attach(ctx, st); !errors.Is(err, hypervisor.ErrNotRunning) {
				t.Errorf("Attach after Stop = %v, want ErrNotRunning", err)
			}
		})
	}
}

func TestIntegrationQEMUFailure(t *testing.T) {
	kernel := testKernel(t)
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		t.Skip("this host has /dev/vhost-vsock: the vsock device would not fail")
	}
	dir, err := os.MkdirTemp("", "cocoon-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	acc, _ := DetectAccelerator()
	// Without /dev/vhost-vsock only QEMU itself finds the config wrong:
	// Start must report QEMU's own message and leave nothing running.
	cfg := hypervisor.VMConfig{
		ID:          "bad",
		Dir:         dir,
		Accelerator: acc,
		Kernel:      kernel,
		VsockCID:    3,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = New(WithLogger(testLogger())).Start(ctx, cfg)
	if err == nil {
		t.Fatal("Start succeeded with a vsock device on a host without /dev/vhost-vsock")
	}
	t.Logf("Start: %v", err)
	for _, want := range []string{"qemu exited during start", "vhost-vsock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error lacks %q", want)
		}
	}
	for _, f := range []string{QMPSocketName, PIDFileName} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", f, err)
		}
	}
}

func TestIntegrationGuestPanicExits(t *testing.T) {
	kernel := testKernel(t)
	acc, _ := DetectAccelerator()
	for _, machine := range []string{MachineMicroVM, MachineQ35} {
		t.Run(machine, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "cocoon-qemu-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			// No initrd: the kernel cannot mount a root and panics; panic=1
			// resets, and -no-reboot turns the reset into QEMU's exit.
			cfg := hypervisor.VMConfig{
				ID:          "panic",
				Dir:         dir,
				Machine:     machine,
				Accelerator: acc,
				MemoryMiB:   256,
				Kernel:      kernel,
				ConsoleLog:  filepath.Join(dir, "console.log"),
				AgentSocket: filepath.Join(dir, "agent.sock"),
			}
			ctx, cancel := context.WithTimeout(context.Background(), 6*acc.TimeoutScale()*time.Second)
			defer cancel()
			vm, err := New(WithLogger(testLogger())).Start(ctx, cfg)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer vm.Stop(context.Background())
			if err := vm.Wait(ctx); err != nil {
				console, _ := os.ReadFile(cfg.ConsoleLog)
				t.Fatalf("Wait: %v; console:\n%s", err, console)
			}
			if s, err := vm.Status(ctx); err != nil || s != hypervisor.Stopped {
				t.Errorf("Status after the guest's panic = %q, %v", s, err)
			}
			if console, _ := os.ReadFile(cfg.ConsoleLog); !bytes.Contains(console, []byte("Kernel panic")) {
				t.Errorf("console log lacks the panic:\n%s", console)
			}
		})
	}
}
