package container

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

// pipeRelay returns an output relay over a fresh pipe, and the pipe's write
// end (the "process").
func pipeRelay(t *testing.T) (*outputRelay, *os.File) {
	t.Helper()
	r, w, err := newPipe(os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	rel := newOutputRelay("stdout", r, testLog(t))
	t.Cleanup(func() { rel.close(); w.Close() })
	return rel, w
}

func drainedWithin(rel *outputRelay, d time.Duration) bool {
	select {
	case <-rel.drained:
		return true
	case <-time.After(d):
		return false
	}
}

func TestRelayLateAttach(t *testing.T) {
	rel, w := pipeRelay(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB: fits the pipe
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rel.processExited()
	if drainedWithin(rel, 50*time.Millisecond) {
		t.Fatal("drained before a stream was attached")
	}
	agent, host := streamPair(t)
	if err := rel.attach(agent); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(host)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(data))
	}
	if !drainedWithin(rel, 5*time.Second) {
		t.Error("not drained after EOF")
	}
	if err := rel.attach(agent); err == nil {
		t.Error("a second attach succeeded")
	}
}

func TestRelayDrainedWhileHeldOpen(t *testing.T) {
	// The process exited but another holder keeps the pipe open: drained
	// as soon as the pipe is empty, EOF only when the holder closes it.
	rel, w := pipeRelay(t)
	agent, host := streamPair(t)
	if err := rel.attach(agent); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("before exit\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := host.Read(buf)
	if err != nil || string(buf[:n]) != "before exit\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if drainedWithin(rel, 20*time.Millisecond) {
		t.Fatal("drained before the process exited")
	}
	rel.processExited()
	if !drainedWithin(rel, 5*time.Second) {
		t.Fatal("not drained after exit with an empty pipe")
	}
	if _, err := w.Write([]byte("from the holder\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rest, err := io.ReadAll(host)
	if err != nil || string(rest) != "from the holder\n" {
		t.Errorf("after drained: %q, %v", rest, err)
	}
}

func TestRelayHostGone(t *testing.T) {
	// The host closes its stream: the relay drops the rest, so the
	// process never blocks on a full pipe.
	rel, w := pipeRelay(t)
	agent, host := streamPair(t)
	if err := rel.attach(agent); err != nil {
		t.Fatal(err)
	}
	host.Close()
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for range 8 {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- w.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer blocked after the host went away")
	}
	if !drainedWithin(rel, 5*time.Second) {
		t.Error("not drained at EOF")
	}
}

func TestRelayInputCloseBeforeAttach(t *testing.T) {
	r, w, err := newPipe(os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := newInputRelay("stdin", w, true, testLog(t))
	in.closeStdin()
	// The process reads EOF.
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after closeStdin: %d, %v", n, err)
	}
	// A stream attached later is taken and drained, not left blocking.
	agent, host := streamPair(t)
	if err := in.attach(agent); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	host.CloseWrite()
	if _, err := io.ReadAll(host); err != nil {
		t.Fatal(err)
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (we(ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 98765 1000000 25 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	info, ok := parseStat([]byte(line), 4096)
	want := ProcessInfo{Pid: 1234, Ppid: 1, State: "S", Cmdline: "[we(ird) name]", CPUTicks: 12, StartTicks: 98765, RSSBytes: 25 * 4096}
	if !ok || info != want {
		t.Errorf("parseStat = %+v, %v; want %+v", info, ok, want)
	}
	if _, ok := parseStat([]byte("garbage"), 4096); ok {
		t.Error("parsed garbage")
	}
	if uid := parseStatusUID([]byte("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n")); uid != 1000 {
		t.Errorf("uid %d", uid)
	}
}
