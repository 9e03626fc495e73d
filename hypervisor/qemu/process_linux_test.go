package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStartDetached(t *testing.T) {
	dir := t.TempDir()
	// A descriptor without close-on-exec, as a parent process might pass.
	leak, err := unix.Open(filepath.Join(dir, "leak"), unix.O_CREAT|unix.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leak)

	out := filepath.Join(dir, "out")
	cmd := exec.Command("/bin/sh", "-c", `ls -l /proc/$$/fd > "$1"; echo sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$ >> "$1"`, "sh", out)
	p, err := startDetached(cmd, confinement{readOnly: []string{"/"}, readWrite: []string{dir, os.DevNull}}, nil)
	if err != nil {
		t.Fatalf("startDetached: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !p.exitedNow() {
		t.Error("exitedNow = false after wait")
	}
	if err := p.kill(); err != nil {
		t.Errorf("kill of an exited child: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "leak") {
		t.Errorf("child inherited a descriptor:\n%s", b)
	}
	fields := strings.Fields(string(b)[strings.LastIndex(string(b), "sid="):])
	if len(fields) != 2 || strings.TrimPrefix(fields[0], "sid=") != strings.TrimPrefix(fields[1], "pid=") {
		t.Errorf("child is not a session leader: %q", fields)
	}
	if _, err := unix.FcntlInt(uintptr(leak), unix.F_GETFD, 0); err != nil {
		t.Errorf("the descriptor was closed in this process: %v", err)
	}
}

func TestFindProcessAndWait(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := findProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("findProcess: %v", err)
	}
	if p.exitedNow() {
		t.Fatal("exitedNow of a live process")
	}
	// Start returns once the exec has begun: the new arguments show up a
	// moment later.
	var args []string
	for i := 0; i < 100 && len(args) == 0 && err == nil; i++ {
		args, err = procCmdline(cmd.Process.Pid)
		time.Sleep(time.Millisecond)
	}
	if err != nil || strings.Join(args, " ") != "sleep 60" {
		t.Errorf("procCmdline = %q, %v", args, err)
	}
	if err := p.kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Not reaped yet: a zombie has exited all the same.
	if err := p.wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if procAlive(cmd.Process.Pid) {
		t.Error("procAlive of a zombie")
	}
	if args, _ := procCmdline(cmd.Process.Pid); len(args) != 0 {
		t.Errorf("procCmdline of a zombie = %q", args)
	}
	_ = cmd.Wait()
	if _, err := findProcess(cmd.Process.Pid); err == nil {
		t.Error("findProcess of a reaped process succeeded")
	}

	// Without a pidfd, /proc is polled.
	cmd2 := exec.Command("sleep", "0.2")
	if err := cmd2.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd2.Wait() }()
	p2 := &process{pid: cmd2.Process.Pid}
	if err := p2.wait(ctx); err != nil {
		t.Fatalf("wait by polling: %v", err)
	}
	if !procAlive(os.Getpid()) {
		t.Error("procAlive(self) = false")
	}
}

// TestStartConfined: the child has VMMCapabilities only (bounding set
// included), no_new_privs, and may write only where the confinement says.
func TestStartConfined(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: capabilities to drop")
	}
	dir, outside := t.TempDir(), t.TempDir()
	out := filepath.Join(dir, "out")
	script := `grep -E "^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):" /proc/self/status > "$1"
echo x > "$2/written" && echo wrote-outside >> "$1"
cat /etc/shadow > /dev/null 2>&1 && echo read-shadow >> "$1"
echo x > "$3/inside" && echo wrote-inside >> "$1"`
	cmd := exec.Command("/bin/sh", "-c", script, "sh", out, outside, dir)
	cmd.Stderr = io.Discard
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	cmd.Stdin = devnull
	abi, err := startConfined(cmd, confinement{readOnly: []string{"/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/proc"}, readWrite: []string{dir, os.DevNull}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, ":")
		got[k] = strings.TrimSpace(v)
	}
	var keep uint64
	for _, c := range VMMCapabilities {
		keep |= 1 << uint(c)
	}
	want := fmt.Sprintf("%016x", keep)
	for _, k := range []string{"CapPrm", "CapEff", "CapBnd"} {
		if got[k] != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	for _, k := range []string{"CapInh", "CapAmb"} {
		if got[k] != "0000000000000000" {
			t.Errorf("%s = %s, want none", k, got[k])
		}
	}
	if got["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q", got["NoNewPrivs"])
	}
	if _, ok := got["wrote-inside"]; !ok {
		t.Errorf("could not write inside its confinement: %q", b)
	}
	if abi == 0 {
		t.Log("no landlock on this kernel: the confinement of paths is not checked")
		return
	}
	for _, k := range []string{"wrote-outside", "read-shadow"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s: the confinement did not hold", k)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "written")); err == nil {
		t.Error("the child wrote outside its confinement")
	}
	// This process's own threads keep their capabilities.
	if err := os.WriteFile(filepath.Join(outside, "parent"), nil, 0o600); err != nil {
		t.Errorf("the parent lost access: %v", err)
	}
}
