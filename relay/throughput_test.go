package relay_test

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/relay"
)

// transferSize is what the throughput tests move: 64 MiB.
const transferSize = 64 << 20

// TestLargeOutput moves 64 MiB from the process's stdout, through the proxy
// and the relay, into a pipe, and logs the rate.
func TestLargeOutput(t *testing.T) {
	sb := newSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := make(chan int64, 1)
	go func() {
		n, _ := io.CopyBuffer(io.Discard, r, make([]byte, 1<<20))
		read <- n
	}()
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdout: w})
	out := sb.attached(t, 1, "c", "")[api.Stdout]
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	begin := time.Now()
	for range transferSize / len(chunk) {
		if _, err := out.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	closeWrite(t, out)
	sb.Exit <- 0
	if res := finished(t, done); res.err != nil || res.status != 0 {
		t.Fatalf("Run: %d, %v", res.status, res.err)
	}
	w.Close()
	if n := <-read; n != transferSize {
		t.Fatalf("read %d bytes, want %d", n, transferSize)
	}
	logRate(t, "process stdout -> relay -> pipe", time.Since(begin))
}

// TestLargeInput moves 64 MiB from a pipe, through the relay and the proxy,
// to the process's stdin.
func TestLargeInput(t *testing.T) {
	sb := newSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdin: r})
	in := sb.attached(t, 1, "c", "")[api.Stdin]
	begin := time.Now()
	go func() {
		chunk := make([]byte, 1<<20)
		for range transferSize / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		w.Close()
	}()
	n, err := io.CopyBuffer(io.Discard, in, make([]byte, 1<<20))
	if err != nil || n != transferSize {
		t.Fatalf("process read %d bytes, %v; want %d", n, err, transferSize)
	}
	logRate(t, "pipe -> relay -> process stdin", time.Since(begin))
	sb.Exit <- 0
	if res := finished(t, done); res.err != nil || res.status != 0 {
		t.Fatalf("Run: %d, %v", res.status, res.err)
	}
}

func logRate(t *testing.T, what string, d time.Duration) {
	t.Logf("%s: %d MiB in %v: %.0f MB/s", what, transferSize>>20, d.Round(time.Millisecond), float64(transferSize)/d.Seconds()/1e6)
}
