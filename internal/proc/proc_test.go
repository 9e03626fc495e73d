package proc

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestWaitAndTerminate(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	pid := cmd.Process.Pid
	if !Alive(pid) {
		t.Fatal("running sleep not alive")
	}
	if cl, err := Cmdline(pid); err != nil || cl != "sleep 30" {
		t.Fatalf("cmdline %q, %v", cl, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := Wait(ctx, pid); err == nil {
		t.Fatal("Wait returned before the process exited")
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer tcancel()
	if err := Terminate(tctx, pid); err != nil {
		t.Fatal(err)
	}
	<-done
	if Alive(pid) {
		t.Fatal("alive after Terminate")
	}
	if err := Terminate(tctx, pid); err != nil {
		t.Fatalf("terminating a gone process: %v", err)
	}
}

func TestTerminateKillsStubborn(t *testing.T) {
	cmd := exec.Command("sh", "-c", "trap '' TERM; sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := Terminate(ctx, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if Alive(cmd.Process.Pid) {
		t.Fatal("stubborn process survived")
	}
}
