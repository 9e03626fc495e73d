//go:build integration

package agent

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/api"
)

// These tests boot the guest kernel with the initrd under QEMU (TCG) and talk
// to the agent over the serial port as the proxy does. They need
// COCOON_TEST_OUT to hold vmlinux and initrd.img (make kernel image).

type testGuest struct {
	sock   string
	start  time.Time
	exited chan error
}

// bootGuest boots a guest; extra QEMU arguments follow the standard ones.
func bootGuest(t *testing.T, extra ...string) *testGuest {
	t.Helper()
	out := os.Getenv("COCOON_TEST_OUT")
	if out == "" {
		t.Fatal("COCOON_TEST_OUT is not set: run through make integration, or point it at a directory with vmlinux and initrd.img")
	}
	kernel, initrdPath := filepath.Join(out, "vmlinux"), filepath.Join(out, "initrd.img")
	for _, p := range []string{kernel, initrdPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("missing boot asset: %v", err)
		}
	}
	dir := t.TempDir()
	g := &testGuest{sock: filepath.Join(dir, "agent.sock"), exited: make(chan error, 1)}
	console := filepath.Join(dir, "console.log")
	g.start = time.Now()
	args := []string{
		"-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-bios", "/usr/share/qemu/qboot.rom",
		"-kernel", kernel, "-initrd", initrdPath,
		"-append", "console=ttyS0 panic=1 cocoon.log=debug",
		"-serial", "file:" + console,
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + g.sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + api.AgentPortName,
	}
	qemu := exec.Command("qemu-system-x86_64", append(args, extra...)...)
	qemu.Stderr = os.Stderr
	if err := qemu.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	go func() { g.exited <- qemu.Wait() }()
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			if b, err := os.ReadFile(console); err == nil {
				t.Logf("console:\n%s", b)
			}
		}
		_ = qemu.Process.Kill()
		<-g.exited
	})
	return g
}

func (g *testGuest) dial(t *testing.T) net.Conn {
	t.Helper()
	var conn net.Conn
	poll(t, 30*time.Second, "the agent socket", func() bool {
		c, err := net.Dial("unix", g.sock)
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	return conn
}

func check(t *testing.T, client api.AgentService) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, &api.CheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !resp.Serving {
		t.Fatal("Check: not serving")
	}
}

func (g *testGuest) destroy(t *testing.T, client api.AgentService) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	destroyed := time.Now()
	select {
	case err := <-g.exited:
		g.exited <- err
		t.Logf("qemu exited %v after DestroySandbox: %v", time.Since(destroyed), err)
	case <-time.After(30 * time.Second):
		t.Fatal("qemu still running 30s after DestroySandbox")
	}
}

func TestIntegrationBoot(t *testing.T) {
	g := bootGuest(t)
	client := agentClient(t, hostSession(t, g.dial(t)))
	check(t, client)
	bootToCheck := time.Since(g.start)
	v, err := client.Version(context.Background(), &api.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.AgentVersion == "" || v.KernelRelease == "" || v.ApiVersion != api.APIVersion {
		t.Errorf("Version = %+v", v)
	}
	t.Logf("boot to Check: %v; version %+v", bootToCheck, v)
	g.destroy(t, client)
}

func TestIntegrationReconnect(t *testing.T) {
	g := bootGuest(t)
	// Connect only once the agent is up and polling a disconnected port.
	time.Sleep(4 * time.Second)
	// Reconnect at once (the agent spots the new yamux client), then after
	// a pause (the agent sees the port disconnected).
	pauses := []time.Duration{0, 500 * time.Millisecond, 0}
	for i := 0; ; i++ {
		conn := g.dial(t)
		sess := hostSession(t, conn)
		client := agentClient(t, sess)
		check(t, client)
		t.Logf("connection %d served", i+1)
		if i == len(pauses) {
			g.destroy(t, client)
			return
		}
		sess.Close()
		conn.Close()
		time.Sleep(pauses[i])
	}
}
